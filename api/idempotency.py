"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header) for POST endpoints.

The first request with a key claims it (a row in its own committed transaction, so a concurrent
duplicate sees the claim), runs, and stores its answer. A retry with the same key and body gets
that answer again and changes nothing; another body under the key is 422; a duplicate arriving
while the first still runs is 409. A claim left behind by a crashed worker is taken over after
``IDEMPOTENCY_STALE_SECONDS``; the domain's own guards (If-Match versions, one open case per
person and disease) keep such a retry from applying twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.extensions import db
from api.models import IdempotencyRecord
from api.problems import problem
from casework.db import utcnow, write_transaction

HEADER = "Idempotency-Key"
_REPLAYED_HEADERS = ("Content-Type", "ETag", "Location")


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.headers.get("If-Match", "")):
        digest.update(part.encode() + b"\0")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        key = key.strip().strip('"')
        if not key or len(key) > 255:
            return problem(
                422,
                "Unprocessable Content",
                "Idempotency-Key must be 1–255 characters",
                "validation",
                errors={HEADER: ["must be 1–255 characters"]},
            )
        user_id = g.actor.user_id
        claimed = _claim(user_id, key, _fingerprint())
        if isinstance(claimed, Response):
            return claimed
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            _release(user_id, key)
            raise
        if response.status_code >= 500:
            _release(user_id, key)
        else:
            _store(user_id, key, response)
        return response

    return wrapper


def _claim(user_id: int, key: str, fingerprint: str) -> Response | None:
    now = utcnow()
    ttl = timedelta(hours=current_app.config.get("IDEMPOTENCY_TTL_HOURS", 24))
    stale_after = timedelta(seconds=current_app.config.get("IDEMPOTENCY_STALE_SECONDS", 60))
    session = db.session()
    with write_transaction(session):
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        # RETURNING, not rowcount: the ORM's insert path reports -1 rows on psycopg.
        inserted = session.execute(
            dialect.insert(IdempotencyRecord)
            .values(
                user_id=user_id,
                key=key,
                fingerprint=fingerprint,
                state="processing",
                created_at=now,
                expires_at=now + ttl,
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        ).first()
        if inserted:
            return None
        record = session.get(IdempotencyRecord, (user_id, key), populate_existing=True)
        if record.expires_at <= now or (record.state == "processing" and record.created_at <= now - stale_after):
            record.fingerprint, record.state, record.created_at, record.expires_at = (
                fingerprint,
                "processing",
                now,
                now + ttl,
            )
            record.status = record.body = record.headers = None
            return None
        if record.fingerprint != fingerprint:
            return problem(
                422,
                "Unprocessable Content",
                "this Idempotency-Key was used with another request",
                "idempotency-key-reused",
                errors={HEADER: ["already used with another request"]},
            )
        if record.state == "processing":
            return problem(
                409,
                "Conflict",
                "a request with this Idempotency-Key is still being processed",
                "idempotency-key-in-flight",
                headers={"Retry-After": "1"},
            )
        replay = Response(record.body, status=record.status)
        for name, value in (record.headers or {}).items():
            replay.headers[name] = value
        replay.headers["Idempotent-Replayed"] = "true"
        return replay


def _store(user_id: int, key: str, response: Response) -> None:
    session = db.session()
    with write_transaction(session):
        record = session.get(IdempotencyRecord, (user_id, key), populate_existing=True)
        if record is not None:
            record.state = "done"
            record.status = response.status_code
            record.body = response.get_data(as_text=True)
            record.headers = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}


def _release(user_id: int, key: str) -> None:
    session = db.session()
    session.rollback()
    with write_transaction(session):
        session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        )


def purge_expired(sessions: Callable[[], Session]) -> int:
    """Drop answers past their time; the scheduler calls this."""
    with sessions() as session, write_transaction(session):
        statement = delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())
        return session.connection().execute(statement).rowcount
