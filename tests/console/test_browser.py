"""One case through the whole path in a real browser, by clicking, as four different users.

Coordinator registers, screens, confirms (after a field error) and assigns; the hospital admits and
refers; the expert group consults; the hospital discharges and records the bill; the coordinator
starts follow-up (beating a stale form) and closes. A foreign coordinator gets a 404; logout ends it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from casework.id_number import make_id_number
from tests.api.conftest import add_login
from tests.casework.helpers import OESOPHAGEAL, designated_hospital, expert_group
from tests.conftest import DEHONG, LONGCHUAN
from tests.console.helpers import browser_log_in
from workflows.case_machine import CLOSED, FOLLOW_UP, IN_TREATMENT, REFERRED, TREATED

CHINA_OFFSET = timedelta(hours=8)


def local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def log_out(page, base: str) -> None:
    page.click("[data-action=logout]")
    page.wait_for_url(re.compile(r".*/login$"))
    assert page.locator("input[name=username]").count() == 1


def open_form(page, event: str):
    """The action form of ``event`` (generated from the machine), unfolded."""
    form = page.locator(f"form[data-event={event}]")
    if not form.is_visible():
        page.locator(f"details:has(form[data-event={event}]) summary").click()
    return form


def state_of(page) -> str:
    return page.locator("h1 [data-state]").first.get_attribute("data-state")


def test_one_case_through_every_step(live_server, browser, session, shots):
    base = live_server
    hospital = designated_hospital(session, "county")
    group = expert_group(session, DEHONG)
    for username, role, unit in (
        ("coordinator", "county_coordinator", LONGCHUAN),
        ("hospital", "hospital", hospital),
        ("expert", "expert", group),
        ("stranger", "county_coordinator", "320921"),
    ):
        add_login(session, username, role, unit)
    now = datetime.utcnow() + CHINA_OFFSET  # the browser's fields are China time
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()

    # --- coordinator: register, screen, confirm (after a field error), assign ----------------------
    browser_log_in(page, base, "coordinator")
    shots(page, "coordinator-home")
    page.click("nav >> text=登记筛查")
    id_number = make_id_number(LONGCHUAN, date(1966, 5, 2), 431)
    page.fill("input[name=id_number]", id_number[:10])
    assert "还差" in page.locator("[data-id-hint]").first.inner_text()  # checked as typed
    page.fill("input[name=id_number]", id_number)
    assert page.locator("[data-id-hint]").first.inner_text() == "号码格式正确"
    page.fill("input[name=name]", "岩温")
    page.fill("input[name=category_since]", "2016-01-01")
    shots(page, "register")
    page.click("form[data-form=register] button[type=submit]")
    page.wait_for_url(re.compile(r".*/screen\?person=\d+"))
    page.select_option("select[name=disease_code]", OESOPHAGEAL)
    page.fill("input[name=screened_at]", local(now - timedelta(days=4)))
    shots(page, "screen")
    page.click("form[data-form=screen] button[type=submit]")
    page.wait_for_url(re.compile(r".*/cases/\d+$"))
    case_url = page.url
    case_id = int(case_url.rsplit("/", 1)[1])
    assert state_of(page) == "screened"

    form = open_form(page, "confirm")
    form.locator("input[name=diagnosis_code]").fill("C16.9")  # gastric, not oesophageal
    form.locator("select[name=diagnosed_by]").select_option(hospital)
    form.locator("input[name=diagnosed_at]").fill(local(now - timedelta(days=3)))
    form.locator("button[type=submit]").click()
    error = page.locator("form[data-event=confirm] [data-field-error=diagnosis_code]")
    assert "与该病种不符" in error.inner_text()  # next to the field, in Chinese
    assert page.locator("form[data-event=confirm] input[name=diagnosis_code]").input_value() == "C16.9"
    shots(page, "field-error")
    form = open_form(page, "confirm")
    form.locator("input[name=diagnosis_code]").fill("C15.9")
    form.locator("button[type=submit]").click()
    page.wait_for_url(case_url)
    assert state_of(page) == "confirmed"

    form = open_form(page, "assign")
    form.locator("select[name=hospital_id]").select_option(hospital)
    form.locator("textarea[name=plan]").fill("食管癌根治术，术后放化疗")
    form.locator("button[type=submit]").click()
    assert state_of(page) == "assigned"
    shots(page, "assigned")
    log_out(page, base)

    # --- hospital: admit and refer ---------------------------------------------------------------------
    browser_log_in(page, base, "hospital")
    assert page.locator(f"[data-queue=assigned] [data-case-id='{case_id}']").count() == 1  # 待入院
    shots(page, "hospital-home")
    page.click(f"[data-queue=assigned] [data-case-id='{case_id}'] a")
    form = open_form(page, "admit")
    form.locator("input[name=admitted_at]").fill(local(now - timedelta(days=2)))
    form.locator("button[type=submit]").click()
    assert state_of(page) == IN_TREATMENT
    form = open_form(page, "refer")
    form.locator("select[name=expert_group_id]").select_option(group)
    form.locator("textarea[name=summary]").fill("术前评估：需市级专家组会诊")
    form.locator("button[type=submit]").click()
    assert state_of(page) == REFERRED
    log_out(page, base)

    # --- expert group: the referral waits in its queue; consult sends it back --------------------------
    browser_log_in(page, base, "expert")
    row = page.locator(f"tr[data-case-id='{case_id}']")
    assert row.count() == 1 and "小时" in row.inner_text()  # waiting time
    shots(page, "expert-home")
    row.locator("a").first.click()
    form = open_form(page, "consult")
    form.locator("textarea[name=opinion]").fill("同意县级医院手术方案")
    form.locator("button[type=submit]").click()
    assert state_of(page) == IN_TREATMENT
    shots(page, "consulted")
    log_out(page, base)

    # --- hospital: discharge and record the bill (the layers must add up before it submits) -------------
    browser_log_in(page, base, "hospital")
    page.goto(case_url)
    form = open_form(page, "discharge")
    form.locator("input[name=discharged_at]").fill(local(now - timedelta(hours=5)))
    form.locator("select[name=outcome]").select_option("improved")
    form.locator("button[type=submit]").click()
    assert state_of(page) == TREATED
    assert "出院转归：好转" in page.locator("table.timeline").inner_text()
    page.click("text=登记结算")
    page.fill("input[name=admitted_at]", local(now - timedelta(days=2)))
    page.fill("input[name=discharged_at]", local(now - timedelta(hours=5)))
    page.fill("input[name=total]", "30000.00")
    page.fill("input[name=in_policy]", "28500.00")
    page.fill("input[name=basic_insurance]", "25800.00")
    page.fill("input[name=critical_illness_insurance]", "1200.00")
    page.fill("input[name=medical_assistance]", "1350.00")
    page.fill("input[name=own_payment]", "1000.00")
    submit = page.locator("form[data-form=bill] button[type=submit]")
    assert submit.is_disabled() and "尚不相等" in page.locator("[data-sum-status]").inner_text()
    shots(page, "bill-not-adding-up")
    page.fill("input[name=own_payment]", "1650.00")
    assert submit.is_enabled()
    submit.click()
    page.wait_for_url(case_url)
    assert page.locator("[data-settlement-id]").count() == 1
    shots(page, "billed")
    log_out(page, base)

    # --- coordinator: a stale form loses to a newer change; then follow-up and close ---------------------
    browser_log_in(page, base, "coordinator")
    page.goto(case_url)
    other = context.new_page()  # the same case open in a second tab, at the same version
    other.goto(case_url)
    form = open_form(page, "start_follow_up")
    form.locator("button[type=submit]").click()
    assert state_of(page) == FOLLOW_UP
    form = open_form(other, "close")
    form.locator("textarea[name=reason]").fill("救治完成")
    form.locator("button[type=submit]").click()
    stale = other.locator("[data-stale]")
    assert "其他用户" in stale.inner_text() and "随访" in stale.inner_text()
    assert state_of(other) == FOLLOW_UP  # the page now shows the new state
    shots(other, "stale-form")
    other.close()
    form = open_form(page, "close")
    form.locator("textarea[name=reason]").fill("救治完成，随访结束")
    form.locator("button[type=submit]").click()
    assert state_of(page) == CLOSED
    timeline = page.locator("table.timeline tbody tr")
    assert timeline.count() == 9  # screening and eight transitions; the stale refusal left none
    shots(page, "closed")
    log_out(page, base)

    # --- outside one's area the case does not exist ------------------------------------------------------
    browser_log_in(page, base, "stranger")
    response = page.goto(case_url)
    assert response.status == 404 and "找不到" in page.inner_text("h1")
    shots(page, "foreign-404")
    log_out(page, base)
    # After logout the session is gone: the case page asks for a login.
    page.goto(case_url)
    assert "/login" in page.url
    context.close()
