"""The living demo: every state reached through the services, real alerts, a bill below its floor."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from casework.actor import Actor
from casework.db import utcnow
from casework.models import Alert, Case, CaseEvent, OrgUnit, Settlement, User
from casework.services.cases import replay
from casework.services.demo_cases import CASES_PER_REGION, MARKER, load_demo_cases
from casework.services.queries import referral_queue
from tests.casework.helpers import designated_hospital, expert_group
from tests.conftest import DEHONG, LONGCHUAN
from workflows.case_machine import OPEN_STATES, TERMINAL_STATES


def _demo_users(session) -> None:
    """The demo logins the cases are made by (written directly: hashing passwords is slow)."""
    for username, role, unit in (
        ("longchuan.coordinator", "county_coordinator", LONGCHUAN),
        ("longchuan.hospital", "hospital", designated_hospital(session, "county")),
        ("longchuan.expert", "expert", expert_group(session, DEHONG)),
    ):
        session.add(User(username=username, password_hash="-", role=role, org_unit_code=unit))
    session.commit()


def test_demo_cases_cover_every_state_with_history_and_alerts(session):
    _demo_users(session)
    now = utcnow()
    assert load_demo_cases(session, now, only=("longchuan-2017",)) == CASES_PER_REGION
    assert load_demo_cases(session, now, only=("longchuan-2017",)) == 0  # safe to run twice

    states = dict(session.execute(select(Case.state, func.count()).group_by(Case.state)).all())
    assert set(states) == set(OPEN_STATES + TERMINAL_STATES)
    assert sum(states.values()) == CASES_PER_REGION
    assert session.scalar(select(func.count()).where(Case.note.startswith(MARKER))) == CASES_PER_REGION

    # Each history replays through the machine to the stored position.
    for case in session.scalars(select(Case)):
        assert replay(session, case.id).state == case.state

    assert session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.event == "reopen")) == 1
    rules = set(session.scalars(select(Alert.rule).where(Alert.status == "open")))
    assert {"not_confirmed", "not_assigned", "referral_waiting", "settlement_missing", "below_floor"} <= rules
    assert session.scalar(select(func.count()).where(Settlement.below_floor)) >= 1
    assert session.scalar(select(func.count()).where(~Settlement.below_floor)) >= 1

    group = expert_group(session, DEHONG)
    expert = Actor(None, "longchuan.expert", "expert", group, session.get(OrgUnit, group).kind)
    queue, _ = referral_queue(session, expert)
    assert len(queue) >= 2 and any(c.due_at < now for c in queue)


def test_qidong_demo_has_an_application_waiting_at_each_reviewers_step(session):
    """Seed 004 二(三)/二(四): a visitor logging in as the village, the township or the county finds an
    application waiting for their own step of the review (村（居）审核, 镇（街道）审核, 基金审批)."""
    from casework.models import AssistanceApplication, AssistanceEvent
    from casework.services.assistance import waiting_for
    from casework.services.users import actor_for

    qidong, hospital = "320681", "H320681-01"
    township = session.scalar(
        select(OrgUnit.code).where(OrgUnit.parent_code == qidong, OrgUnit.kind == "township").order_by(OrgUnit.code)
    )
    village = session.scalar(
        select(OrgUnit.code).where(OrgUnit.parent_code == township, OrgUnit.kind == "village").order_by(OrgUnit.code)
    )
    users = {}
    for username, role, unit in (
        ("qidong.coordinator", "county_coordinator", qidong),
        ("qidong.hospital", "hospital", hospital),
        ("qidong.doctor", "village_doctor", township),
        ("qidong.village", "village_doctor", village),
    ):
        users[username] = User(username=username, password_hash="-", role=role, org_unit_code=unit)
        session.add(users[username])
    session.commit()
    now = utcnow()
    assert load_demo_cases(session, now, only=("qidong-2017",)) == CASES_PER_REGION

    waiting = {}
    for name in ("qidong.village", "qidong.doctor", "qidong.coordinator"):
        items, _more = waiting_for(session, actor_for(users[name]), now=now)
        waiting[name] = [(a["kind"], a["state"], a["automatic"]) for a in items]
    assert waiting == {
        "qidong.village": [("charity", "raised", False)],
        "qidong.doctor": [("second_assistance", "village_reviewed", True)],
        "qidong.coordinator": [("second_assistance", "town_reviewed", True)],
    }
    # Raised by the bills themselves: 40% of the year's inpatient own payment above 10,000, each with its history.
    for app in session.scalars(select(AssistanceApplication).where(AssistanceApplication.automatic)):
        assert Decimal("0") < app.amount_requested <= Decimal("30000.00")
        events = session.scalars(
            select(AssistanceEvent.event).where(AssistanceEvent.application_id == app.id).order_by(AssistanceEvent.seq)
        ).all()
        assert events[0] == "raise" and len(events) == app.version
    # Fresh: no step is overdue yet.
    assert not session.scalar(select(func.count()).select_from(Alert).where(Alert.rule.startswith("assistance_")))
