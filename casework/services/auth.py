"""Logging in: Argon2 passwords, random bearer tokens stored hashed, expiry, revocation, throttling."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import UTCDateTime, utcnow, write_transaction
from casework.errors import CaseworkError
from casework.models import AuthToken, LoginFailure, OrgUnit, User
from casework.passwords import verify_password

TOKEN_LIFETIME = timedelta(hours=12)
THROTTLE_WINDOW = timedelta(minutes=15)
THROTTLE_AFTER = 5  # failures in the window before logins for that name are refused


class AuthenticationFailed(CaseworkError):
    """Wrong name, wrong password, or a token that is unknown, expired or revoked."""


class LoginThrottled(CaseworkError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins; try again later")
        self.retry_after = retry_after


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, username: str, password: str, now: datetime | None = None, lifetime: timedelta = TOKEN_LIFETIME
) -> tuple[str, datetime]:
    now = now or utcnow()
    with write_transaction(session):
        since = now - THROTTLE_WINDOW
        failures = session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(LoginFailure.username == username, LoginFailure.at > since)
        )
        if failures >= THROTTLE_AFTER:
            oldest = session.scalar(
                select(func.min(LoginFailure.at)).where(LoginFailure.username == username, LoginFailure.at > since)
            )
            raise LoginThrottled(max(1, int((oldest + THROTTLE_WINDOW - now).total_seconds()) + 1))
        user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
        if user is None or not verify_password(user.password_hash, password):
            session.add(LoginFailure(username=username, at=now))
            session.commit()  # the failure must count even though we raise
            raise AuthenticationFailed("wrong username or password")
        session.execute(delete(LoginFailure).where(LoginFailure.username == username))
        token = secrets.token_urlsafe(32)
        expires_at = now + lifetime
        session.add(AuthToken(token_hash=_digest(token), user_id=user.id, issued_at=now, expires_at=expires_at))
    return token, expires_at


# Token, user and org unit in one query, built once (it runs on every request).
_ACTOR_OF_TOKEN = (
    select(User.id, User.username, User.role, User.org_unit_code, OrgUnit.kind)
    .join(AuthToken, AuthToken.user_id == User.id)
    .outerjoin(OrgUnit, OrgUnit.code == User.org_unit_code)
    .where(
        AuthToken.token_hash == bindparam("digest"),
        AuthToken.revoked_at.is_(None),
        AuthToken.expires_at > bindparam("now", type_=UTCDateTime()),
        User.active.is_(True),
    )
)


def authenticate(session: Session, token: str, now: datetime | None = None) -> Actor:
    """The actor a bearer token stands for: token, user and org unit in one query."""
    now = now or utcnow()
    # Core execution on the session's connection: plain columns need none of the ORM's work.
    row = session.connection().execute(_ACTOR_OF_TOKEN, {"digest": _digest(token), "now": now}).first()
    if row is None:
        raise AuthenticationFailed("the token is unknown, expired or revoked")
    user_id, username, role, unit_code, unit_kind = row
    return Actor(user_id, username, role, unit_code or "", unit_kind or "system")


def revoke_token(session: Session, token: str, now: datetime | None = None) -> None:
    with write_transaction(session):
        row = session.get(AuthToken, _digest(token))
        if row is not None and row.revoked_at is None:
            row.revoked_at = now or utcnow()
