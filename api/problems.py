"""Every error as RFC 9457 problem+json: ``type``, ``title``, ``status``, ``detail`` and extensions.

Domain errors map to one status each; Werkzeug's HTTP errors (404, 405, 413, 415 …) and anything
unexpected (500) take the same shape. No stack trace or SQL ever reaches the client.
"""

from __future__ import annotations

import http
import logging
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, json
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from marshmallow import Schema, fields
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from casework.db import end_transaction
from casework.errors import CaseworkError, Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from casework.services.auth import AuthenticationFailed, LoginThrottled

log = logging.getLogger("casework.api")

PROBLEM_TYPE_BASE = "https://casework.example/problems/"
MEDIA_TYPE = "application/problem+json"


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error response of this API carries them."""

    type = fields.String(metadata={"description": "URI naming the kind of problem"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "field → messages, for validation failures (422)"},
    )
    allowed_events = fields.List(fields.String(), metadata={"description": "for an illegal transition (409)"})
    current_version = fields.Integer(metadata={"description": "for a stale If-Match (412)"})


def problem(
    status: int, title: str, detail: str, kind: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": PROBLEM_TYPE_BASE + (kind or str(status)), "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow nest errors by location and field; clients want ``field → messages``."""
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "body": messages}
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            # webargs puts body fields under "json" and query fields under "query": drop that level.
            name = "" if not prefix and key in ("json", "query", "headers", "form") else str(key)
            out.update(flatten_errors(value, f"{prefix}.{name}".strip(".") if name else prefix))
        return out
    return {prefix or "body": [str(messages)]}


def problem_for_domain_error(error: CaseworkError) -> Response:
    if isinstance(error, ValidationFailed):
        return problem(422, "Unprocessable Content", error.detail, "validation", errors=error.errors)
    if isinstance(error, VersionMismatch):
        return problem(
            412,
            "Precondition Failed",
            error.detail,
            "stale-version",
            headers={"ETag": f'"{error.current}"'},
            current_version=error.current,
        )
    if isinstance(error, Conflict):
        headers = {"Location": error.location} if error.location else None
        kind = "illegal-transition" if error.allowed_events is not None else "conflict"
        return problem(409, "Conflict", error.detail, kind, headers=headers, allowed_events=error.allowed_events)
    if isinstance(error, NotFound):
        return problem(404, "Not Found", error.detail, "not-found")
    if isinstance(error, Forbidden):
        return problem(403, "Forbidden", error.detail, "forbidden")
    if isinstance(error, LoginThrottled):
        return problem(
            429, "Too Many Requests", error.detail, "throttled", headers={"Retry-After": str(error.retry_after)}
        )
    if isinstance(error, AuthenticationFailed):
        return problem(401, "Unauthorized", error.detail, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    log.error("unmapped domain error %s", type(error).__name__)
    return problem(500, "Internal Server Error", "the server could not handle the request")


class ProblemResponsesPlugin(BasePlugin):
    """Documents every error response as what it is: application/problem+json with the Problem
    schema. flask-smorest documents errors as application/json, and an ``alt_response`` given only
    a description documents no body at all, so the document disagreed with every error answer."""

    def operation_helper(self, path=None, operations=None, **kwargs: Any) -> None:
        for operation in (operations or {}).values():
            for status, response in (operation.get("responses") or {}).items():
                if not isinstance(response, dict) or not _is_error(status):
                    continue
                content = response.setdefault("content", {})
                if "application/json" in content:
                    content.setdefault(MEDIA_TYPE, content.pop("application/json"))
                content.setdefault(MEDIA_TYPE, {"schema": "Problem"})


def _is_error(status: Any) -> bool:
    return str(status) == "default" or (str(status).isdigit() and int(status) >= 400)


MAX_ID = 2**63 - 1  # ids are BIGINT on PostgreSQL and INTEGER (64 bits) on SQLite


class IdConverter(IntegerConverter):
    """``<int:…>`` path segments that match only ids a table can hold: a larger number names no
    case (404), rather than overflowing the driver (500). Documented as the integer's maximum."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False) -> None:
        super().__init__(map, fixed_digits, min, max, signed)


class ProblemApi(Api):
    """flask-smorest's Api, answering every HTTP error with problem+json, and saying so."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app: Flask, *args: Any, **kwargs: Any) -> None:
        app.url_map.converters["int"] = IdConverter  # before any blueprint's rules are added
        super().init_app(app, *args, **kwargs)

    def _init_spec(self, *, extra_plugins=None, **options: Any) -> None:
        super()._init_spec(extra_plugins=[*(extra_plugins or ()), ProblemResponsesPlugin()], **options)

    def _register_responses(self) -> None:
        # As flask-smorest does it, but error responses are problem+json.
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            content_type = MEDIA_TYPE if status >= 400 else self.DEFAULT_RESPONSE_CONTENT_TYPE
            prepare_response(response, self.spec, content_type)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, MEDIA_TYPE)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        status = error.code or 500
        if status == 422 and errors:
            return problem(
                422,
                "Unprocessable Content",
                "the request has invalid fields",
                "validation",
                errors=flatten_errors(errors),
            )
        headers = dict(data.get("headers") or {})
        if status == 405 and error.get_response().headers.get("Allow"):
            headers["Allow"] = error.get_response().headers["Allow"]
        detail = data.get("message") or error.description or error.name
        return problem(status, error.name, detail, headers=headers)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(CaseworkError, problem_for_domain_error)

    @app.teardown_appcontext
    def end_database_session(error: BaseException | None) -> None:
        # Runs before Flask-SQLAlchemy's own teardown (the last registered runs first). Its
        # session.remove() rolls back with close(), which raises on a connection the database has
        # just killed, leaves that connection checked out, and - escaping the WSGI app - replaces
        # the finished answer with gunicorn's HTML 500. rollback() hands the connection back to the
        # pool (which drops a dead one) before it raises; the answer already made stands. A
        # transaction that only read ends in COMMIT instead, which keeps the connection's prepared
        # statements (casework/db.py ``end_transaction``).
        from api.extensions import db

        try:
            if error is None:
                end_transaction(db.session())
            else:
                db.session().rollback()
        except SQLAlchemyError as exc:
            log.warning("database connection lost while ending a request: %s", type(exc).__name__)
        finally:
            db.session.remove()

    @app.errorhandler(DataError)
    @app.errorhandler(OverflowError)
    def value_out_of_range(error: Exception) -> Response:
        # The database refused a value the request carried: an id beyond BIGINT (SQLite raises
        # OverflowError before it gets there), a NUL character in a text (PostgreSQL). Found by
        # fuzzing, where each was a 500.
        log.info("value refused by the database: %s", type(error).__name__)
        return problem(
            422,
            "Unprocessable Content",
            "a value in the request is out of range or contains a character the database cannot store",
            "unstorable-value",
        )

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_unavailable(error: Exception) -> Response:
        # Connection loss or lock timeout: nothing was committed, the client may retry.
        log.warning("database error: %s", type(error).__name__)
        return problem(
            503,
            "Service Unavailable",
            "the database is unavailable; retry shortly",
            "unavailable",
            headers={"Retry-After": "2"},
        )

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return app.extensions["casework_api"].handle_http_exception(error)
        log.exception("unhandled error")
        return problem(500, "Internal Server Error", "the server could not handle the request")
