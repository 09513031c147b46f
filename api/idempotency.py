"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header) for POST endpoints.

The first request with a key claims it (a row in its own committed transaction, so a concurrent
duplicate sees the claim), runs, and stores its answer - refusals such as 412 or 409 included. A
retry with the same key and body gets that answer again and changes nothing; another body under
the key is 422; a duplicate arriving while the first still runs is 409. A 5xx releases the claim.
When the database is unreachable at the moment the claim must be released or the answer stored,
that write is retried in the background. A claim left behind by a crashed worker is taken over
after ``IDEMPOTENCY_STALE_SECONDS``; the domain's own guards (If-Match versions, one open case per
person and disease) keep such a retry from applying twice."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.extensions import db
from api.models import IdempotencyRecord
from api.problems import problem, problem_for_domain_error
from casework.db import utcnow, write_transaction
from casework.errors import CaseworkError

log = logging.getLogger("casework.api")

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
        claimed_at = utcnow()
        try:
            claimed = _claim(user_id, key, _fingerprint(), claimed_at)
        except SQLAlchemyError:
            # The claim may have committed before the connection died: do not leave it behind.
            _write_or_defer(_release, user_id, key, claimed_at)
            raise
        if isinstance(claimed, Response):
            return claimed
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except CaseworkError as error:
            # A domain refusal (412, 409, 422, 403, 404) is the first answer too: replay it, or a
            # retry may hear another one (409 turning into 412 once someone else moved the case).
            response = problem_for_domain_error(error)
        except BaseException:
            _write_or_defer(_release, user_id, key, claimed_at)
            raise
        if response.status_code >= 500:
            _write_or_defer(_release, user_id, key, claimed_at)
        else:
            # The work is done and committed: this answer is the truth, even if storing it for
            # the retries has to wait for the database to come back.
            headers = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
            answer = (response.status_code, response.get_data(as_text=True), headers)
            _write_or_defer(_store, user_id, key, claimed_at, *answer)
        return response

    return wrapper


def _write_or_defer(write: Callable[..., None], *args: Any) -> None:
    """Run ``write`` now; if the database is unreachable, retry it in the background for as long
    as the claim would otherwise block retries (IDEMPOTENCY_STALE_SECONDS). Without this a claim
    whose release or answer could not be written answered 409 "still being processed" to every
    retry for that whole time, although nothing was processing."""
    try:
        write(*args)
        return
    except SQLAlchemyError as exc:
        with suppress(SQLAlchemyError):
            db.session.rollback()
        log.warning("idempotency record not written (%s); retrying in the background", type(exc).__name__)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    seconds = app.config.get("IDEMPOTENCY_STALE_SECONDS", 60)
    threading.Thread(target=_retry_write, args=(app, seconds, write, args), daemon=True).start()


def _retry_write(app: Any, seconds: float, write: Callable[..., None], args: tuple[Any, ...]) -> None:
    deadline = time.monotonic() + seconds
    delay = 0.25
    while time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
        with app.app_context():
            try:
                write(*args)
                return
            except SQLAlchemyError:
                continue
    log.error("idempotency record not written within %ss; the claim goes stale", seconds)


def _claim(user_id: int, key: str, fingerprint: str, now: datetime) -> Response | None:
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


def _store(user_id: int, key: str, claimed_at: datetime, status: int, body: str, headers: dict[str, str]) -> None:
    session = db.session()
    with write_transaction(session):
        record = session.get(IdempotencyRecord, (user_id, key), populate_existing=True)
        if record is not None and record.state == "processing" and record.created_at == claimed_at:
            record.state, record.status, record.body, record.headers = "done", status, body, headers


def _release(user_id: int, key: str, claimed_at: datetime) -> None:
    """Drop this request's claim, and only its own: not one a retry took over meanwhile."""
    session = db.session()
    session.rollback()
    with write_transaction(session):
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.state == "processing",
                IdempotencyRecord.created_at == claimed_at,
            )
        )


def purge_expired(sessions: Callable[[], Session]) -> int:
    """Drop answers past their time; the scheduler calls this."""
    with sessions() as session, write_transaction(session):
        statement = delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())
        return session.connection().execute(statement).rowcount
