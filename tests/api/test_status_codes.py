"""Every status code docs/api.md names, each produced by a request that needs it; all problem+json."""

from __future__ import annotations

import threading
from datetime import date, timedelta

from sqlalchemy import func, select

from casework.db import utcnow
from casework.id_number import make_id_number
from casework.models import AccessLog, CaseEvent
from tests.api.conftest import PASSWORD, add_login
from tests.api.helpers import HttpCase, iso, register_person, screen_case
from tests.api.test_lifecycle import new_case
from tests.casework.helpers import OESOPHAGEAL
from tests.conftest import LONGCHUAN, village_of

PROBLEM = "application/problem+json"


def assert_problem(response, status):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == PROBLEM
    body = response.json
    assert body["status"] == status and body["title"] and body["type"] and "detail" in body
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_login_and_bad_credentials(client, session):
    add_login(session, "clerk", "county_coordinator", LONGCHUAN)
    good = client.post("/api/v1/auth/token", json={"username": "clerk", "password": PASSWORD})
    assert good.status_code == 200 and good.json["token"] and good.json["expires_at"]
    me = {"Authorization": f"Bearer {good.json['token']}"}
    assert client.get("/api/v1/policies", headers=me).status_code == 200
    assert_problem(client.post("/api/v1/auth/token", json={"username": "clerk", "password": "wrong"}), 401)
    assert_problem(client.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"}), 401)
    # Logging out revokes the token.
    assert client.post("/api/v1/auth/revoke", headers=me).status_code == 204
    assert_problem(client.get("/api/v1/policies", headers=me), 401)


def test_login_throttled_after_repeated_failures(client, session):
    add_login(session, "target", "county_coordinator", LONGCHUAN)
    for _ in range(5):
        assert_problem(client.post("/api/v1/auth/token", json={"username": "target", "password": "guess"}), 401)
    throttled = client.post("/api/v1/auth/token", json={"username": "target", "password": PASSWORD})
    assert_problem(throttled, 429)
    assert int(throttled.headers["Retry-After"]) > 0


def test_401_without_or_with_a_bad_token(client):
    response = client.get("/api/v1/cases")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_problem(client.get("/api/v1/cases", headers={"Authorization": "Bearer not-a-token"}), 401)


def test_201_409_and_422_for_persons(client, session, logins):
    coordinator = logins["coordinator"]
    village = village_of(session, LONGCHUAN)
    number = make_id_number(LONGCHUAN, date(1970, 1, 1), 317)
    created = register_person(client, coordinator, number.lower(), village)
    assert created.status_code == 201 and created.json["id_number"] == number
    assert created.json["sex"] == "M" and created.json["birth_date"] == "1970-01-01"
    again = register_person(client, coordinator, number, village)
    assert_problem(again, 409)
    assert again.headers["Location"] == f"/api/v1/persons/{created.json['id']}"
    bad = register_person(client, coordinator, number[:-1] + ("0" if number[-1] != "0" else "1"), village)
    assert "id_number" in assert_problem(bad, 422)["errors"]
    missing = client.post("/api/v1/persons", headers=coordinator.headers, json={"name": "x"})
    errors = assert_problem(missing, 422)["errors"]
    assert {"id_number", "village_code", "category", "category_since"} <= set(errors)


def test_case_creation_errors(client, session, logins):
    coordinator = logins["coordinator"]
    person = register_person(
        client, coordinator, make_id_number(LONGCHUAN, date(1970, 1, 1), 511), village_of(session, LONGCHUAN)
    ).json
    future = client.post(
        "/api/v1/cases",
        headers=coordinator.headers,
        json={
            "person_id": person["id"],
            "disease_code": OESOPHAGEAL,
            "source": "health_check",
            "screened_at": (utcnow() + timedelta(days=1)).isoformat(),
        },
    )
    assert "screened_at" in assert_problem(future, 422)["errors"]
    unknown = screen_case(client, coordinator, person["id"], "not_a_disease")
    assert "disease_code" in assert_problem(unknown, 422)["errors"]
    assert screen_case(client, coordinator, person["id"], OESOPHAGEAL).status_code == 201
    assert_problem(screen_case(client, coordinator, person["id"], OESOPHAGEAL), 409)
    assert_problem(screen_case(client, logins["city_supervisor"], person["id"], OESOPHAGEAL), 403)


def test_transition_status_codes(client, session, logins):
    case = new_case(client, session, logins)
    coordinator = logins["coordinator"]
    url = f"/api/v1/cases/{case.id}/events"
    no_if_match = client.post(url, headers=coordinator.headers, json={"event": "exclude", "reason": "x"})
    assert_problem(no_if_match, 428)
    stale = case.fire(coordinator, "exclude", reason="x", etag='"7"')
    assert assert_problem(stale, 412)["current_version"] == 1
    illegal = case.fire(coordinator, "discharge", {"discharged_at": iso(), "outcome": "cured"})
    assert assert_problem(illegal, 409)["allowed_events"] == ["confirm", "exclude", "withdraw", "record_death"]
    bad_data = case.fire(
        coordinator,
        "confirm",
        {"diagnosis_code": "C16.0", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(1)},
    )
    assert "diagnosis_code" in assert_problem(bad_data, 422)["errors"]
    shape = case.fire(coordinator, "confirm", {"diagnosis_code": 42})
    assert {"data.diagnosis_code", "data.diagnosed_by", "data.diagnosed_at"} <= set(
        assert_problem(shape, 422)["errors"]
    )
    unknown_event = case.fire(coordinator, "teleport")
    assert "event" in assert_problem(unknown_event, 422)["errors"]
    forbidden = case.fire(logins["doctor"], "exclude", reason="x")
    assert_problem(forbidden, 403)
    hidden = case.fire(logins["other_coordinator"], "exclude", reason="x", etag='"1"')
    assert_problem(hidden, 404)
    assert case.get(coordinator).json["version"] == 1
    session.rollback()  # a fresh snapshot: the API wrote through its own connections
    assert session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case.id)) == 1


def test_idempotency_key_replays_conflicts_and_rejects_reuse(client, session, logins):
    case = new_case(client, session, logins)
    coordinator = logins["coordinator"]
    key = {"Idempotency-Key": "confirm-once-7f3a"}
    data = {"diagnosis_code": "C15.9", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(1)}
    first = case.fire(coordinator, "confirm", data, etag='"1"', headers=key)
    assert first.status_code == 200
    replay = case.fire(coordinator, "confirm", data, etag='"1"', headers=key)
    assert replay.status_code == 200 and replay.json == first.json and replay.headers["ETag"] == '"2"'
    assert replay.headers["Idempotent-Replayed"] == "true"
    other_body = case.fire(coordinator, "exclude", reason="x", etag='"1"', headers=key)
    assert_problem(other_body, 422)
    assert case.get(coordinator).json["version"] == 2


def test_concurrent_duplicates_with_one_key_apply_once(app, session, logins):
    case = new_case(app.test_client(), session, logins)
    coordinator = logins["coordinator"]
    data = {"diagnosis_code": "C15.9", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(1)}
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def send():
        client = app.test_client()
        barrier.wait()
        response = HttpCase(client, case.id).fire(
            coordinator, "confirm", data, etag='"1"', headers={"Idempotency-Key": "double-click"}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(statuses) <= {200, 409} and 200 in statuses
    session.rollback()
    assert session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case.id)) == 2


def test_404_405_413_415_are_problems(client, logins, app):
    who = logins["coordinator"].headers
    assert_problem(client.get("/api/v1/cases/999999", headers=who), 404)
    assert_problem(client.get("/api/v1/no-such-thing", headers=who), 404)
    assert_problem(client.delete("/api/v1/cases", headers=who), 405)
    assert_problem(
        client.post("/api/v1/persons", headers=who, data="id=1", content_type="application/x-www-form-urlencoded"), 415
    )
    huge = "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)
    assert_problem(client.post("/api/v1/persons", headers=who, data=huge, content_type="application/json"), 413)
    assert_problem(client.post("/api/v1/persons", headers=who, data="{not json", content_type="application/json"), 400)


def test_500_is_a_problem_without_a_trace(app, client, logins):
    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = client.get("/api/v1/boom", headers=logins["coordinator"].headers)
    assert_problem(response, 500)
    assert "secret internals" not in response.get_data(as_text=True)


def test_masking_and_access_log(client, session, logins):
    case = new_case(client, session, logins)
    full = case.get(logins["coordinator"]).json["person"]
    assert full["id_number_masked"] is False and "*" not in full["id_number"]
    supervisor = case.get(logins["city_supervisor"]).json["person"]
    assert supervisor["id_number_masked"] is True
    assert supervisor["id_number"] == full["id_number"][:6] + "********" + full["id_number"][-4:]
    listed = client.get("/api/v1/cases", headers=logins["coordinator"].headers).json["items"][0]["person"]
    assert listed["id_number_masked"] is True
    # Registration, screening and the record view showed the full number; the masked reads left no entry.
    session.rollback()
    reads = session.scalars(select(AccessLog).where(AccessLog.person_id == full["id"]).order_by(AccessLog.id)).all()
    assert [(r.username, r.what) for r in reads] == [
        ("coordinator", "person"),
        ("coordinator", "case"),
        ("coordinator", "case"),
    ]


def test_health(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"


def test_idempotency_answers_expire_and_are_purged(app, client, session, logins):
    from sqlalchemy.orm import sessionmaker

    from api.idempotency import purge_expired
    from api.models import IdempotencyRecord

    coordinator = logins["coordinator"]
    body = {
        "id_number": make_id_number(LONGCHUAN, date(1972, 2, 2), 715),
        "name": "岩香",
        "village_code": village_of(session, LONGCHUAN),
        "category": "poor_not_exited",
        "category_since": "2016-01-01",
    }
    first = client.post("/api/v1/persons", headers={**coordinator.headers, "Idempotency-Key": "k1"}, json=body)
    assert first.status_code == 201
    session.rollback()
    record = session.get(IdempotencyRecord, (session.scalar(select(IdempotencyRecord.user_id)), "k1"))
    record.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    with app.app_context():
        from api.extensions import db

        assert purge_expired(sessionmaker(db.engine)) == 1
    session.rollback()
    assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0
