"""Idempotency-Key: a keyed request answers exactly what the same request without a key answers,
its replays too, and a replay that shows a full ID number is a logged read like the first answer."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

from sqlalchemy import func, select

from api.models import IdempotencyRecord
from casework.db import utcnow
from casework.id_number import make_id_number
from casework.models import AccessLog, CaseEvent
from tests.api.helpers import iso
from tests.api.test_lifecycle import new_case
from tests.conftest import LONGCHUAN, village_of


def _person_body(session, sequence: int) -> dict:
    return {
        "id_number": make_id_number(LONGCHUAN, date(1972, 2, 2), sequence),
        "name": "岩香",
        "village_code": village_of(session, LONGCHUAN),
        "category": "poor_not_exited",
        "category_since": "2016-01-01",
    }


def _without(body: dict, *names: str) -> dict:
    return {k: v for k, v in body.items() if k not in names}


def test_a_keyed_registration_answers_the_documented_body_and_replays_it(client, session, logins):
    """Found in review: with a key, the answer skipped the response schema (dates as HTTP dates,
    "Wed, 02 Feb 1972 00:00:00 GMT"), so the same request answered two shapes."""
    who = logins["coordinator"].headers
    plain = client.post("/api/v1/persons", headers=who, json=_person_body(session, 611))
    keyed = client.post("/api/v1/persons", headers={**who, "Idempotency-Key": "p-1"}, json=_person_body(session, 613))
    replay = client.post("/api/v1/persons", headers={**who, "Idempotency-Key": "p-1"}, json=_person_body(session, 613))
    assert (plain.status_code, keyed.status_code, replay.status_code) == (201, 201, 201)
    assert keyed.json["birth_date"] == plain.json["birth_date"] == "1972-02-02"
    assert keyed.json["category_since"] == "2016-01-01"
    assert _without(keyed.json, "id", "id_number") == _without(plain.json, "id", "id_number")
    assert set(keyed.json) == set(plain.json)
    assert replay.get_data() == keyed.get_data() and replay.headers["Location"] == keyed.headers["Location"]
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_a_keyed_transition_answers_iso_times_like_an_unkeyed_one(client, session, logins):
    coordinator = logins["coordinator"]
    data = {"diagnosis_code": "C15.9", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(1)}
    plain = new_case(client, session, logins).fire(coordinator, "confirm", data, etag='"1"')
    case = new_case(client, session, logins)
    keyed = case.fire(coordinator, "confirm", data, etag='"1"', headers={"Idempotency-Key": "t-1"})
    replay = case.fire(coordinator, "confirm", data, etag='"1"', headers={"Idempotency-Key": "t-1"})
    assert (plain.status_code, keyed.status_code, replay.status_code) == (200, 200, 200)
    for field in ("screened_at", "entered_state_at", "due_at"):
        assert "T" in keyed.json[field] and not keyed.json[field][:3].isalpha(), keyed.json[field]
    varying = ("id", "person", "screened_at", "entered_state_at", "due_at")
    assert _without(keyed.json, *varying) == _without(plain.json, *varying)
    assert replay.get_data() == keyed.get_data() and replay.headers["ETag"] == '"2"'


def test_a_replay_showing_the_full_id_is_a_logged_read(client, session, logins):
    coordinator = logins["coordinator"]
    data = {"diagnosis_code": "C15.9", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(1)}
    case = new_case(client, session, logins)
    key = {"Idempotency-Key": "logged-replay"}
    first = case.fire(coordinator, "confirm", data, etag='"1"', headers=key)
    person = first.json["person"]
    assert person["id_number_masked"] is False

    def reads() -> int:
        session.rollback()
        return session.scalar(select(func.count()).select_from(AccessLog).where(AccessLog.person_id == person["id"]))

    before = reads()
    replay = case.fire(coordinator, "confirm", data, etag='"1"', headers=key)
    assert replay.json["person"]["id_number"] == person["id_number"]
    assert reads() == before + 1
    session.rollback()
    last = session.scalars(select(AccessLog).order_by(AccessLog.id.desc()).limit(1)).one()
    assert (last.username, last.what) == ("coordinator", "case")
    # A refusal replayed shows no ID number and logs nothing.
    refused = case.fire(coordinator, "exclude", reason="x", etag='"9"', headers={"Idempotency-Key": "refused"})
    again = case.fire(coordinator, "exclude", reason="x", etag='"9"', headers={"Idempotency-Key": "refused"})
    assert (refused.status_code, again.status_code) == (412, 412) and again.headers["Idempotent-Replayed"] == "true"
    assert reads() == before + 1


def test_a_retry_hears_the_first_answer_and_another_body_is_refused(client, session, logins):
    """The retry's own attempt (refused: the ID number is registered now) is rolled back and the
    stored 201 replayed; another body under the key is 422."""
    who = logins["coordinator"].headers
    first = client.post("/api/v1/persons", headers={**who, "Idempotency-Key": "dup"}, json=_person_body(session, 613))
    again = client.post("/api/v1/persons", headers={**who, "Idempotency-Key": "dup"}, json=_person_body(session, 613))
    other = client.post("/api/v1/persons", headers={**who, "Idempotency-Key": "dup"}, json=_person_body(session, 614))
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert other.json["type"].endswith("/idempotency-key-reused")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 1


def _leave_processing(session, created_at, data: bytes) -> None:
    """A record an earlier version of the server left "processing" (it claimed the key first) for
    the request POST /api/v1/persons with body ``data``."""
    fingerprint = hashlib.sha256(b"POST\0/api/v1/persons\0\0" + data).hexdigest()
    user_id = session.scalar(select(IdempotencyRecord.user_id).limit(1))
    session.add(
        IdempotencyRecord(
            user_id=user_id,
            key="left-behind",
            fingerprint=fingerprint,
            state="processing",
            created_at=created_at,
            expires_at=created_at + timedelta(hours=24),
        )
    )
    session.commit()


def test_a_claim_left_processing_answers_409_until_it_goes_stale(app, client, session, logins):
    who = logins["coordinator"].headers
    client.post("/api/v1/persons", headers={**who, "Idempotency-Key": "any"}, json=_person_body(session, 615))
    session.rollback()
    data = json.dumps(_person_body(session, 616)).encode()
    _leave_processing(session, utcnow(), data)
    headers = {**who, "Idempotency-Key": "left-behind", "Content-Type": "application/json"}
    busy = client.post("/api/v1/persons", headers=headers, data=data)
    assert busy.status_code == 409 and busy.json["type"].endswith("/idempotency-key-in-flight")
    assert busy.headers["Retry-After"] == "1"
    session.rollback()
    record = session.get(IdempotencyRecord, (session.scalar(select(IdempotencyRecord.user_id).limit(1)), "left-behind"))
    record.created_at = utcnow() - timedelta(seconds=app.config.get("IDEMPOTENCY_STALE_SECONDS", 60) + 1)
    session.commit()
    taken_over = client.post("/api/v1/persons", headers=headers, data=data)
    replay = client.post("/api/v1/persons", headers=headers, data=data)
    assert (taken_over.status_code, replay.status_code) == (201, 201)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json == taken_over.json


def test_a_server_error_stores_nothing_and_the_retry_runs(client, session, logins, monkeypatch):
    coordinator = logins["coordinator"]
    data = {"diagnosis_code": "C15.9", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(1)}
    case = new_case(client, session, logins)

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("api.cases.fire", broken)
    key = {"Idempotency-Key": "after-a-500"}
    assert case.fire(coordinator, "confirm", data, etag='"1"', headers=key).status_code == 500
    monkeypatch.undo()
    retry = case.fire(coordinator, "confirm", data, etag='"1"', headers=key)
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
    session.rollback()
    assert session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case.id)) == 2
