"""Logging in: Argon2 passwords, random bearer tokens stored hashed, expiry, revocation, throttling."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import UTCDateTime, end_transaction, utcnow, write_transaction
from casework.direct_sql import DirectStatement
from casework.errors import CaseworkError
from casework.models import AuthToken, LoginFailure, OrgUnit, User
from casework.passwords import hash_password, verify_password
from casework.services.users import normalise_username

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
    session: Session,
    username: str,
    password: str,
    now: datetime | None = None,
    lifetime: timedelta = TOKEN_LIFETIME,
    client: str = "",
) -> tuple[str, datetime]:
    """Log in from ``client`` (the caller's address).

    Failures count per username *and* client: a stranger's guesses slow the stranger down and never
    lock the owner out elsewhere (the owner's correct password works from their own address).
    Unknown names are checked against a dummy hash, so they answer in the time a wrong password
    takes. The hash is checked outside any transaction: Argon2 takes tens of milliseconds, and on
    SQLite a write transaction would hold the one write lock all that time."""
    now = now or utcnow()
    username = normalise_username(username) or username
    client = client[:64]
    since = now - THROTTLE_WINDOW
    mine = (LoginFailure.username == username, LoginFailure.client == client, LoginFailure.at > since)
    failures, oldest = session.execute(select(func.count(), func.min(LoginFailure.at)).where(*mine)).one()
    if failures >= THROTTLE_AFTER:
        end_transaction(session)
        raise LoginThrottled(max(1, int((oldest + THROTTLE_WINDOW - now).total_seconds()) + 1))
    row = session.execute(
        select(User.id, User.password_hash).where(User.username == username, User.active.is_(True))
    ).first()
    end_transaction(session)  # end the read before hashing: no snapshot or lock is held meanwhile
    ok = verify_password(row.password_hash if row else _dummy_hash(), password) and row is not None
    with write_transaction(session):
        if not ok:
            session.add(LoginFailure(username=username, client=client, at=now))
        else:
            session.execute(delete(LoginFailure).where(*mine[:2]))
            token = secrets.token_urlsafe(32)
            expires_at = now + lifetime
            session.add(AuthToken(token_hash=_digest(token), user_id=row.id, issued_at=now, expires_at=expires_at))
    if not ok:
        raise AuthenticationFailed("wrong username or password")
    return token, expires_at


@cache
def _dummy_hash() -> str:
    """A hash of a random password, to spend on unknown usernames the time a real check takes."""
    return hash_password(secrets.token_urlsafe(16))


# Token, user and org unit in one query, built once and run on the driver's cursor (it runs on
# every request).
_ACTOR_OF_TOKEN = DirectStatement(
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
    row = _ACTOR_OF_TOKEN.first(session.connection(), {"digest": _digest(token), "now": now})
    if row is None:
        raise AuthenticationFailed("the token is unknown, expired or revoked")
    user_id, username, role, unit_code, unit_kind = row
    return Actor(user_id, username, role, unit_code or "", unit_kind or "system")


def revoke_token(session: Session, token: str, now: datetime | None = None) -> None:
    with write_transaction(session):
        row = session.get(AuthToken, _digest(token))
        if row is not None and row.revoked_at is None:
            row.revoked_at = now or utcnow()
