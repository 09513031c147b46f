"""The web console: server-rendered pages for coordinators, hospitals, expert groups and supervisors.

A Flask blueprint on the same services, scoping and state machine as the JSON API. It calls
``casework.services`` and renders ``casework.views``; it never queries the models itself.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from casework.services.auth import TOKEN_LIFETIME


class ConsoleSessions(SecureCookieSessionInterface):
    """The console's signed cookie, opened only outside /api/: the API authenticates by bearer
    token alone, so its requests neither read the console's cookie nor pay for checking its
    signature (a signing serializer built per request, about 3 % of a transition's CPU). What an
    API request then finds in ``session`` is Flask's null session, which refuses writes."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith("/api/"):
            return None
        return super().open_session(app, request)


def _secret_key(instance_path: str) -> str:
    """CASEWORK_SECRET_KEY, or one made once and kept in the instance folder, so that every worker
    process signs session cookies with the same key and a restart logs nobody out."""
    configured = os.environ.get("CASEWORK_SECRET_KEY", "").strip()
    if configured:
        return configured
    path = Path(instance_path) / "secret_key"
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def init_console(app: Flask) -> None:
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(app.instance_path)
    # Flask's defaults already hold these keys (SameSite unset): assign, do not setdefault.
    app.config["SESSION_COOKIE_NAME"] = "casework_console"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = TOKEN_LIFETIME  # the cookie ends with its token
    app.session_interface = ConsoleSessions()

    from console.views import bp

    app.register_blueprint(bp)
