"""The whole lifecycle of docs/api.md over HTTP, and the history it leaves."""

from __future__ import annotations

from datetime import date

from casework.id_number import make_id_number
from tests.api.helpers import HttpCase, iso, register_person, screen_case
from tests.casework.helpers import OESOPHAGEAL, OESOPHAGEAL_ICD, partner_of
from tests.conftest import LONGCHUAN, village_of

_seq = iter(range(101, 999, 2))


def new_case(client, session, logins, born=date(1966, 4, 2), screened_days_ago: float = 3) -> HttpCase:
    number = make_id_number(LONGCHUAN, born, next(_seq))
    person = register_person(client, logins["coordinator"], number, village_of(session, LONGCHUAN))
    assert person.status_code == 201, person.json
    response = screen_case(client, logins["coordinator"], person.json["id"], OESOPHAGEAL, screened_days_ago)
    assert response.status_code == 201, response.json
    assert response.headers["Location"] == f"/api/v1/cases/{response.json['id']}"
    assert response.headers["ETag"] == '"1"'
    return HttpCase(client, response.json["id"])


def ok(response, state=None):
    assert response.status_code == 200, response.json
    if state:
        assert response.json["state"] == state
    return response


def test_full_lifecycle_over_http(client, session, logins):
    case = new_case(client, session, logins)
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    first = case.get(coordinator).json
    assert first["allowed_events"] == ["confirm", "exclude", "withdraw", "record_death"]
    assert first["due_at"] and first["person"]["id_number_masked"] is False

    ok(
        case.fire(
            coordinator,
            "confirm",
            {"diagnosis_code": OESOPHAGEAL_ICD, "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(2)},
        ),
        "confirmed",
    )
    ok(case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "食管癌根治术"}), "assigned")
    assert case.get(hospital).json["allowed_events"] == ["admit", "refer", "record_death"]
    ok(case.fire(hospital, "admit", {"admitted_at": iso(1)}), "in_treatment")
    ok(case.fire(hospital, "refer", {"expert_group_id": logins["city_expert"].org_unit, "summary": "疑难"}), "referred")

    queue = client.get("/api/v1/queues/referrals", headers=logins["city_expert"].headers)
    assert [item["id"] for item in queue.json] == [case.id] and queue.json[0]["age_hours"] >= 0

    ok(
        case.fire(
            logins["city_expert"],
            "escalate",
            {"expert_group_id": logins["province_expert"].org_unit, "summary": "需省级会诊"},
        ),
        "referred",
    )
    ok(case.fire(logins["province_expert"], "consult", {"opinion": "病人不动、专家动：远程会诊意见"}), "in_treatment")
    ok(case.fire(hospital, "refer", {"expert_group_id": logins["city_expert"].org_unit, "summary": "再转"}))
    ok(case.fire(logins["city_expert"], "decline_referral", reason="县级可处置"), "in_treatment")
    ok(case.fire(hospital, "discharge", {"discharged_at": iso(0.5), "outcome": "improved"}), "treated")
    ok(case.fire(hospital, "start_follow_up", {}), "follow_up")
    ok(case.fire(coordinator, "close", reason="随访完成"), "closed")
    final = ok(case.fire(coordinator, "reopen", reason="复发"), "confirmed")
    assert final.headers["ETag"] == f'"{final.json["version"]}"' == '"13"'

    history = client.get(f"/api/v1/cases/{case.id}/events", headers=coordinator.headers).json
    assert [h["event"] for h in history] == [
        "screen",
        "confirm",
        "assign",
        "admit",
        "refer",
        "escalate",
        "consult",
        "refer",
        "decline_referral",
        "discharge",
        "start_follow_up",
        "close",
        "reopen",
    ]
    assert [h["seq"] for h in history] == list(range(1, 14))
    consult = history[6]
    assert (consult["actor"], consult["org_unit"], consult["from_state"], consult["to_state"]) == (
        "province_expert",
        logins["province_expert"].org_unit,
        "referred",
        "in_treatment",
    )
    assert history[8]["reason"] == "县级可处置"


def test_accept_referral_withdraw_and_death(client, session, logins):
    coordinator, hospital, expert = logins["coordinator"], logins["hospital"], logins["city_expert"]
    accepted = new_case(client, session, logins)
    ok(
        accepted.fire(
            coordinator,
            "confirm",
            {"diagnosis_code": "C15.1", "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(2)},
        )
    )
    ok(accepted.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"}))
    ok(accepted.fire(coordinator, "refer", {"expert_group_id": expert.org_unit, "summary": "s"}))
    partner = partner_of(session, expert.org_unit)
    response = ok(accepted.fire(expert, "accept_referral", {"hospital_id": partner, "plan": "转州医院"}), "assigned")
    assert response.json["hospital"]["code"] == partner

    withdrawn = new_case(client, session, logins)
    ok(withdrawn.fire(coordinator, "withdraw", reason="迁出本县"), "withdrawn")
    assert withdrawn.get(coordinator).json["allowed_events"] == []

    dead = new_case(client, session, logins)
    ok(dead.fire(coordinator, "record_death", {"died_at": iso(1)}), "deceased")

    excluded = new_case(client, session, logins)
    ok(excluded.fire(coordinator, "exclude", reason="复核非建档立卡户"), "excluded")
