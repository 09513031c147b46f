"""Every role against every case endpoint, in scope and out: 200, 403 or 404, never a leak."""

from __future__ import annotations

import pytest

from tests.api.helpers import HttpCase, iso
from tests.api.test_lifecycle import new_case

# Who sees a Longchuan case that a Longchuan county hospital holds and the Dehong group was sent.
SEES = {
    "admin": True,
    "coordinator": True,
    "other_coordinator": False,
    "doctor": True,  # the township's village doctor
    "other_doctor": False,
    "hospital": True,  # holds it
    "city_hospital": False,  # never held it
    "city_expert": True,  # the referral went there
    "province_expert": False,
    "city_supervisor": True,
    "province_supervisor": True,
    "other_supervisor": False,
}


@pytest.fixture
def referred_case(client, session, logins) -> HttpCase:
    case = new_case(client, session, logins)
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    case.fire(
        coordinator, "confirm", {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(2)}
    )
    case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"})
    assert (
        case.fire(hospital, "refer", {"expert_group_id": logins["city_expert"].org_unit, "summary": "s"}).status_code
        == 200
    )
    return case


def test_matrix(client, logins, referred_case):
    case_id = referred_case.id
    etag = referred_case.etag(logins["admin"])
    for name, login in logins.items():
        visible = SEES[name]
        expected = 200 if visible else 404
        assert client.get(f"/api/v1/cases/{case_id}", headers=login.headers).status_code == expected, name
        assert client.get(f"/api/v1/cases/{case_id}/events", headers=login.headers).status_code == expected, name
        listed = client.get("/api/v1/cases", headers=login.headers).json["items"]
        assert (case_id in [c["id"] for c in listed]) is visible, name
        # Only the holding expert group may answer the referral; visible others get 403, the rest 404.
        if name == "city_expert":
            continue  # tried last, below
        answer = client.post(
            f"/api/v1/cases/{case_id}/events",
            headers={**login.headers, "If-Match": etag},
            json={"event": "consult", "data": {"opinion": "意见"}},
        )
        assert answer.status_code == (403 if visible else 404), (name, answer.json)
    answer = client.post(
        f"/api/v1/cases/{case_id}/events",
        headers={**logins["city_expert"].headers, "If-Match": etag},
        json={"event": "consult", "data": {"opinion": "意见"}},
    )
    assert answer.status_code == 200


def test_person_reads_are_scoped(client, session, logins, referred_case):
    person_id = referred_case.get(logins["admin"]).json["person"]["id"]
    for name, login in logins.items():
        status = client.get(f"/api/v1/persons/{person_id}", headers=login.headers).status_code
        assert status == (200 if SEES[name] else 404), name


def test_referral_queue_is_the_callers_own(client, logins, referred_case):
    assert [c["id"] for c in client.get("/api/v1/queues/referrals", headers=logins["city_expert"].headers).json] == [
        referred_case.id
    ]
    assert client.get("/api/v1/queues/referrals", headers=logins["province_expert"].headers).json == []
    assert client.get("/api/v1/queues/referrals", headers=logins["coordinator"].headers).status_code == 403


def test_only_admins_create_users(client, logins):
    body = {
        "username": "new.clerk",
        "password": "long enough pw",
        "role": "county_coordinator",
        "org_unit": logins["coordinator"].org_unit,
    }
    assert client.post("/api/v1/users", headers=logins["coordinator"].headers, json=body).status_code == 403
    created = client.post("/api/v1/users", headers=logins["admin"].headers, json=body)
    assert created.status_code == 201 and created.json["role"] == "county_coordinator"
    assert client.post("/api/v1/users", headers=logins["admin"].headers, json=body).status_code == 409
    wrong_unit = {**body, "username": "x.clerk", "org_unit": logins["hospital"].org_unit}
    assert "org_unit" in client.post("/api/v1/users", headers=logins["admin"].headers, json=wrong_unit).json["errors"]


def test_referral_queue_pages_through_link_headers(client, session, logins):
    """Three waiting referrals, two a page: the Link header leads to the rest, oldest first, and a
    cursor that is not one the API gave out is a 422 naming it."""
    expert = logins["city_expert"]
    made = []
    for _ in range(3):
        case = new_case(client, session, logins)
        coordinator, hospital = logins["coordinator"], logins["hospital"]
        diagnosis = {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(2)}
        case.fire(coordinator, "confirm", diagnosis)
        case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"})
        assert case.fire(hospital, "refer", {"expert_group_id": expert.org_unit, "summary": "s"}).status_code == 200
        made.append(case.id)
    first = client.get("/api/v1/queues/referrals?limit=2", headers=expert.headers)
    assert first.status_code == 200 and len(first.json) == 2
    link = first.headers["Link"]
    assert link.endswith('>; rel="next"')
    second = client.get(link[1 : link.index(">")], headers=expert.headers)
    assert second.status_code == 200 and "Link" not in second.headers
    assert [c["id"] for c in first.json + second.json] == made  # referred one after the other
    whole = client.get("/api/v1/queues/referrals", headers=expert.headers).json
    assert [c["id"] for c in whole] == made
    bad = client.get("/api/v1/queues/referrals?cursor=bm9wZQ", headers=expert.headers)
    assert bad.status_code == 422 and "cursor" in bad.json["errors"]
