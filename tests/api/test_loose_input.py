"""Findings of the outside probe (issue 13, low): passwords and user names, loose numbers, dates
and booleans."""

from __future__ import annotations

from datetime import date

import pytest

from casework.id_number import make_id_number
from tests.api.helpers import iso, register_person
from tests.api.test_lifecycle import new_case
from tests.api.test_settlements import post_bill, treated_case
from tests.casework.helpers import OESOPHAGEAL
from tests.conftest import LONGCHUAN, village_of


def _user(client, admin, username, password="a sound passphrase 7"):
    return client.post(
        "/api/v1/users",
        headers=admin.headers,
        json={"username": username, "password": password, "role": "county_coordinator", "org_unit": LONGCHUAN},
    )


@pytest.mark.parametrize(
    "username, password",
    [
        ("mengla.clerk", "mengla.clerk"),  # the user name itself
        ("mengla.clerk", "MENGLA.CLERK-2024"),  # containing it
        ("mengla.clerk", "1234567890"),  # common
        ("mengla.clerk", "woaini1314"),  # common, in Chinese pinyin
        ("mengla.clerk", "aaaaaaaaaaaa"),  # one character
        ("mengla.clerk", "short"),
    ],
)
def test_weak_passwords_are_refused(client, logins, username, password):
    answer = _user(client, logins["admin"], username, password)
    assert answer.status_code == 422 and "password" in answer.json["errors"], answer.json


def test_user_names_are_normalised_and_look_alikes_refused(client, logins):
    admin = logins["admin"]
    created = _user(client, admin, "  Ｍengla.Clerk ")  # full-width M, capitals, spaces
    assert created.status_code == 201, created.json
    assert created.json["username"] == "mengla.clerk"
    assert _user(client, admin, "MENGLA.CLERK").status_code == 409
    # I for l, rn for m, _ for ., a Cyrillic е
    for look_alike in ("mengIa.clerk", "rnengla.clerk", "mengla_clerk", "mеngla.clerk"):
        answer = _user(client, admin, look_alike)
        assert answer.status_code == 422 and "username" in answer.json["errors"], (look_alike, answer.json)
    for bad in ("mengla\x00clerk", "mengla\nclerk", "", "名字"):
        answer = _user(client, admin, bad)
        assert answer.status_code == 422 and "username" in answer.json["errors"], (bad, answer.json)
    # And the normalised name logs in whichever way it is typed.
    login = client.post("/api/v1/auth/token", json={"username": "Mengla.Clerk", "password": "a sound passphrase 7"})
    assert login.status_code == 200


def test_a_person_id_must_be_a_whole_number(client, session, logins):
    person = register_person(
        client, logins["coordinator"], make_id_number(LONGCHUAN, date(1960, 1, 2), 541), village_of(session, LONGCHUAN)
    ).json
    for loose in (person["id"] + 0.5, str(person["id"]), True):
        answer = client.post(
            "/api/v1/cases",
            headers=logins["coordinator"].headers,
            json={"person_id": loose, "disease_code": OESOPHAGEAL, "source": "health_check", "screened_at": iso(1)},
        )
        assert answer.status_code == 422 and "person_id" in answer.json["errors"], (loose, answer.json)


def test_discharge_not_before_admission(client, session, logins):
    case = new_case(client, session, logins, screened_days_ago=10)
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    case.fire(coordinator, "confirm", {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit,
                                       "diagnosed_at": iso(9)})
    case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"})
    assert case.fire(hospital, "admit", {"admitted_at": iso(5)}).status_code == 200
    early = case.fire(hospital, "discharge", {"discharged_at": iso(6), "outcome": "improved"})
    assert early.status_code == 422 and "discharged_at" in early.json["errors"]
    assert case.fire(hospital, "discharge", {"discharged_at": iso(4), "outcome": "improved"}).status_code == 200


def test_the_diagnosing_hospital_lies_in_the_cases_province(client, session, logins):
    from sqlalchemy import select

    from casework.models import Hospital

    elsewhere = session.scalar(select(Hospital.code).where(~Hospital.region_code.startswith("53")).limit(1))
    assert elsewhere, "the demo region has hospitals outside Yunnan"
    case = new_case(client, session, logins)
    answer = case.fire(logins["coordinator"], "confirm",
                       {"diagnosis_code": "C15.9", "diagnosed_by": elsewhere, "diagnosed_at": iso(1)})
    assert answer.status_code == 422 and "diagnosed_by" in answer.json["errors"], answer.json


@pytest.mark.parametrize("flag", ["yes", "true", "on", "1"])
def test_bill_flags_are_json_booleans(client, session, logins, flag):
    case = treated_case(client, session, logins)
    answer = post_bill(client, case, logins["hospital"], referral_compliant=flag)
    assert answer.status_code == 422 and "referral_compliant" in answer.json["errors"], answer.json
