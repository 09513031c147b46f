"""Overdue alerts with a frozen clock, on both engines: every rule, escalation, auto-resolution."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from casework.models import Alert, AlertEscalation, Case
from casework.services.alerts import acknowledge, scan
from casework.services.follow_ups import record_visit
from tests.casework.helpers import PACK, Walker
from tests.conftest import DEHONG, LONGCHUAN, YUNNAN, actor_for_unit, at

T0 = at(2018, 3, 1, 8)


@pytest.fixture
def walk(session) -> Walker:
    return Walker(session, T0)


def alerts(session, case_id=None):
    session.rollback()
    query = select(Alert).order_by(Alert.id)
    if case_id is not None:
        query = query.where(Alert.case_id == case_id)
    return session.scalars(query).all()


def test_screened_case_alerts_the_county_after_15_days(session, walk):
    case = walk.new_case(screened_days_ago=0)
    assert scan(session, T0 + timedelta(days=15)).raised == 0  # due, not yet past due
    report = scan(session, T0 + timedelta(days=15, minutes=1))
    assert report.raised == 1
    [alert] = alerts(session, case.id)
    assert (alert.rule, alert.org_unit_code, alert.level, alert.status) == ("not_confirmed", LONGCHUAN, 0, "open")
    assert alert.due_at == T0 + timedelta(days=15)


def test_each_rule_names_its_org_unit(session, walk):
    """Walk one case through the county's steps, letting it sit past each deadline."""
    case = walk.new_case(screened_days_ago=40)
    scan(session, T0)
    expected = [("not_confirmed", LONGCHUAN)]
    assert [(a.rule, a.org_unit_code) for a in alerts(session, case.id)] == expected

    walk.confirm(case)  # diagnosed 10 days before T0: the 7-day limit has passed
    assert all(a.status == "resolved" for a in alerts(session, case.id))  # same transaction
    scan(session, T0)
    walk.assign(case)
    scan(session, T0 + timedelta(days=31))
    hospital = walk.county_hospital
    rules = [(a.rule, a.org_unit_code, a.status) for a in alerts(session, case.id)]
    assert rules == [
        ("not_confirmed", LONGCHUAN, "resolved"),
        ("not_assigned", LONGCHUAN, "resolved"),
        ("not_admitted", hospital, "open"),
    ]


@pytest.mark.parametrize(
    ("state_path", "rule", "limit_days", "target"),
    [
        (["confirm", "assign", "admit"], "stay_exceeded", None, "hospital"),
        (["confirm", "assign", "admit", "discharge"], "settlement_missing", 14, "hospital"),
        (["confirm", "assign", "refer"], "referral_waiting", 3, "group"),
        (["confirm", "assign", "admit", "discharge", "start_follow_up"], "follow_up_missed", None, "hospital"),
    ],
)
def test_later_rules(session, walk, state_path, rule, limit_days, target):
    case = walk.new_case()
    for step in state_path:
        if step == "start_follow_up":
            walk.fire(case, "start_follow_up", {"interval_days": 30}, walk.hospital_actor(case))
        else:
            getattr(walk, step)(case)
    due = case.due_at
    if limit_days is not None:
        assert due == case.entered_state_at + timedelta(days=limit_days)
    if rule == "stay_exceeded":
        assert due == case.entered_state_at + timedelta(days=PACK.disease(case.disease_code).expected_stay_days)
    if rule == "follow_up_missed":
        assert due == case.entered_state_at + timedelta(days=30 + 7)
    assert scan(session, due - timedelta(seconds=1)).raised == 0
    assert scan(session, due + timedelta(seconds=1)).raised == 1
    [alert] = [a for a in alerts(session, case.id) if a.status == "open"]
    expected = walk.city_group if target == "group" else walk.county_hospital
    assert (alert.rule, alert.org_unit_code) == (rule, expected)


def test_scanning_again_raises_nothing_new(session, walk):
    for _ in range(3):
        walk.new_case(screened_days_ago=20)
    assert scan(session, T0).raised == 3
    assert scan(session, T0).raised == 0
    assert scan(session, T0 + timedelta(hours=1)).raised == 0
    assert len(alerts(session)) == 3


def test_unacknowledged_alert_climbs_to_the_top_and_stops(session, walk):
    case = walk.new_case()
    walk.admit(walk.assign(walk.confirm(case)))
    t = case.due_at + timedelta(minutes=1)
    scan(session, t)
    path = [walk.county_hospital]
    for days in (3, 6, 9, 12):
        scan(session, t + timedelta(days=days, minutes=days))
        path.append(alerts(session, case.id)[-1].org_unit_code)
    assert path == [walk.county_hospital, LONGCHUAN, DEHONG, YUNNAN, YUNNAN]
    [alert] = alerts(session, case.id)
    assert alert.level == 3
    climbs = session.scalars(
        select(AlertEscalation).where(AlertEscalation.alert_id == alert.id).order_by(AlertEscalation.level)
    ).all()
    assert [(c.level, c.from_org_unit, c.to_org_unit) for c in climbs] == [
        (1, walk.county_hospital, LONGCHUAN),
        (2, LONGCHUAN, DEHONG),
        (3, DEHONG, YUNNAN),
    ]


def test_not_before_the_limit_and_not_once_acknowledged(session, walk):
    case = walk.new_case(screened_days_ago=20)
    scan(session, T0)
    scan(session, T0 + timedelta(days=2, hours=23))
    [alert] = alerts(session, case.id)
    assert alert.level == 0
    coordinator = actor_for_unit(session, "county_coordinator", LONGCHUAN)
    acknowledge(session, coordinator, alert.id, now=T0 + timedelta(days=2, hours=23, minutes=30))
    scan(session, T0 + timedelta(days=10))
    [alert] = alerts(session, case.id)
    assert (alert.status, alert.level, alert.acknowledged_by) == ("acknowledged", 0, coordinator.username)
    # Acknowledged is not resolved: the transition that ends the step resolves it.
    walk.fire(case, "exclude", reason="复核排除")
    assert alerts(session, case.id)[0].status == "resolved"


def test_only_the_alerted_org_unit_acknowledges(session, walk):
    from casework.errors import Forbidden, NotFound

    case = walk.new_case(screened_days_ago=20)
    scan(session, T0)
    [alert] = alerts(session, case.id)
    with pytest.raises(Forbidden):
        acknowledge(session, actor_for_unit(session, "supervisor", DEHONG), alert.id)
    with pytest.raises(NotFound):
        acknowledge(session, actor_for_unit(session, "county_coordinator", "320921"), alert.id)


def test_follow_up_visit_moves_the_deadline_and_ends_the_missed_visit_alert(session, walk):
    case = walk.new_case()
    walk.discharge(walk.admit(walk.assign(walk.confirm(case))))
    walk.fire(case, "start_follow_up", {"interval_days": 30}, walk.hospital_actor(case))
    later = case.due_at + timedelta(days=1)
    scan(session, later)
    assert [a.status for a in alerts(session, case.id) if a.rule == "follow_up_missed"] == ["open"]
    doctor = actor_for_unit(session, "village_doctor", case.village_code)
    visit = record_visit(
        session, doctor, case.id, visited_at=later - timedelta(hours=2), findings="一般情况良好", now=later
    )
    assert visit.next_due_at == later - timedelta(hours=2) + timedelta(days=30)
    assert [a.status for a in alerts(session, case.id) if a.rule == "follow_up_missed"] == ["resolved"]
    assert session.get(Case, case.id).due_at == visit.next_due_at + timedelta(days=7)
    assert scan(session, later).raised == 0


def test_a_scan_is_a_bounded_number_of_statements(session, engine, walk):
    """The statement count does not grow with the open cases (count statements, never time them)."""

    def statements_for_scan(now) -> int:
        count = 0

        def counter(*_args):
            nonlocal count
            count += 1

        event.listen(engine, "before_cursor_execute", counter)
        try:
            scan(session, now)
        finally:
            event.remove(engine, "before_cursor_execute", counter)
        return count

    for _ in range(3):
        walk.new_case(screened_days_ago=20)  # overdue
    walk.new_case(screened_days_ago=1)  # open, not overdue
    few = statements_for_scan(T0)
    for _ in range(40):
        walk.new_case(screened_days_ago=1)
    many = statements_for_scan(T0 + timedelta(hours=1))
    assert few == many <= 8
