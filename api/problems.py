"""Every error as RFC 9457 problem+json: ``type``, ``title``, ``status``, ``detail`` and extensions.

Domain errors map to one status each; Werkzeug's HTTP errors (404, 405, 413, 415 …) and anything
unexpected (500) take the same shape. No stack trace or SQL ever reaches the client.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, json
from flask_smorest import Api
from marshmallow import Schema, fields
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

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


class ProblemApi(Api):
    """flask-smorest's Api, answering every HTTP error with problem+json."""

    ERROR_SCHEMA = ProblemSchema

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
