"""Findings of the outside probe (issue 13, medium): logins, role checks on writes, follow-up
deadlines in the history, duplicates outside one's area, response headers, inputs that used to
reach a 500."""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta

import pytest

import casework.services.auth as auth_service
from casework.db import utcnow
from casework.id_number import make_id_number
from casework.models import Alert
from tests.api.conftest import PASSWORD
from tests.api.helpers import HttpCase, iso, register_person
from tests.api.test_lifecycle import new_case
from tests.api.test_settlements import post_bill, treated_case
from tests.conftest import DEHONG, LONGCHUAN, make_engine, village_of

LOGIN = "/api/v1/auth/token"


def _login(client, username, password, address="10.0.0.1"):
    return client.post(
        LOGIN, json={"username": username, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def _problem(response, status):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json"
    return response.json


# --- logins -----------------------------------------------------------------------------------------


def test_failed_logins_from_one_client_do_not_lock_the_user_out_elsewhere(client, session, logins):
    for _ in range(auth_service.THROTTLE_AFTER):
        assert _login(client, "admin", "guess", "203.0.113.9").status_code == 401
    _problem(_login(client, "admin", "guess", "203.0.113.9"), 429)
    assert _login(client, "admin", PASSWORD, "203.0.113.9").status_code == 429  # that client waits
    # The admin, from their own desk, is not locked out by a stranger's guesses.
    answer = _login(client, "admin", PASSWORD, "10.0.0.1")
    assert answer.status_code == 200 and answer.json["token"]


def test_unknown_usernames_cost_the_same_hash_as_wrong_passwords(client, session, logins, monkeypatch):
    checked = []
    real = auth_service.verify_password

    def counting(password_hash, password):
        checked.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(auth_service, "verify_password", counting)
    unknown = _login(client, "nobody-here", "guess")
    wrong = _login(client, "admin", "guess")
    assert (unknown.status_code, wrong.status_code) == (401, 401)
    assert unknown.json == wrong.json
    assert len(checked) == 2 and checked[0].startswith("$argon2id$") and checked[1].startswith("$argon2id$")


def test_a_login_does_not_hold_the_write_lock_while_it_hashes(client, session, logins, db_url, monkeypatch):
    """While the password is being checked, another client's write goes through at once."""
    other = make_engine(db_url)
    written = []
    real = auth_service.verify_password

    def write_meanwhile(password_hash, password):
        raw = other.raw_connection()  # plain DB-API: the statements below are all there is
        try:
            cursor = raw.cursor()
            if other.dialect.name == "sqlite":
                cursor.execute("PRAGMA busy_timeout=100")
                cursor.execute("BEGIN IMMEDIATE")  # the one write lock
                cursor.execute("COMMIT")
            else:
                cursor.execute("SET lock_timeout = '100ms'")
                cursor.execute("LOCK TABLE login_failures IN EXCLUSIVE MODE")
                raw.commit()
            written.append(True)
        finally:
            raw.close()
        return real(password_hash, password)

    monkeypatch.setattr(auth_service, "verify_password", write_meanwhile)
    try:
        assert _login(client, "admin", PASSWORD).status_code == 200
        assert _login(client, "admin", "wrong").status_code == 401
    finally:
        other.dispose()
    assert written == [True, True]


# --- role checks on writes ----------------------------------------------------------------------


def test_supervisors_read_alerts_but_do_not_acknowledge_them(app, client, session, logins):
    case = new_case(client, session, logins, screened_days_ago=20)
    session.rollback()  # a fresh snapshot: the API wrote through its own connections
    now = utcnow()
    alert = Alert(
        case_id=case.id, rule="not_confirmed", due_at=now - timedelta(days=5), raised_at=now, level=1,
        org_unit_code=DEHONG, status="open", escalated_at=now,
    )
    session.add(alert)
    session.commit()
    listed = client.get("/api/v1/alerts", headers=logins["city_supervisor"].headers).json["items"]
    assert [a["id"] for a in listed] == [alert.id]
    _problem(client.post(f"/api/v1/alerts/{alert.id}/acknowledge", headers=logins["city_supervisor"].headers), 403)


def test_bills_only_from_the_holding_hospital_on_an_admitted_open_case(client, session, logins):
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    # Assigned, never admitted: no bill of any kind.
    case = new_case(client, session, logins)
    case.fire(coordinator, "confirm", {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit,
                                       "diagnosed_at": iso(2)})
    case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"})
    _problem(post_bill(client, case, hospital, kind="outpatient_special", admitted_at=None, discharged_at=iso(1)), 409)
    # Treated, then closed: no bill on a closed case.
    closed = treated_case(client, session, logins)
    assert closed.fire(coordinator, "close", reason="治愈").status_code == 200
    _problem(post_bill(client, closed, hospital), 409)
    # Treated, then taken over by another hospital after a referral: the first one no longer bills.
    moved = treated_case(client, session, logins)
    assert moved.fire(coordinator, "start_follow_up", {"interval_days": 30}).status_code == 200
    assert moved.fire(hospital, "refer", {"expert_group_id": logins["city_expert"].org_unit,
                                          "summary": "s"}).status_code == 200
    accepted = moved.fire(logins["city_expert"], "accept_referral",
                          {"hospital_id": logins["city_hospital"].org_unit, "plan": "p"})
    assert accepted.status_code == 200, accepted.json
    _problem(post_bill(client, moved, hospital), 403)


# --- follow-up visits -------------------------------------------------------------------------------


def _in_follow_up(client, session, logins) -> HttpCase:
    case = treated_case(client, session, logins)
    assert case.fire(logins["coordinator"], "start_follow_up", {"interval_days": 30}).status_code == 200
    return case


def test_a_visit_cannot_move_the_deadline_a_century_ahead(client, session, logins):
    case = _in_follow_up(client, session, logins)
    url = f"/api/v1/cases/{case.id}/follow-ups"
    far = (utcnow() + timedelta(days=365 * 100)).isoformat()
    answer = client.post(url, headers=logins["coordinator"].headers,
                         json={"visited_at": iso(1), "findings": "ok", "next_due_at": far})
    assert "next_due_at" in _problem(answer, 422)["errors"]


def test_a_visit_and_the_deadline_it_sets_are_in_the_history(client, session, logins):
    case = _in_follow_up(client, session, logins)
    before = case.get(logins["coordinator"]).json
    url = f"/api/v1/cases/{case.id}/follow-ups"
    due = (utcnow() + timedelta(days=60)).isoformat()
    visit = client.post(url, headers=logins["coordinator"].headers,
                        json={"visited_at": iso(1), "findings": "良好", "next_due_at": due})
    assert visit.status_code == 201, visit.json
    after = case.get(logins["coordinator"]).json
    assert after["due_at"] != before["due_at"]
    history = client.get(f"/api/v1/cases/{case.id}/events", headers=logins["coordinator"].headers).json
    last = history[-1]
    assert (last["from_state"], last["to_state"], last["actor"]) == ("follow_up", "follow_up", "coordinator")
    assert last["data"]["due_at"] == after["due_at"] and last["data"]["previous_due_at"] == before["due_at"]
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))


# --- duplicates outside one's area ------------------------------------------------------------------


def test_a_duplicate_outside_ones_area_discloses_nothing_about_the_other_record(client, session, logins):
    number = make_id_number(LONGCHUAN, date(1972, 5, 6), 331)
    first = register_person(client, logins["coordinator"], number, village_of(session, LONGCHUAN))
    assert first.status_code == 201
    mine = _problem(register_person(client, logins["coordinator"], number, village_of(session, LONGCHUAN)), 409)
    elsewhere = register_person(client, logins["other_coordinator"], number, village_of(session, "320921"))
    body = _problem(elsewhere, 409)
    assert "Location" not in elsewhere.headers
    text_body = json.dumps(body, ensure_ascii=False)
    assert str(first.json["id"]) not in text_body and LONGCHUAN not in text_body
    # The same answer as for an ID registered nowhere near: it names no record, region or person.
    other_number = make_id_number("320921", date(1972, 5, 6), 333)
    assert register_person(client, logins["coordinator"], other_number,
                           village_of(session, LONGCHUAN)).status_code == 201
    again = register_person(client, logins["other_coordinator"], other_number, village_of(session, "320921"))
    assert _problem(again, 409) == body
    assert mine["detail"] != body["detail"]


# --- headers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/cases", "/api/v1/cases/999999", "/api/v1/openapi.json"])
def test_security_headers_on_every_answer(client, logins, path):
    answer = client.get(path, headers=logins["coordinator"].headers)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    if path != "/api/v1/openapi.json":
        assert answer.headers["Cache-Control"] == "no-store"


def test_tokens_are_not_cached(client, logins):
    answer = _login(client, "admin", PASSWORD)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"


# --- inputs that reached a 500 ---------------------------------------------------------------------


def test_deeply_nested_json_is_a_problem_not_a_crash(client, logins):
    body = "[" * 100_000 + "]" * 100_000
    answer = client.post("/api/v1/cases", headers={**logins["coordinator"].headers,
                                                   "Content-Type": "application/json"}, data=body)
    assert 400 <= answer.status_code < 500 and answer.mimetype == "application/problem+json"


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "value", [{"before": 10**30}, {"before": 1e30}, {"before": True}, {"before": -5}, [1], "x", {"before": "7"}]
)
@pytest.mark.parametrize("path", ["/api/v1/cases", "/api/v1/alerts"])
def test_foreign_cursors_are_422(client, logins, value, path):
    answer = client.get(path, query_string={"cursor": _cursor(value)}, headers=logins["coordinator"].headers)
    assert "cursor" in _problem(answer, 422)["errors"]


@pytest.mark.parametrize("amount", ["1e30", "1E+3", "1_000.00", "99999999999999999.00", " 12.00", "0x10"])
def test_odd_amounts_are_422(client, session, logins, amount):
    case = treated_case(client, session, logins)
    answer = post_bill(client, case, logins["hospital"], total=amount)
    assert "total" in _problem(answer, 422)["errors"]


def test_a_village_doctor_filters_by_their_own_township_and_villages(client, session, logins):
    case = new_case(client, session, logins)
    doctor = logins["doctor"]
    village = case.get(doctor).json["person"]["village_code"]
    for region in (doctor.org_unit, village):
        answer = client.get("/api/v1/cases", query_string={"region": region}, headers=doctor.headers)
        assert answer.status_code == 200, answer.json
        assert [c["id"] for c in answer.json["items"]] == [case.id]
    county = client.get("/api/v1/cases", query_string={"region": LONGCHUAN}, headers=doctor.headers)
    assert [c["id"] for c in county.json["items"]] == [case.id]

