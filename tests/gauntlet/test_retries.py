"""2. Retries: a storm of clients that send a request, hang up before the answer (or halfway through
the body), and retry with the same Idempotency-Key. Nothing is applied twice, and every client's
final answers agree with each other and with what the history says happened."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import pytest
from sqlalchemy import func, select

from casework.id_number import make_id_number
from casework.models import Case, CaseEvent, Person
from tests.api.helpers import iso
from tests.gauntlet import clients as c
from tests.gauntlet.conftest import LONGCHUAN, assert_history_agrees, open_cases, village_of

pytestmark = pytest.mark.slow

CASES = 3
KEYS_PER_CASE = 4  # different clients, different keys, all at If-Match "1"; the first key is sent by two processes
DROPS = (("full",), ("partial", "full"), ("full", "full"), ("partial",), ("full",))


def _key() -> str:
    return f"gauntlet-{uuid.uuid4()}"


def _assert_consistent(finals: list[c.Answer]) -> None:
    """A client's final answers (first sight and two more retries) are one answer, replayed."""
    assert len(finals) == 3, finals
    first = finals[0]
    for later in finals[1:]:
        assert (later.status, later.body) == (first.status, first.body)
        assert later.headers.get("etag") == first.headers.get("etag")
        assert later.headers.get("idempotent-replayed") == "true", later.headers
    if first.status >= 400:
        assert first.content_type == "application/problem+json", first


def test_transition_retry_storm_applies_each_request_once(running, clients, client, session, logins):
    case_ids = open_cases(client, session, logins, CASES)
    hospital = logins["hospital"].org_unit
    token = logins["coordinator"].token
    plan = []  # (case_id, key, diagnosed_at)
    for case_id in case_ids:
        for k in range(KEYS_PER_CASE):
            plan.append((case_id, _key(), iso((k + 1) / 24)))
    senders = [*plan, *plan[::KEYS_PER_CASE]]  # the first key of each case goes out from two processes
    barrier = clients.barrier(len(senders))
    for n, (case_id, key, diagnosed_at) in enumerate(senders):
        body = c.event_body("confirm", hospital)
        body["data"]["diagnosed_at"] = diagnosed_at
        path = f"/api/v1/cases/{case_id}/events"
        clients.start(
            c.storm, barrier, clients.results, running.base, path, token, body, key, '"1"', DROPS[n % len(DROPS)], n
        )
    results = clients.collect()

    by_key: dict[str, list[list[c.Answer]]] = {}
    for _, key, finals, waits in results:
        assert all(w.status in (0, 409, 503) for w in waits)
        _assert_consistent(finals)
        by_key.setdefault(key, []).append(finals)
    for key, seen in by_key.items():
        assert all(finals[0].body == seen[0][0].body for finals in seen), f"two processes, one key {key}: {seen}"

    session.rollback()
    for case_id in case_ids:
        keys = [(key, at) for cid, key, at in plan if cid == case_id]
        statuses = {key: by_key[key][0][0].status for key, _ in keys}
        assert sorted(statuses.values()) == [200] + [412] * (KEYS_PER_CASE - 1), statuses
        events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)).all()
        assert [e.event for e in events] == ["screen", "confirm"]  # applied once, by one client
        winner_at = next(at for key, at in keys if statuses[key] == 200)
        assert datetime.fromisoformat(events[1].data["diagnosed_at"]) == datetime.fromisoformat(winner_at)
    assert_history_agrees(session, case_ids)


def test_create_retry_storm_creates_once(running, clients, client, session, logins):
    """POST /persons and POST /cases carry no If-Match: only the key stands between a retry and a
    second person or a 409 for a case the client did create."""
    (existing,) = open_cases(client, session, logins, 1)
    session.rollback()
    holder = session.get(Case, existing).person
    # A second disease for the existing person, screened by four processes under one key...
    case_key, case_body = (
        _key(),
        {
            "person_id": holder.id,
            "disease_code": "A01",
            "source": "health_check",
            "screened_at": iso(2),
        },
    )
    # ...and a new person registered by four processes under another.
    number = make_id_number(LONGCHUAN, date(1948, 2, 29), 811)
    person_key, person_body = (
        _key(),
        {
            "id_number": number,
            "name": "玉香",
            "village_code": village_of(session, LONGCHUAN),
            "category": "subsistence",
            "category_since": "2019-05-01",
        },
    )
    disease = _second_disease()
    case_body["disease_code"] = disease
    token = logins["coordinator"].token
    jobs = [("/api/v1/cases", case_body, case_key)] * 4 + [("/api/v1/persons", person_body, person_key)] * 4
    barrier = clients.barrier(len(jobs))
    for n, (path, body, key) in enumerate(jobs):
        drops = DROPS[n % len(DROPS)]
        clients.start(c.storm, barrier, clients.results, running.base, path, token, body, key, None, drops, n)
    results = clients.collect()

    finals_by_key: dict[str, list[c.Answer]] = {}
    for _, key, finals, _waits in results:
        _assert_consistent(finals)
        finals_by_key.setdefault(key, []).append(finals[0])
    for key in (case_key, person_key):
        answers = finals_by_key[key]
        assert {a.status for a in answers} == {201}, [(a.status, a.body) for a in answers]
        assert len({a.headers["location"] for a in answers}) == 1

    session.rollback()
    assert session.scalar(select(func.count()).select_from(Person).where(Person.id_number == number)) == 1
    new_cases = session.scalars(select(Case).where(Case.person_id == holder.id, Case.disease_code == disease)).all()
    assert len(new_cases) == 1
    assert finals_by_key[case_key][0].headers["location"] == f"/api/v1/cases/{new_cases[0].id}"
    assert_history_agrees(session, [existing, new_cases[0].id])


def _second_disease() -> str:
    from tests.casework.helpers import OESOPHAGEAL, PACK

    return next(code for code, d in PACK.diseases.items() if code != OESOPHAGEAL and d.age_max is None)


def test_an_error_answer_is_replayed_too(client, session, logins):
    """Found by the storm: refusals raised by the services (412, 409, …) were not stored under the
    key, so a retry ran again and could hear something else."""
    (case_id,) = open_cases(client, session, logins, 1)
    coordinator = logins["coordinator"]
    path = f"/api/v1/cases/{case_id}/events"
    admit = {"event": "admit", "data": {"admitted_at": iso(1)}}
    key = {**coordinator.headers, "If-Match": '"1"', "Idempotency-Key": _key()}
    first = client.post(path, json=admit, headers=key)
    assert first.status_code == 409 and first.json["allowed_events"]
    confirm = c.event_body("confirm", logins["hospital"].org_unit)
    assert client.post(path, json=confirm, headers={**coordinator.headers, "If-Match": '"1"'}).status_code == 200
    retry = client.post(path, json=admit, headers=key)
    assert (retry.status_code, retry.json) == (409, first.json)  # not a 412 about a version it never saw
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.headers["Content-Type"] == "application/problem+json"
