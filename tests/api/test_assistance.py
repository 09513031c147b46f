"""The assistance review chain end to end over HTTP, on both engines (seed 004 二(三)/二(四)).

"因患重大疾病年度住院医疗费用自负1万元以上的给予40%的二次救助，封顶3万元" and "凭出院小结、收费票据…填写申请表，
经村（居）、镇（园区、街道）审核确认，由市慈善基金会、红十字会视情予以救助": a bill that takes the year's inpatient own
payment past 10,000 raises the application; the village, then the township review it; the fund approves and pays;
the payment shows in the year position.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from api.extensions import db
from casework.db import utcnow
from casework.models import AssistanceEvent, Case, OrgUnit
from casework.services.alerts import scan
from casework.services.cases import fire, screen
from tests.api.conftest import add_login
from tests.api.helpers import iso
from tests.conftest import actor_for_unit, new_person

QIDONG = "320681"
HOSPITAL = "H320681-01"  # 启东市人民医院


def _treated_qidong_case(session):
    now = utcnow()
    coordinator = actor_for_unit(session, "county_coordinator", QIDONG)
    hospital = actor_for_unit(session, "hospital", HOSPITAL)
    person = new_person(session, QIDONG, category="subsistence")
    case = screen(session, coordinator, person_id=person.id, disease_code="lung_cancer", source="health_check",
                  screened_at=now - timedelta(days=40), now=now)
    steps = [
        (coordinator, "confirm", {"diagnosis_code": "C34.900", "diagnosed_by": HOSPITAL, "diagnosed_at": iso(38)}),
        (coordinator, "assign", {"hospital_id": HOSPITAL, "plan": "肺癌根治术"}),
        (hospital, "admit", {"admitted_at": iso(35)}),
        (hospital, "discharge", {"discharged_at": iso(20), "outcome": "improved"}),
    ]
    for version, (actor, event, data) in enumerate(steps, start=1):
        fire(session, case["id"], event, actor, data, version, now=now)
    return session.get(Case, case["id"])


def _people(session, case):
    township = session.get(OrgUnit, case.village_code).parent_code
    return {
        "coordinator": add_login(session, f"qd-coord-{case.id}", "county_coordinator", QIDONG),
        "hospital": add_login(session, f"qd-hosp-{case.id}", "hospital", HOSPITAL),
        "village": add_login(session, f"qd-village-{case.id}", "village_doctor", case.village_code),
        "township": add_login(session, f"qd-town-{case.id}", "village_doctor", township),
        "outsider": add_login(session, f"yc-coord-{case.id}", "county_coordinator", "320921"),
    }


def _step(client, who, app_id, event, etag, data=None, reason=None, key=None):
    headers = {**who.headers, "If-Match": etag}
    if key:
        headers["Idempotency-Key"] = key
    body = {"event": event, "data": data or {}, "reason": reason}
    return client.post(f"/api/v1/assistance/{app_id}/events", headers=headers, json=body)


def test_second_assistance_raised_by_the_bill_reviewed_approved_and_paid(app, client, session):
    case = _treated_qidong_case(session)
    who = _people(session, case)
    # In-policy 50,000 - insurance 35,000 = 15,000; assistance 70% = 10,500 (二(三) floor met). Own 14,500: 40% of
    # the 4,500 above 10,000 = 1,800.00 of second assistance is due.
    bill = {"discharged_at": iso(20), "admitted_at": iso(35), "referral_compliant": True, "special_treatment": False,
            "total": "60000.00", "in_policy": "50000.00", "basic_insurance": "30000.00",
            "critical_illness_insurance": "5000.00", "medical_assistance": "10500.00", "own_payment": "14500.00"}
    posted = client.post(f"/api/v1/cases/{case.id}/settlements", headers=who["hospital"].headers, json=bill)
    assert posted.status_code == 201, posted.json
    assert posted.json["year"]["second_assistance_due"] == "1800.00"

    [application] = client.get(f"/api/v1/cases/{case.id}/assistance", headers=who["coordinator"].headers).json
    assert (application["kind"], application["state"], application["automatic"]) == (
        "second_assistance", "raised", True)
    assert application["amount_requested"] == "1800.00" and application["layer"] == "medical_assistance"
    app_id = application["id"]
    # Who may act is a role of the org unit of the step: only the village's doctor sees village_approve.
    village_view = client.get(f"/api/v1/assistance/{app_id}", headers=who["village"].headers)
    assert village_view.headers["ETag"] == '"1"' and village_view.json["allowed_events"] == [
        "village_approve", "village_reject"]
    assert client.get(f"/api/v1/assistance/{app_id}", headers=who["outsider"].headers).status_code == 404

    # Ten days to review (pack data, assumed): on day 11 the village is told.
    with app.app_context():
        scan(db.session(), utcnow() + timedelta(days=11))
    alerts = client.get(f"/api/v1/alerts?case_id={case.id}", headers=who["coordinator"].headers).json["items"]
    assert [(a["rule"], a["org_unit"], a["status"]) for a in alerts] == [
        ("assistance_raised", case.village_code, "open")]

    assert _step(client, who["township"], app_id, "village_approve", '"1"', {"opinion": "属实"}).status_code == 403
    assert _step(client, who["village"], app_id, "village_approve", '"1"').status_code == 422  # no opinion
    reviewed = _step(client, who["village"], app_id, "village_approve", '"1"', {"opinion": "家庭情况属实"})
    assert reviewed.status_code == 200 and reviewed.headers["ETag"] == '"2"'
    alerts = client.get(f"/api/v1/alerts?case_id={case.id}", headers=who["coordinator"].headers).json["items"]
    assert [a["status"] for a in alerts] == ["resolved"]

    # Eight township users at version 2 at once: one wins, the others are told the version moved.
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def race(n):
        racer = app.test_client()
        barrier.wait()
        answer = _step(racer, who["township"], app_id, "town_approve", '"2"', {"opinion": f"同意 {n}"})
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(statuses) == {200: 1, 412: 7}

    # A double click on the fund's approval applies once.
    key = f"approve-{app_id}"
    data = {"fund": "civil_affairs", "amount_approved": "1800.00"}
    first = _step(client, who["coordinator"], app_id, "approve", '"3"', data, key=key)
    again = _step(client, who["coordinator"], app_id, "approve", '"3"', data, key=key)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.headers["ETag"] == '"4"'

    over = {"amount_paid": "1800.01", "paid_on": "2026-01-05"}
    too_much = _step(client, who["coordinator"], app_id, "pay", '"4"', over)
    assert too_much.status_code == 422 and "data.amount_paid" in too_much.json["errors"]
    paid = _step(client, who["coordinator"], app_id, "pay", '"4"', {**over, "amount_paid": "1800.00"})
    assert paid.status_code == 200 and paid.json["state"] == "paid" and paid.json["allowed_events"] == []

    history = client.get(f"/api/v1/assistance/{app_id}/events", headers=who["coordinator"].headers).json
    assert [(h["seq"], h["event"], h["actor"]) for h in history] == [
        (1, "raise", "system"),
        (2, "village_approve", who["village"].username),
        (3, "town_approve", who["township"].username),
        (4, "approve", who["coordinator"].username),
        (5, "pay", who["coordinator"].username),
    ]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AssistanceEvent).where(
        AssistanceEvent.application_id == app_id)) == 5

    # The payment is the assistance layer of the year position: 14,500 - 1,800 = 12,700.00 left to the family.
    [settled] = client.get(f"/api/v1/cases/{case.id}/settlements", headers=who["coordinator"].headers).json
    assert settled["year"]["assistance_paid"] == {"medical_assistance": "1800.00"}
    assert settled["year"]["own_after_assistance"] == "12700.00"


def test_the_coordinator_raises_charity_by_hand_once_a_year(client, session):
    case = _treated_qidong_case(session)
    who = _people(session, case)
    body = {"kind": "charity", "year": 2026, "note": "低保户, 自付费用已达3万元"}
    raised = client.post(f"/api/v1/cases/{case.id}/assistance", headers=who["coordinator"].headers, json=body)
    assert raised.status_code == 201 and raised.headers["ETag"] == '"1"'
    assert raised.headers["Location"] == f"/api/v1/assistance/{raised.json['id']}"
    again = client.post(f"/api/v1/cases/{case.id}/assistance", headers=who["coordinator"].headers, json=body)
    assert again.status_code == 409
    assert client.post(f"/api/v1/cases/{case.id}/assistance", headers=who["village"].headers,
                       json={**body, "year": 2025}).status_code == 403
    assert client.post(f"/api/v1/cases/{case.id}/assistance", headers=who["outsider"].headers,
                       json=body).status_code == 404
    app_id = raised.json["id"]
    refused = _step(client, who["village"], app_id, "village_reject", '"1"', {"opinion": "已获其他救助"})
    assert refused.status_code == 422 and "reason" in refused.json["errors"]
    refused = _step(client, who["village"], app_id, "village_reject", '"1"', {"opinion": "已获其他救助"},
                    reason="家庭收入超标")
    assert refused.status_code == 200 and refused.json["state"] == "refused"
    late = _step(client, who["township"], app_id, "town_approve", '"2"', {"opinion": "同意"})
    assert late.status_code == 409 and late.json["allowed_events"] == []


def test_answers_to_writes_read_like_answers_to_reads(client, session):
    case = _treated_qidong_case(session)
    who = _people(session, case)
    body = {"kind": "second_assistance", "year": 2026, "amount_requested": "1234.50"}
    raised = client.post(f"/api/v1/cases/{case.id}/assistance", headers=who["coordinator"].headers, json=body).json
    read = client.get(f"/api/v1/assistance/{raised['id']}", headers=who["coordinator"].headers).json
    assert raised == read
    assert read["amount_requested"] == "1234.50" and read["state_label"] == "待村（居）审核"


def _bill(client, who, case, own, total, in_policy, basic, critical, assistance):
    body = {"discharged_at": iso(20), "admitted_at": iso(35), "referral_compliant": True, "special_treatment": False,
            "total": total, "in_policy": in_policy, "basic_insurance": basic, "critical_illness_insurance": critical,
            "medical_assistance": assistance, "own_payment": own}
    answer = client.post(f"/api/v1/cases/{case.id}/settlements", headers=who.headers, json=body)
    assert answer.status_code == 201, answer.json
    return answer.json


def test_the_amount_of_an_automatic_application_follows_later_bills_until_the_fund_decides(client, session):
    """Seed 004 二(三) "年度住院医疗费用自负1万元以上的给予40%的二次救助，封顶3万元": the aid is on the *year's*
    inpatient own payment, so each bill of the year changes it; the application the bill raised asks for the new
    amount until the fund has decided."""
    case = _treated_qidong_case(session)
    who = _people(session, case)
    # Stay 1: own 14,500 -> 40% x (14,500 - 10,000) = 1,800.00 (as in the first test of this file).
    first = _bill(client, who["hospital"], case, "14500.00", "60000.00", "50000.00", "30000.00", "5000.00", "10500.00")
    assert first["year"]["second_assistance_due"] == "1800.00"
    [raised] = client.get(f"/api/v1/cases/{case.id}/assistance", headers=who["coordinator"].headers).json
    app_id = raised["id"]
    assert _step(client, who["village"], app_id, "village_approve", '"1"', {"opinion": "属实"}).status_code == 200

    # Stay 2: in-policy 12,000 - insurance 8,000 = 4,000, assistance 70% = 2,800; total 13,800 leaves own 3,000. The
    # year's inpatient own payment is 17,500: 40% x 7,500 = 3,000.00 due. Under review at the township: it follows.
    second = _bill(client, who["hospital"], case, "3000.00", "13800.00", "12000.00", "7000.00", "1000.00", "2800.00")
    assert second["year"]["second_assistance_due"] == "3000.00"
    followed = client.get(f"/api/v1/assistance/{app_id}", headers=who["township"].headers)
    assert followed.json["amount_requested"] == "3000.00" and followed.json["state"] == "village_reviewed"
    assert followed.headers["ETag"] == '"3"'
    history = client.get(f"/api/v1/assistance/{app_id}/events", headers=who["township"].headers).json
    assert [(h["seq"], h["event"], h["actor"], h["to_state"]) for h in history][-1] == (
        3, "revise_amount", "system", "village_reviewed")
    assert history[-1]["data"] == {"amount_requested": "3000.00", "previous": "1800.00"}
    # A township form filled in before the bill reviewed 1,800: refused as stale.
    assert _step(client, who["township"], app_id, "town_approve", '"2"', {"opinion": "同意"}).status_code == 412
    assert _step(client, who["township"], app_id, "town_approve", '"3"', {"opinion": "同意"}).status_code == 200
    approve = {"fund": "civil_affairs", "amount_approved": "3000.00"}
    assert _step(client, who["coordinator"], app_id, "approve", '"4"', approve).status_code == 200

    # Stay 3: 40,000 = 18,000 + 2,000 + 15,000 + own 5,000 -> 22,500 for the year, 40% x 12,500 = 5,000.00 due;
    # the fund decided on 3,000.00.
    third = _bill(client, who["hospital"], case, "5000.00", "40000.00", "30000.00", "18000.00", "2000.00", "15000.00")
    assert third["year"]["second_assistance_due"] == "5000.00"
    decided = client.get(f"/api/v1/assistance/{app_id}", headers=who["coordinator"].headers)
    assert (decided.json["amount_requested"], decided.json["amount_approved"], decided.headers["ETag"]) == (
        "3000.00", "3000.00", '"5"')
    events = client.get(f"/api/v1/assistance/{app_id}/events", headers=who["coordinator"].headers).json
    assert [e["event"] for e in events] == ["raise", "village_approve", "revise_amount", "town_approve", "approve"]


def test_an_application_raised_by_hand_keeps_the_coordinators_amount(client, session):
    case = _treated_qidong_case(session)
    who = _people(session, case)
    body = {"kind": "second_assistance", "year": utcnow().year, "amount_requested": "1234.50"}
    raised = client.post(f"/api/v1/cases/{case.id}/assistance", headers=who["coordinator"].headers, json=body).json
    bill = _bill(client, who["hospital"], case, "14500.00", "60000.00", "50000.00", "30000.00", "5000.00", "10500.00")
    assert bill["year"]["second_assistance_due"] == "1800.00"
    kept = client.get(f"/api/v1/assistance/{raised['id']}", headers=who["coordinator"].headers)
    assert kept.json["amount_requested"] == "1234.50" and kept.headers["ETag"] == '"1"'


def test_paid_charity_is_the_charity_layer_of_the_year_position(client, session):
    """Seed 004 二(四): "由市慈善基金会、红十字会视情予以救助": charity paid through the chain counts as the
    charity layer, beside (not inside) medical assistance."""
    case = _treated_qidong_case(session)
    who = _people(session, case)
    _bill(client, who["hospital"], case, "14500.00", "60000.00", "50000.00", "30000.00", "5000.00", "10500.00")
    body = {"kind": "charity", "year": utcnow().year, "note": "低保户"}
    raised = client.post(f"/api/v1/cases/{case.id}/assistance", headers=who["coordinator"].headers, json=body)
    app_id = raised.json["id"]
    steps = [
        ("village", "village_approve", {"opinion": "属实"}),
        ("township", "town_approve", {"opinion": "同意"}),
        ("coordinator", "approve", {"fund": "red_cross", "amount_approved": "2000.00"}),
        ("coordinator", "pay", {"amount_paid": "2000.00", "paid_on": str(utcnow().date())}),
    ]
    for version, (person, event, data) in enumerate(steps, start=1):
        assert _step(client, who[person], app_id, event, f'"{version}"', data).status_code == 200, event
    [settled] = client.get(f"/api/v1/cases/{case.id}/settlements", headers=who["coordinator"].headers).json
    # 14,500 own payment - 2,000 from the Red Cross = 12,500.00; the 1,800 of second assistance is not paid yet.
    assert settled["year"]["assistance_paid"] == {"charity": "2000.00"}
    assert settled["year"]["own_after_assistance"] == "12500.00"
