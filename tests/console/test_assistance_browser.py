"""The assistance review chain in a real browser, by clicking, as each of its reviewers (seed 004 二(三)/二(四)).

"因患重大疾病年度住院医疗费用自负1万元以上的给予40%的二次救助，封顶3万元" and "经村（居）、镇（园区、街道）审核确认，
由市慈善基金会、红十字会视情予以救助": a bill took the year's inpatient own payment to 14,500, which raised 1,800.00 of
second assistance (40% of the 4,500 above 10,000). The coordinator raises charity by hand; the village approves
the one and refuses the other; the township approves, beating its own stale second tab; the fund approves and
pays, and the payment shows in the year position. Someone of another county gets a 404.
"""

from __future__ import annotations

import re

from casework.db import utcnow
from tests.console.helpers import browser_log_in
from tests.console.test_assistance_pages import qidong_chain


def log_out(page) -> None:
    page.click("[data-action=logout]")
    page.wait_for_url(re.compile(r".*/login$"))


def step_form(page, application: int, event: str):
    """The form of one review step of one application, unfolded."""
    form = page.locator(f"form[data-application-id='{application}'][data-assistance-event={event}]")
    if not form.is_visible():
        page.locator(
            f"details:has(form[data-application-id='{application}'][data-assistance-event={event}]) summary"
        ).click()
    return form


def submit_step(page, application: int, event: str, **texts: str) -> None:
    """Fill the step's text areas by name (opinion, reason) and send its form."""
    form = step_form(page, application, event)
    for name, text in texts.items():
        form.locator(f"textarea[name={name}]").fill(text)
    form.locator("button[type=submit]").click()


def state_of(page, application: int) -> str:
    return page.locator(f"#assistance-{application} [data-assistance-state]").first.get_attribute(
        "data-assistance-state"
    )


def test_one_application_through_the_whole_chain_and_one_refused(live_server, browser, session, shots):
    base = live_server
    chain = qidong_chain(session, tag="-b")
    second = chain.application_id
    case_url = f"{base}/cases/{chain.case_id}"
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()

    # --- the county coordinator raises charity by hand on the case -----------------------------------------
    browser_log_in(page, base, chain.users["fund"])
    page.goto(case_url)
    raise_form = step_form(page, "new", "raise")
    raise_form.locator("select[name=kind]").select_option("charity")
    raise_form.locator("textarea[name=note]").fill("低保户，本年度自付费用较高，申请慈善救助")
    shots(page, "raise-charity")
    raise_form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/cases/\d+#assistance-\d+$"))
    charity = int(page.url.rsplit("-", 1)[1])
    assert charity != second and state_of(page, charity) == "raised"
    assert "已提出慈善救助申请" in page.locator(".flash").inner_text()
    log_out(page)

    # --- the village: both wait on its home page; approve one, refuse the other (after a missing reason) ----
    browser_log_in(page, base, chain.users["village"])
    waiting = page.locator("[data-queue=assistance] tr[data-application-id]")
    assert sorted(int(x) for x in waiting.evaluate_all("rows => rows.map(r => r.dataset.applicationId)")) == sorted(
        [second, charity]
    )
    assert "1800.00" in page.locator(f"[data-queue=assistance] tr[data-application-id='{second}']").inner_text()
    shots(page, "village-home")
    page.click(f"[data-queue=assistance] tr[data-application-id='{second}'] a.button")
    page.wait_for_url(re.compile(rf".*/cases/{chain.case_id}#assistance-{second}$"))
    submit_step(page, second, "village_approve", opinion="经入户核实，患者家庭因病支出大，情况属实")
    assert state_of(page, second) == "village_reviewed"
    submit_step(page, charity, "village_reject", opinion="家庭另有稳定收入")
    error = page.locator(f"form[data-application-id='{charity}'] [data-field-error=reason]")
    assert error.inner_text() == "请填写理由"  # next to the field, in Chinese, the opinion kept
    kept = page.locator(f"form[data-application-id='{charity}'][data-assistance-event=village_reject] [name=opinion]")
    assert kept.input_value() == "家庭另有稳定收入"
    shots(page, "village-reject-needs-reason")
    submit_step(page, charity, "village_reject", reason="家庭人均收入超过低保标准，不符合慈善救助条件")
    assert state_of(page, charity) == "refused"
    assert page.locator(f"form[data-application-id='{charity}']").count() == 0  # refused: nothing left to do
    shots(page, "village-done")
    log_out(page)

    # --- the township: a second tab at the same version loses to the first ---------------------------------
    browser_log_in(page, base, chain.users["township"])
    assert page.locator(f"[data-queue=assistance] tr[data-application-id='{second}']").count() == 1
    assert page.locator(f"[data-queue=assistance] tr[data-application-id='{charity}']").count() == 0
    page.goto(case_url)
    other = context.new_page()
    other.goto(case_url)
    submit_step(page, second, "town_approve", opinion="同意村（居）审核意见，报基金审批")
    assert state_of(page, second) == "town_reviewed"
    submit_step(other, second, "town_reject", opinion="材料不全", reason="缺少收费票据")
    stale = other.locator("#assistance [data-stale]")
    assert "其他用户已经处理了此救助申请" in stale.inner_text() and "待基金审批" in stale.inner_text()
    assert state_of(other, second) == "town_reviewed"  # the page now shows the new state
    shots(other, "township-stale-form")
    other.close()
    log_out(page)

    # --- the fund: its queue, approve with the amount asked for, pay ------------------------------------------
    browser_log_in(page, base, chain.users["fund"])
    page.click("nav >> text=救助审核")
    row = page.locator(f"tr[data-application-id='{second}']")
    assert "待基金审批" in row.inner_text()
    shots(page, "fund-queue")
    row.locator("a.button").click()
    form = step_form(page, second, "approve")
    assert form.locator("input[name=amount_approved]").input_value() == "1800.00"
    form.locator("select[name=fund]").select_option("civil_affairs")
    form.locator("button[type=submit]").click()
    assert state_of(page, second) == "approved"
    form = step_form(page, second, "pay")
    assert form.locator("input[name=amount_paid]").input_value() == "1800.00"
    form.locator("input[name=paid_on]").fill(str(utcnow().date()))
    form.locator("button[type=submit]").click()
    assert state_of(page, second) == "paid"
    history = page.locator(f"#assistance-{second} tr[data-assistance-seq]")
    assert history.count() == 5  # raise, village, town, approve, pay: the stale refusal left nothing
    assert "系统" in history.nth(0).inner_text()
    # Paid as medical assistance: it appears in the year position under the bill, 14,500 - 1,800 = 12,700 left.
    year = page.locator(".year-position").first.inner_text()
    assert "经救助申请已发放医疗救助 1800.00 元" in year and "扣除后自付 12700.00 元" in year
    shots(page, "fund-paid")
    log_out(page)

    # --- another county: the case and its applications do not exist ------------------------------------------
    browser_log_in(page, base, chain.users["outsider"])
    response = page.goto(case_url)
    assert response.status == 404 and "找不到" in page.inner_text("h1")
    page.goto(base + "/assistance")
    assert page.locator("tr[data-application-id]").count() == 0
    shots(page, "outsider-queue")
    context.close()
