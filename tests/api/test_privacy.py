"""A masked ID number stays masked: nothing else in any answer lets a role without full access
rebuild it (the mask hides exactly the eight birth-date digits), and screening cannot be used to
probe persons outside the caller's area."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

from api.extensions import db
from casework.db import utcnow
from casework.id_number import make_id_number
from casework.services.alerts import scan
from tests.api.helpers import HttpCase, iso, register_person, screen_case
from tests.api.test_settlements import post_bill
from tests.casework.helpers import OESOPHAGEAL
from tests.conftest import LONGCHUAN, village_of

BORN = date(1961, 7, 23)
# Everything that names the birth date: the ID's own digits, ISO dates, HTTP dates.
BIRTH_PATTERNS = ("19610723", "1961-07-23", "23 Jul 1961", "1961/07/23")
FULL_ACCESS = {"admin", "coordinator"}


def _walked_case(app, client, session, logins) -> tuple[HttpCase, str]:
    """A Longchuan case that went everywhere: treated, billed, in follow-up, referred, overdue."""
    number = make_id_number(LONGCHUAN, BORN, 517)
    person = register_person(client, logins["coordinator"], number, village_of(session, LONGCHUAN))
    assert person.status_code == 201, person.json
    screened = screen_case(client, logins["coordinator"], person.json["id"], OESOPHAGEAL, 40)
    case = HttpCase(client, screened.json["id"])
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    steps = [
        (
            coordinator,
            "confirm",
            {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(38)},
        ),
        (coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"}),
        (hospital, "admit", {"admitted_at": iso(35)}),
        (hospital, "discharge", {"discharged_at": iso(30), "outcome": "improved"}),
    ]
    for who, event, data in steps:
        assert case.fire(who, event, data).status_code == 200
    assert post_bill(client, case, hospital, admitted_at=iso(35), discharged_at=iso(30)).status_code == 201
    assert case.fire(coordinator, "start_follow_up", {"interval_days": 30}).status_code == 200
    referred = case.fire(hospital, "refer", {"expert_group_id": logins["city_expert"].org_unit, "summary": "s"})
    assert referred.status_code == 200
    with app.app_context():
        scan(db.session(), utcnow() + timedelta(days=400))
    return case, number


def _get_paths(client, logins) -> list[str]:
    spec = client.get("/api/v1/openapi.json").json
    return [path for path, ops in spec["paths"].items() if "get" in ops]


def test_no_answer_lets_a_masked_role_rebuild_the_id_number(app, client, session, logins):
    case, number = _walked_case(app, client, session, logins)
    person_id = case.get(logins["admin"]).json["person"]["id"]
    alert_ids = [a["id"] for a in client.get("/api/v1/alerts", headers=logins["admin"].headers).json["items"]]
    assert alert_ids, "the walk should leave alerts"
    ids = {"case_id": case.id, "person_id": person_id, "alert_id": alert_ids[0], "code": "longchuan-2017"}
    paths = _get_paths(client, logins)
    assert "/api/v1/persons/{person_id}" in paths and "/api/v1/cases/{case_id}/events" in paths
    walked = 0
    for name, login in logins.items():
        for template in paths:
            url = re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 1)), template)
            if url.endswith("/ledger"):
                url += "?format=csv"  # the same rows as the .xlsx, in a form a text search can read
            answer = client.get(url, headers=login.headers)
            assert answer.status_code < 500, (name, url)
            if answer.mimetype.startswith("application/vnd.openxmlformats"):
                continue  # the empty import template
            text = answer.get_data().decode("utf-8-sig")
            if name in FULL_ACCESS and url.endswith(
                (f"/persons/{person_id}", f"/cases/{case.id}", "/ledger?format=csv")
            ):
                continue  # their full record read and the ledger (both logged) show the number
            walked += 1
            assert number not in text, (name, url)
            for pattern in BIRTH_PATTERNS:
                assert pattern not in text, (name, url, pattern)
    assert walked > 100


def test_masked_viewers_get_age_and_sex_full_access_gets_the_birth_date(client, session, logins):
    number = make_id_number(LONGCHUAN, BORN, 519)
    person = register_person(client, logins["coordinator"], number, village_of(session, LONGCHUAN)).json
    assert person["birth_date"] == BORN.isoformat() and person["id_number"] == number
    screened = screen_case(client, logins["coordinator"], person["id"], OESOPHAGEAL, 3).json
    today = date.today()
    age = today.year - BORN.year - ((today.month, today.day) < (BORN.month, BORN.day))
    for name in ("doctor", "city_supervisor", "province_supervisor"):
        seen = client.get(f"/api/v1/persons/{person['id']}", headers=logins[name].headers).json
        assert seen["id_number_masked"] is True and "birth_date" not in seen, name
        assert (seen["age"], seen["sex"]) == (age, "M"), name
        in_case = client.get(f"/api/v1/cases/{screened['id']}", headers=logins[name].headers).json["person"]
        assert "birth_date" not in in_case and in_case["age"] == age, name
    # Lists mask for everyone, so they carry the age, not the date, even for the coordinator.
    [listed] = client.get("/api/v1/cases", headers=logins["coordinator"].headers).json["items"]
    assert "birth_date" not in listed["person"] and listed["person"]["age"] == age


# --- screening probes ------------------------------------------------------------------------------

PROBE = {"disease_code": OESOPHAGEAL, "source": "health_check"}


def _probe(client, who, person_id, disease=OESOPHAGEAL):
    return client.post(
        "/api/v1/cases",
        headers=who.headers,
        json={**PROBE, "disease_code": disease, "person_id": person_id, "screened_at": iso(1)},
    )


def _answer(response) -> tuple[int, str]:
    body = dict(response.json)
    return response.status_code, json.dumps(body, sort_keys=True)


def test_screening_outside_ones_area_answers_the_same_for_everyone(client, session, logins):
    """A Longchuan patient is probed by a hospital that never held their case (the city hospital),
    and by a coordinator and a village doctor of another county: with an open case, without one,
    with an ineligible category, or not existing at all, the answer is one and the same."""
    village = village_of(session, LONGCHUAN)
    coordinator = logins["coordinator"]
    with_case = register_person(client, coordinator, make_id_number(LONGCHUAN, BORN, 521), village).json
    assert screen_case(client, coordinator, with_case["id"], OESOPHAGEAL).status_code == 201
    without_case = register_person(client, coordinator, make_id_number(LONGCHUAN, BORN, 523), village).json
    ineligible = register_person(
        client, coordinator, make_id_number(LONGCHUAN, BORN, 525), village, category="hardship"
    ).json
    missing = 10**9
    for prober in ("city_hospital", "other_coordinator", "other_doctor"):
        who = logins[prober]
        answers = {
            kind: _answer(_probe(client, who, pid, disease))
            for kind, pid, disease in (
                ("open case", with_case["id"], OESOPHAGEAL),
                ("no case", without_case["id"], OESOPHAGEAL),
                ("other disease", without_case["id"], "no_such_disease"),  # well-formed, in no catalogue
                ("ineligible", ineligible["id"], OESOPHAGEAL),
                ("missing", missing, OESOPHAGEAL),
            )
        }
        assert len(set(answers.values())) == 1, (prober, answers)
        status, body = answers["missing"]
        assert status == 422 and "person_id" in json.loads(body)["errors"], (prober, body)
        # And no junk screen slipped through to grant a read of the person afterwards.
        assert client.get(f"/api/v1/persons/{without_case['id']}", headers=who.headers).status_code == 404
    # In the area, the answers may say why: the coordinator is told of the open case.
    assert _probe(client, coordinator, with_case["id"]).status_code == 409


def test_a_hospital_screens_only_persons_it_already_sees(client, session, logins):
    village = village_of(session, LONGCHUAN)
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    stranger = register_person(client, coordinator, make_id_number(LONGCHUAN, BORN, 527), village).json
    assert _probe(client, hospital, stranger["id"]).status_code == 422
    assert client.get(f"/api/v1/persons/{stranger['id']}", headers=hospital.headers).status_code == 404
    # A patient of a case the hospital holds may be screened by it for another disease.
    patient = register_person(client, coordinator, make_id_number(LONGCHUAN, BORN, 529), village).json
    case = HttpCase(client, screen_case(client, coordinator, patient["id"], OESOPHAGEAL).json["id"])
    case.fire(
        coordinator, "confirm", {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(1)}
    )
    assert case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"}).status_code == 200
    assert client.get(f"/api/v1/persons/{patient['id']}", headers=hospital.headers).status_code == 200
    assert _probe(client, hospital, patient["id"]).status_code == 409  # it sees them: told why
