"""The Flask application factory."""

from __future__ import annotations

import os
from collections.abc import Callable
from inspect import iscoroutinefunction
from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Flask, Response, request, send_from_directory
from werkzeug.middleware.proxy_fix import ProxyFix

from api import config
from api.contract import ContractPlugin
from api.extensions import db, migrate
from api.problems import ProblemApi, problem, register_error_handlers
from casework.db import configure_engine

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = str(ROOT / "migrations")
SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).parent / "dist"

OPENAPI_SETTINGS = {
    "API_TITLE": "casework",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.1.0",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    # Swagger UI from the flask-swagger-ui package, served by us: the docs work with no internet.
    "OPENAPI_SWAGGER_UI_URL": "/api/v1/docs/assets/",
}


class CaseworkFlask(Flask):
    """Flask, asking once per function whether it is a coroutine function.

    Flask asks ``inspect`` again for every hook and view on every request (fifteen times for a
    transition, 1.3 % of its instructions); whether a function is a coroutine function never
    changes. Keyed by the plain function: a MethodView's methods are bound to a new instance per
    request."""

    _MAX_FUNCTIONS = 4096  # the app's hooks and views; the bound only guards against surprises

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._coroutine_function: dict[Any, bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        key = getattr(func, "__func__", func)
        is_coroutine = self._coroutine_function.get(key)
        if is_coroutine is None:
            if len(self._coroutine_function) >= self._MAX_FUNCTIONS:
                self._coroutine_function.clear()
            is_coroutine = self._coroutine_function[key] = iscoroutinefunction(func)
        return self.async_to_sync(func) if is_coroutine else func


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    instance = os.environ.get("CASEWORK_INSTANCE") or str(ROOT / "instance")
    app = CaseworkFlask("casework", instance_path=instance)
    app.config.update(config.settings(app.instance_path))
    app.config.update(OPENAPI_SETTINGS)
    if test_config:
        app.config.update(test_config)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", config.engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True, compare_type=True)
    with app.app_context():
        configure_engine(db.engine)

    api = ProblemApi(
        app,
        spec_kwargs={
            "extra_plugins": [ContractPlugin()],
            "info": {"description": "大病专项救治 case workflow. Errors are application/problem+json (RFC 9457)."},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
    )
    app.extensions["casework_api"] = api
    register_error_handlers(app)

    from api import access_log, alerts, assistance, auth, cases, imports, ledger, persons, reference, settlements
    from api.health import bp as health_bp

    for module in (auth, cases, persons, reference, alerts, settlements, assistance, imports, ledger, access_log):
        api.register_blueprint(module.bp)
    app.register_blueprint(health_bp)
    app.before_request(_require_json_body)
    app.before_request(auth.authenticate_request)
    app.after_request(_security_headers)
    proxies = int(os.environ.get("CASEWORK_TRUSTED_PROXIES", "0"))
    if proxies:
        # Behind N reverse proxies, the client address is the Nth from the right in X-Forwarded-For.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]

    @app.get("/api/v1/docs/assets/<path:filename>")
    def docs_assets(filename: str):
        return send_from_directory(SWAGGER_UI_DIST, filename)

    from console import init_console

    init_console(app)

    return app


# Public and cacheable: the API description and the Swagger UI files carry no personal data.
_CACHEABLE = ("/api/v1/openapi.json", "/api/v1/docs")


def _security_headers(response: Response) -> Response:
    """On every answer, the console's pages included: nothing personal or a token in any cache,
    no content sniffing, no referrer leaking paths, never framed (clickjacking)."""
    headers = response.headers
    if not request.path.startswith(_CACHEABLE):
        headers["Cache-Control"] = "no-store"
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    policy = headers.get("Content-Security-Policy")
    if not policy:
        headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy}; frame-ancestors 'none'"
    return response


def _require_json_body():
    # Only the JSON API: the console at / posts HTML forms, and imports upload files.
    if not request.path.startswith("/api/"):
        return None
    if request.mimetype == "multipart/form-data" and request.path.startswith("/api/v1/imports/"):
        return None
    if request.method in ("POST", "PUT", "PATCH") and request.content_length and not request.is_json:
        return problem(415, "Unsupported Media Type", "send the body as application/json")
    if request.is_json and request.content_length:
        try:
            request.get_json(silent=True)  # parsed once here (Flask keeps it for the view)
        except RecursionError:
            return problem(400, "Bad Request", "the JSON body is nested too deeply")
    return None
