"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header) for POST endpoints.

The answer to a keyed request is stored under (user, key) in the same transaction as the work it
reports, so there is no moment at which the one is committed without the other: a crash, a killed
connection or an outage leaves either both or neither, and nothing "processing" behind.

* Success: the service runs inside the request's held transaction, the answer (as the endpoint's
  response schema serialised it) is inserted under the key, and one commit makes both durable.
* A duplicate: its INSERT of the key finds the key taken. On PostgreSQL a duplicate in flight
  blocks on the unique key until the first commits (or rolls back, and then it is the first); on
  SQLite BEGIN IMMEDIATE runs them one after the other. Either way the duplicate then rolls its
  own work back and replays the stored answer (``Idempotent-Replayed: true``); another body under
  the key is 422. Its work never counts: only one transaction can insert the key.
* A refusal (412, 409, 422, 403, 404 from the services): the work is rolled back and the refusal
  stored in a transaction of its own, and replayed like any answer - or a retry may hear another
  one (409 turning into 412 once someone else moved the case).
* A 5xx or any unexpected error: everything is rolled back and nothing is stored; a retry runs.
* A record left ``processing`` by an earlier version of this module is taken over after
  ``IDEMPOTENCY_STALE_SECONDS`` (409 "in flight" before), an expired one at once.

A replay that shows a full ID number logs that read like the first answer did (PIPL art. 28): the
stored body stays what the client was first shown, so every retry gets the same bytes, and each
showing of the full number leaves its access-log row."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.extensions import db
from api.models import IdempotencyRecord
from api.problems import problem, problem_for_domain_error
from casework.actor import Actor
from casework.db import end_transaction, held_transaction, utcnow, write_transaction
from casework.errors import CaseworkError
from casework.privacy import log_full_read

HEADER = "Idempotency-Key"
_REPLAYED_HEADERS = ("Content-Type", "ETag", "Location")


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.headers.get("If-Match", "")):
        digest.update(part.encode() + b"\0")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Put it above the endpoint's ``@bp.arguments`` and ``@bp.response``: the answer stored and
    replayed is then the one the response schema made, byte for byte what an unkeyed request gets."""

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
        session = db.session()
        claim = _Claim(g.actor, key, _fingerprint(), utcnow())
        try:
            with held_transaction(session):
                try:
                    response = current_app.make_response(view(*args, **kwargs))
                except CaseworkError as error:
                    response = problem_for_domain_error(error)
                if response.status_code < 400:
                    taken = claim.store(session, response)
                    if taken is None:
                        session.commit()  # the work and its stored answer, together
                        return response
                    session.rollback()  # a duplicate: its work never happened
                    return claim.replay(session, taken)
                end_transaction(session)  # a refusal: what the work wrote, if anything, is undone
        except BaseException:
            session.rollback()
            raise
        if response.status_code >= 500:
            return response
        with write_transaction(session):  # a refusal: stored on its own, its work rolled back
            taken = claim.store(session, response)
        return response if taken is None else claim.replay(session, taken)

    return wrapper


@dataclass(frozen=True)
class _Stored:
    fingerprint: str
    state: str
    status: int | None
    body: str | None
    headers: dict[str, str]


class _Claim:
    def __init__(self, actor: Actor, key: str, fingerprint: str, now: datetime) -> None:
        self.actor, self.key, self.fingerprint, self.now = actor, key, fingerprint, now

    def store(self, session: Session, response: Response) -> _Stored | None:
        """Store ``response`` under the key in the open transaction. None when it is stored; else
        what the key holds (a duplicate's answer is not stored)."""
        config = current_app.config
        ttl = timedelta(hours=config.get("IDEMPOTENCY_TTL_HOURS", 24))
        stale_after = timedelta(seconds=config.get("IDEMPOTENCY_STALE_SECONDS", 60))
        answer = {
            "fingerprint": self.fingerprint,
            "state": "done",
            "status": response.status_code,
            "body": response.get_data(as_text=True),
            "headers": {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers},
            "created_at": self.now,
            "expires_at": self.now + ttl,
        }
        connection = session.connection()
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        # Core, on the session's connection (the pending access-log row is flushed at the commit);
        # RETURNING, not rowcount, which psycopg reports as -1 here.
        inserted = connection.execute(
            dialect.insert(IdempotencyRecord)
            .values(user_id=self.actor.user_id, key=self.key, **answer)
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        ).first()
        if inserted:
            return None
        record = session.scalars(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == self.actor.user_id, IdempotencyRecord.key == self.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        abandoned = record.state == "processing" and record.created_at <= self.now - stale_after
        if record.expires_at <= self.now or abandoned:
            for name, value in answer.items():
                setattr(record, name, value)
            return None
        return _Stored(record.fingerprint, record.state, record.status, record.body, dict(record.headers or {}))

    def replay(self, session: Session, record: _Stored) -> Response:
        """The answer the key holds, as it was first given; or why this request cannot have it.
        Called after the request's own work was rolled back."""
        if record.fingerprint != self.fingerprint:
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
        shown = _full_id_shown(record.status, record.body)
        if shown is not None:
            with write_transaction(session):
                log_full_read(session, self.actor, *shown)
        replay = Response(record.body, status=record.status)
        for name, value in record.headers.items():
            replay.headers[name] = value
        replay.headers["Idempotent-Replayed"] = "true"
        return replay


def _full_id_shown(status: int | None, body: str | None) -> tuple[int, str] | None:
    """(person id, what) when a stored answer shows a full ID number: a case view (its ``person``)
    or a person view; refusals and other answers show none."""
    if status is None or status >= 300 or not body:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    for shown, what in ((answer.get("person"), "case"), (answer, "person")):
        if isinstance(shown, dict) and shown.get("id_number_masked") is False and isinstance(shown.get("id"), int):
            return shown["id"], what
    return None


def purge_expired(sessions: Callable[[], Session]) -> int:
    """Drop answers past their time; the scheduler calls this."""
    with sessions() as session, write_transaction(session):
        statement = delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())
        return session.connection().execute(statement).rowcount
