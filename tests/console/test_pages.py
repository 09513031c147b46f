"""The console without a browser: sessions, CSRF, scoping, throttling, and the API left as it was."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from console.messages import in_chinese
from tests.api.conftest import PASSWORD, add_login
from tests.casework.helpers import OESOPHAGEAL, designated_hospital
from tests.conftest import LONGCHUAN, at, new_person
from tests.console.helpers import csrf_of


def log_in(client, username: str, password: str = PASSWORD):
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"csrf": token, "username": username, "password": password})


def screened_case(client, disease: str = OESOPHAGEAL) -> int:
    page = client.get("/screen?person=" + str(client.person_id))
    answer = client.post(
        "/screen",
        data={
            "csrf": csrf_of(page.text),
            "person": client.person_id,
            "disease_code": disease,
            "source": "health_check",
            "screened_at": "2026-01-05T09:30",
        },
    )
    assert answer.status_code == 302, answer.text
    return int(answer.headers["Location"].rsplit("/", 1)[1])


@pytest.fixture
def coordinator(app, session):
    add_login(session, "coordinator", "county_coordinator", LONGCHUAN)
    client = app.test_client()
    assert log_in(client, "coordinator").status_code == 302
    client.person_id = new_person(session).id
    session.rollback()  # end the read that fetched the id: SQLite cannot write from an old snapshot
    return client


def test_pages_need_a_login_and_keep_the_session_cookie_safe(app, session):
    client = app.test_client()
    answer = client.get("/cases")
    assert answer.status_code == 302 and "/login?next=/cases" in answer.headers["Location"]
    add_login(session, "coordinator", "county_coordinator", LONGCHUAN)
    cookie = log_in(client, "coordinator").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/").status_code == 200


def test_the_console_cookie_is_neither_a_credential_nor_refreshed_by_the_api(coordinator):
    answer = coordinator.get("/api/v1/cases")
    assert answer.status_code == 401 and answer.mimetype == "application/problem+json"
    assert "Set-Cookie" not in answer.headers  # the API never opens the console's session
    assert "Set-Cookie" in coordinator.get("/cases").headers  # a console page refreshes it


def test_a_form_without_the_session_csrf_token_changes_nothing(coordinator):
    case_id = screened_case(coordinator)
    answer = coordinator.post(
        f"/cases/{case_id}/events/exclude", data={"csrf": "forged", "version": "1", "reason": "不符合"}
    )
    assert answer.status_code == 400 and "表单已过期" in answer.text
    page = coordinator.get(f"/cases/{case_id}")
    assert 'data-state="screened"' in page.text


def test_missing_required_fields_are_named_in_chinese_next_to_the_field(coordinator, session):
    case_id = screened_case(coordinator)
    page = coordinator.get(f"/cases/{case_id}")
    answer = coordinator.post(
        f"/cases/{case_id}/events/confirm",
        data={"csrf": csrf_of(page.text), "version": "1", "diagnosed_by": designated_hospital(session, "county")},
    )
    assert answer.status_code == 422
    assert re.search(r'data-field-error="diagnosis_code">必填<', answer.text)
    assert re.search(r'data-field-error="diagnosed_at">必填<', answer.text)


def test_a_confirm_form_asks_only_for_the_evidence_its_disease_needs(coordinator):
    page = coordinator.get(f"/cases/{screened_case(coordinator)}").text  # oesophageal cancer: the code suffices
    assert 'name="diagnosis_code"' in page
    assert 'name="lesions"' not in page and 'name="drug_resistance.method"' not in page


def test_a_drug_resistant_tb_confirm_carries_the_dst_result_typed_in_the_form(coordinator, session):
    """Seed 001 names 耐多药肺结核: resistance is a laboratory fact the confirm form asks for."""
    case_id = screened_case(coordinator, "mdr_tb")
    page = coordinator.get(f"/cases/{case_id}")
    assert 'name="drug_resistance.method"' in page.text and 'name="drug_resistance.resistant_to"' in page.text
    confirm = {
        "version": "1",
        "diagnosis_code": "A15.0",
        "diagnosed_by": designated_hospital(session, "county"),
        "diagnosed_at": "2026-01-06T10:00",
    }
    refused = coordinator.post(f"/cases/{case_id}/events/confirm", data={"csrf": csrf_of(page.text), **confirm})
    assert refused.status_code == 422 and 'data-state="screened"' in refused.text
    dst = {"drug_resistance.method": "xpert_mtb_rif", "drug_resistance.resistant_to": "rifampicin，isoniazid"}
    done = coordinator.post(f"/cases/{case_id}/events/confirm", data={"csrf": csrf_of(refused.text), **confirm, **dst})
    assert done.status_code == 302, done.text
    assert 'data-state="confirmed"' in coordinator.get(f"/cases/{case_id}").text


def test_a_foreign_case_is_an_html_404_and_the_api_keeps_problem_json(app, coordinator, session):
    case_id = screened_case(coordinator)
    stranger = add_login(session, "stranger", "county_coordinator", "320921")
    client = app.test_client()
    log_in(client, "stranger")
    page = client.get(f"/cases/{case_id}")
    assert page.status_code == 404 and page.mimetype == "text/html" and "找不到" in page.text
    absent = client.get("/cases/999999")
    assert absent.status_code == 404 and absent.text == page.text  # absent and foreign look the same
    api = client.get(f"/api/v1/cases/{case_id}", headers=stranger.headers)
    assert api.status_code == 404 and api.mimetype == "application/problem+json"
    assert client.get("/no-such-page").mimetype == "application/problem+json"


def test_the_full_id_number_shown_to_the_own_coordinator_is_logged(coordinator, session):
    from sqlalchemy import func, select

    from casework.models import AccessLog

    case_id = screened_case(coordinator)
    before = session.scalar(select(func.count()).select_from(AccessLog))
    session.rollback()
    page = coordinator.get(f"/cases/{case_id}")
    assert "********" not in page.text
    assert session.scalar(select(func.count()).select_from(AccessLog)) == before + 1


def test_failed_logins_are_throttled_like_the_api(app, session):
    add_login(session, "coordinator", "county_coordinator", LONGCHUAN)
    client = app.test_client()
    for _ in range(5):
        assert log_in(client, "coordinator", "wrong").status_code == 401
    answer = log_in(client, "coordinator")  # even the right password, for now
    assert answer.status_code == 429 and "登录失败次数过多" in answer.text


def test_the_next_page_after_login_stays_on_this_site(app, session):
    add_login(session, "coordinator", "county_coordinator", LONGCHUAN)
    client = app.test_client()
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login", data={"csrf": token, "username": "coordinator", "password": PASSWORD, "next": "//evil.example/"}
    )
    assert answer.headers["Location"] == "/"


def test_every_page_renders_for_every_role(app, session, coordinator):
    screened_case(coordinator)
    roles = {
        "hospital": ("hospital", designated_hospital(session, "county")),
        "supervisor": ("supervisor", "530000"),
        "doctor": ("village_doctor", "533124101"),
    }
    for name, (role, unit) in roles.items():
        add_login(session, name, role, unit)
    for name in ("coordinator", *roles):
        client = app.test_client()
        log_in(client, name)
        for path in ("/", "/cases", "/alerts", "/diagram"):
            assert client.get(path).status_code == 200, (name, path)
        assert client.get("/stats").status_code == (200 if name in ("coordinator", "supervisor") else 403)


def test_messages_table():
    assert in_chinese("Missing data for required field.") == "必填"
    assert in_chinese("C16.9 is not oesophageal (ICD-10 C15)") == "诊断编码 C16.9 与该病种不符（应为 ICD-10 C15）"
    assert in_chinese("must be the municipal expert group of the case's region") == "须为本地区的市级专家组"
    assert in_chinese("something new") == "输入有误：something new"


def test_screened_at_is_read_as_china_time(coordinator, session):
    from casework.models import Case

    case_id = screened_case(coordinator)
    assert session.get(Case, case_id).screened_at == at(2026, 1, 5, 1, 30)  # 09:30 in Beijing


def test_a_registered_person_is_found_by_id_number_without_it_entering_a_url(coordinator, session):
    from casework.models import Person

    number = session.get(Person, coordinator.person_id).id_number
    session.rollback()
    token = csrf_of(coordinator.get("/screen").text)
    found = coordinator.post("/screen", data={"csrf": token, "id_number": number})
    assert found.status_code == 302 and found.headers["Location"] == f"/screen?person={coordinator.person_id}"
    assert number not in found.headers["Location"]
    missing = coordinator.post("/screen", data={"csrf": token, "id_number": "110101199003077777"})
    assert missing.status_code == 422 and "请先登记" in missing.text


def test_the_case_history_names_a_discharge_outcome_in_chinese(coordinator, session):
    from tests.casework.helpers import Walker
    from tests.conftest import utc_now

    walker = Walker(session, utc_now())
    case = walker.new_case(screened_days_ago=20)
    for step in (walker.confirm, walker.assign, walker.admit, walker.discharge):
        case = step(case)
    case_id = case.id
    session.rollback()

    page = coordinator.get(f"/cases/{case_id}")
    history = re.search(r'<table class="timeline">.*?</table>', page.text, re.S).group(0)
    assert "出院转归：好转" in history and "improved" not in history
    assert "诊断编码（ICD-10）：C15.9" in history


def test_alerts_are_acknowledged_and_visits_recorded_from_the_console(app, coordinator, session):
    from sqlalchemy import select

    from casework.models import Alert, Case, FollowUpVisit
    from casework.services.alerts import scan
    from tests.casework.helpers import Walker
    from tests.conftest import utc_now

    walker = Walker(session, utc_now())
    late = walker.new_case(screened_days_ago=40)  # past the screening deadline
    late_id = late.id
    following = walker.new_case(screened_days_ago=20)
    for step in (walker.confirm, walker.assign, walker.admit, walker.discharge):
        following = step(following)
    following = walker.fire(following, "start_follow_up")
    following_id = following.id
    scan(session)
    session.rollback()

    page = coordinator.get("/alerts")
    assert f'data-case-id="{late_id}"' in page.text and "筛查后逾期未确诊" in page.text
    alert_id = session.scalar(select(Alert.id).where(Alert.case_id == late_id))
    session.rollback()
    acknowledged = coordinator.post(
        f"/alerts/{alert_id}/acknowledge", data={"csrf": csrf_of(page.text), "next": "/alerts"}
    )
    assert acknowledged.status_code == 302 and acknowledged.headers["Location"] == "/alerts"
    assert session.get(Alert, alert_id).status == "acknowledged"
    session.rollback()

    form = coordinator.get(f"/cases/{following_id}/visit")
    an_hour_ago_in_china = (utc_now() + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M")
    visited = coordinator.post(
        f"/cases/{following_id}/visit",
        data={"csrf": csrf_of(form.text), "visited_at": an_hour_ago_in_china, "findings": "恢复良好"},
    )
    assert visited.status_code == 302
    visit = session.scalar(select(FollowUpVisit).where(FollowUpVisit.case_id == following_id))
    assert visit.findings == "恢复良好" and session.get(Case, following_id).due_at > visit.visited_at


def test_the_policy_page_marks_every_assumed_figure_with_its_reason(coordinator):
    """Every figure a pack assumes rather than quotes (deadlines, rural income, readings of ambiguous wording) is
    shown as assumed, with its source or reason; a figure the seed gives is not (seed 001 第4/5条 "达不到90%的")."""
    page = coordinator.get("/policies/longchuan-2017")
    assert page.status_code == 200
    rows = dict(re.findall(r'<tr data-path="([^"]+)">(.*?)</tr>', page.text, re.S))
    assert 'data-assumed="1"' in rows["deadlines_days.screened"] and "per-step time limit" in rows[
        "deadlines_days.screened"]
    assert "统计公报" in rows["money.rural_income_previous_year.2018"]
    assert "basic insurance" in rows["money.out_of_county_inpatient_ratio_min"]  # the reading of 第2条's 70%
    assert "0.70" in rows["money.out_of_county_inpatient_ratio_min"]
    assert "data-assumed" not in rows["money.inpatient_actual_ratio_min"]  # 第4/5条 quotes the 90%
    assert "data-assumed" not in rows["money.chain.critical_illness.bands.1.ratio"]  # 第3条 "5万元以上…赔付80%"
    case_id = screened_case(coordinator)
    assert 'href="/policies/longchuan-2017"' in coordinator.get(f"/cases/{case_id}").text
    assert coordinator.get("/policies/no-such-pack").status_code == 404
