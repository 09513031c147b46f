"""The assistance review chain in the console, without a browser: queues per role, forms on the case page,
CSRF, stale forms, field errors in Chinese, and applications outside one's area (seed 004 二(三)/二(四)).

"凭出院小结、收费票据…填写申请表，经村（居）、镇（园区、街道）审核确认，由市慈善基金会、红十字会视情予以救助":
each of the village, the township and the fund finds the applications waiting for its own step, and acts
on them through the same services the API uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from casework.db import utcnow
from casework.models import AssistanceApplication, AssistanceEvent, Case, OrgUnit
from casework.services.cases import fire, screen
from casework.services.settlements import record_settlement
from tests.api.conftest import add_login
from tests.conftest import actor_for_unit, new_person
from tests.console.helpers import csrf_of

QIDONG = "320681"
QIDONG_HOSPITAL = "H320681-01"  # 启东市人民医院


@dataclass
class Chain:
    case_id: int
    application_id: int
    users: dict[str, str]  # role in the chain -> username (password: tests.api.conftest.PASSWORD)


def qidong_chain(session, tag: str = "") -> Chain:
    """A treated Qidong lung-cancer case whose bill (own payment 14,500 in the year) raised second assistance
    of 40% x (14,500 - 10,000) = 1,800.00, and a login for each step of its review."""
    now = utcnow()
    coordinator = actor_for_unit(session, "county_coordinator", QIDONG)
    hospital = actor_for_unit(session, "hospital", QIDONG_HOSPITAL)
    person = new_person(session, QIDONG, category="subsistence", name="沈桂英")
    case = screen(session, coordinator, person_id=person.id, disease_code="lung_cancer", source="health_check",
                  screened_at=now - timedelta(days=40), now=now)  # fmt: skip
    steps = [
        (coordinator, "confirm", {"diagnosis_code": "C34.900", "diagnosed_by": QIDONG_HOSPITAL,
                                  "diagnosed_at": (now - timedelta(days=38)).isoformat()}),
        (coordinator, "assign", {"hospital_id": QIDONG_HOSPITAL, "plan": "肺癌根治术"}),
        (hospital, "admit", {"admitted_at": (now - timedelta(days=35)).isoformat()}),
        (hospital, "discharge", {"discharged_at": (now - timedelta(days=20)).isoformat(), "outcome": "improved"}),
    ]  # fmt: skip
    for version, (actor, event, data) in enumerate(steps, start=1):
        fire(session, case["id"], event, actor, data, version, now=now)
    record_settlement(
        session, hospital, case["id"], kind="inpatient", admitted_at=now - timedelta(days=35),
        discharged_at=now - timedelta(days=20), total=Decimal("60000.00"), in_policy=Decimal("50000.00"),
        basic_insurance=Decimal("30000.00"), critical_illness_insurance=Decimal("5000.00"),
        medical_assistance=Decimal("10500.00"), own_payment=Decimal("14500.00"), referral_compliant=True,
        special_treatment=False, now=now,
    )  # fmt: skip
    row = session.get(Case, case["id"])
    application_id = session.scalar(select(AssistanceApplication.id).where(AssistanceApplication.case_id == row.id))
    township = session.get(OrgUnit, row.village_code).parent_code
    people = {
        "village": ("village_doctor", row.village_code),
        "township": ("village_doctor", township),
        "fund": ("county_coordinator", QIDONG),
        "outsider": ("village_doctor", "320921102201"),  # 响水县小尖村: another county
    }
    users = {}
    for name, (role, unit) in people.items():
        username = f"{name}{tag}-{row.id}"
        add_login(session, username, role, unit)
        users[name] = username
    session.rollback()  # end the read: SQLite cannot write from an old snapshot
    return Chain(row.id, application_id, users)


def client_for(app, username: str):
    from tests.api.conftest import PASSWORD

    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    assert client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD}).status_code == 302
    return client


def post_step(client, chain: Chain, event: str, version: int, **fields):
    page = client.get(f"/cases/{chain.case_id}")
    data = {"csrf": csrf_of(page.text), "version": str(version), **fields}
    return client.post(f"/assistance/{chain.application_id}/events/{event}", data=data)


def history_count(session, application_id: int) -> int:
    session.rollback()
    return session.scalar(
        select(func.count()).select_from(AssistanceEvent).where(AssistanceEvent.application_id == application_id)
    )


def test_each_step_is_in_the_queue_of_whoever_takes_it(app, session):
    chain = qidong_chain(session)
    village, township, fund = (client_for(app, chain.users[k]) for k in ("village", "township", "fund"))
    marker = f'data-application-id="{chain.application_id}"'

    def queued(client) -> bool:
        home, queue = client.get("/"), client.get("/assistance")
        assert home.status_code == queue.status_code == 200
        assert (marker in home.text) == (marker in queue.text)
        return marker in queue.text

    assert (queued(village), queued(township), queued(fund)) == (True, False, False)
    assert "救助审核" in village.get("/").text and "1800.00" in village.get("/assistance").text
    answer = post_step(village, chain, "village_approve", 1, opinion="经入户核实，家庭困难属实")
    assert answer.status_code == 302 and answer.headers["Location"].endswith(
        f"/cases/{chain.case_id}#assistance-{chain.application_id}")
    assert (queued(village), queued(township), queued(fund)) == (False, True, False)
    assert post_step(township, chain, "town_approve", 2, opinion="同意").status_code == 302
    assert (queued(village), queued(township), queued(fund)) == (False, False, True)
    approve = post_step(fund, chain, "approve", 3, fund="civil_affairs", amount_approved="1800.00")
    assert approve.status_code == 302
    assert queued(fund)  # approved: the payment is the fund's next step
    page = fund.get(f"/cases/{chain.case_id}").text
    # The payment form starts from the approved amount and today's date.
    assert re.search(r'name="amount_paid" value="1800.00"', page)
    over = post_step(fund, chain, "pay", 4, amount_paid="1800.01", paid_on=str(utcnow().date()))
    assert over.status_code == 422 and "不能超过批准金额 1800.00 元" in over.text
    assert post_step(fund, chain, "pay", 4, amount_paid="1800.00", paid_on=str(utcnow().date())).status_code == 302
    assert not queued(fund)
    page = fund.get(f"/cases/{chain.case_id}").text
    assert 'data-assistance-state="paid"' in page and "发放 1800.00 元" in page
    assert history_count(session, chain.application_id) == 5


def test_forms_refuse_a_forged_token_a_stale_version_and_an_empty_opinion(app, session):
    chain = qidong_chain(session)
    village = client_for(app, chain.users["village"])
    forged = village.post(f"/assistance/{chain.application_id}/events/village_approve",
                          data={"csrf": "forged", "version": "1", "opinion": "属实"})  # fmt: skip
    assert forged.status_code == 400 and "表单已过期" in forged.text
    empty = post_step(village, chain, "village_approve", 1, opinion="")
    assert empty.status_code == 422
    assert re.search(r'data-field-error="opinion">必填', empty.text)
    stale = post_step(village, chain, "village_approve", 0, opinion="属实")
    assert stale.status_code == 409 and "其他用户已经处理了此救助申请" in stale.text and "待村（居）审核" in stale.text
    assert history_count(session, chain.application_id) == 1  # only the raise: nothing was half-written
    reject = post_step(village, chain, "village_reject", 1, opinion="家庭收入超标")
    assert reject.status_code == 422 and re.search(r'data-field-error="reason">请填写理由', reject.text)


def test_outside_the_area_an_application_does_not_exist(app, session):
    chain = qidong_chain(session)
    outsider = client_for(app, chain.users["outsider"])
    answer = post_step_blind(outsider, chain, "village_approve", 1, opinion="属实")
    assert answer.status_code == 404 and "找不到页面" in answer.text
    assert outsider.get(f"/cases/{chain.case_id}").status_code == 404
    assert f'data-application-id="{chain.application_id}"' not in outsider.get("/assistance").text
    # A township reviewer of the right county may not take the village's step: 403, in Chinese.
    township = client_for(app, chain.users["township"])
    assert post_step(township, chain, "village_approve", 1, opinion="属实").status_code == 403
    assert history_count(session, chain.application_id) == 1


def post_step_blind(client, chain: Chain, event: str, version: int, **fields):
    """A post from someone who cannot open the case page: the token comes from their own home page."""
    data = {"csrf": csrf_of(client.get("/").text), "version": str(version), **fields}
    return client.post(f"/assistance/{chain.application_id}/events/{event}", data=data)


def test_the_coordinator_raises_charity_by_hand_and_a_second_raise_is_refused(app, session):
    chain = qidong_chain(session)
    fund = client_for(app, chain.users["fund"])
    page = fund.get(f"/cases/{chain.case_id}").text
    # Qidong's pack has both rules (二(三) second assistance, 二(四) charity): both kinds are offered.
    assert re.search(r'<option value="second_assistance"\s*>二次救助</option>', page)
    token, year = csrf_of(page), utcnow().year
    note = "低保户，自付费用已达3万元"
    raised = fund.post(f"/cases/{chain.case_id}/assistance",
                       data={"csrf": token, "kind": "charity", "year": str(year), "note": note})  # fmt: skip
    assert raised.status_code == 302
    again = fund.post(f"/cases/{chain.case_id}/assistance",
                      data={"csrf": token, "kind": "charity", "year": str(year)})  # fmt: skip
    assert again.status_code == 409 and f"此人 {year} 年度已有此类救助申请" in again.text
    bad = fund.post(f"/cases/{chain.case_id}/assistance",
                    data={"csrf": token, "kind": "charity", "year": "1999", "amount_requested": "-5"})  # fmt: skip
    assert bad.status_code == 422 and 'data-field-error="year"' in bad.text
    session.rollback()
    kinds = session.scalars(select(AssistanceApplication.kind).where(AssistanceApplication.case_id == chain.case_id))
    assert sorted(kinds) == ["charity", "second_assistance"]
    # The village doctor reviews but does not raise: no raise form on the case page.
    village = client_for(app, chain.users["village"])
    assert 'data-assistance-event="raise"' not in village.get(f"/cases/{chain.case_id}").text
