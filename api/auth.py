"""Bearer-token authentication for /api/v1, and the token and user endpoints."""

from __future__ import annotations

from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.contract import ORG_UNIT_CODE
from api.extensions import db
from api.problems import problem
from casework.actor import Actor
from casework.db import begin_write
from casework.models import ROLES
from casework.services.auth import AuthenticationFailed, authenticate, issue_token, revoke_token
from casework.services.users import create_user

PUBLIC_PATHS = ("/api/v1/auth/token", "/api/v1/openapi.json", "/api/v1/docs")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

bp = Blueprint("auth", __name__, url_prefix="/api/v1", description="Logins and users")


def authenticate_request():
    """Runs before every request: /api/v1 needs a valid bearer token, except the public paths."""
    g.actor = None
    g.token = None
    path = request.path
    if not path.startswith("/api/v1") or path == PUBLIC_PATHS[0] or path.startswith(PUBLIC_PATHS[1:]):
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return problem(
            401,
            "Unauthorized",
            "send Authorization: Bearer <token>",
            "unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )
    session = db.session()
    if request.method in WRITE_METHODS and request.mimetype != "multipart/form-data":
        # The request's one transaction starts here, as a write: on SQLite BEGIN IMMEDIATE before
        # the token is read, so the service and the stored answer continue it instead of ending a
        # read transaction and starting another. Not for uploads: their body is still on the wire
        # (a JSON body was read before this), and a slow sender would hold SQLite's one write lock
        # while its greenlet waits; the import begins its own transaction once the file is here.
        begin_write(session)
    try:
        g.actor = authenticate(session, token.strip())
    except AuthenticationFailed as exc:
        return problem(401, "Unauthorized", exc.detail, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    g.token = token.strip()
    return None


def current_actor() -> Actor:
    return g.actor


class LoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=80))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))


class TokenSchema(Schema):
    token = fields.String(required=True)
    expires_at = fields.AwareDateTime(required=True)


class NewUserSchema(Schema):
    username = fields.String(
        required=True, validate=[validate.Length(min=1, max=80), validate.Regexp(r"^\s*\S", error="must not be blank")]
    )
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=10, max=1024))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    org_unit = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(ORG_UNIT_CODE),
        metadata={
            "description": "org unit code: a region for supervisors, coordinators and village doctors, a hospital "
            "for hospitals, an expert group for experts; none for admins (an unknown or mismatched one is 422)"
        },
    )


class UserSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    role = fields.String(validate=validate.OneOf(ROLES))
    org_unit = fields.String(attribute="org_unit_code", allow_none=True)


@bp.route("/auth/token")
class Token(MethodView):
    @bp.arguments(LoginSchema())
    @bp.response(200, TokenSchema)
    @bp.alt_response(401, description="wrong username or password")
    @bp.alt_response(429, description="too many failed logins (Retry-After)")
    def post(self, login):
        """Log in: a bearer token for the other endpoints."""
        # The client address counts failures per caller; behind a proxy, set CASEWORK_TRUSTED_PROXIES.
        client = request.remote_addr or ""
        token, expires_at = issue_token(db.session(), login["username"], login["password"], client=client)
        return {"token": token, "expires_at": expires_at}


@bp.route("/auth/revoke")
class RevokeToken(MethodView):
    @bp.response(204)
    @bp.alt_response(401, description="no valid token")
    def post(self):
        """Log out: the token used for this request stops working."""
        revoke_token(db.session(), g.token)


@bp.route("/users")
class Users(MethodView):
    @bp.arguments(NewUserSchema())
    @bp.response(201, UserSchema)
    @bp.alt_response(403, description="only admins create users")
    @bp.alt_response(409, description="the username is taken")
    def post(self, new):
        """Create a user (admins only)."""
        user = create_user(db.session(), current_actor(), **new)
        return user, 201, {"Location": f"/api/v1/users/{user.id}"}
