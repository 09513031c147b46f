"""Overdue alerts: raised, escalated and resolved in set-based SQL, exactly once per condition.

A scan is a handful of statements whatever the number of cases: one INSERT … SELECT over the
partial index of open cases by deadline (so its cost follows the overdue cases, not all open ones,
on both engines: see ``queries.overdue_cases``), one UPDATE resolving alerts whose step has ended
(driven by the unresolved alerts), and an INSERT plus an UPDATE for escalation.
The unique key (case, rule, due_at) makes a second raise a no-op on both engines; on PostgreSQL an
advisory lock also keeps a second scheduler idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, Select, and_, case, exists, false, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from casework.actor import Actor
from casework.db import UTCDateTime, insert_ignoring_conflicts, utcnow, write_transaction
from casework.errors import Forbidden, NotFound, ValidationFailed
from casework.models import ALERT_STATUSES, Alert, AlertEscalation, Case, OrgUnit, Settlement
from casework.scope import case_scope
from casework.services.queries import newest_first_page, overdue_cases
from workflows.case_machine import OVERDUE_RULES
from workflows.policy_pack import PolicyPack, packs

log = logging.getLogger("casework.alerts")

# Rules about a step end with the step; a money alert (below_floor) stays until someone acts on it.
STEP_RULES = tuple(OVERDUE_RULES.values())
BELOW_FLOOR = "below_floor"
UNRESOLVED = tuple(status for status in ALERT_STATUSES if status != "resolved")
BELOW_FLOOR_WINDOW = timedelta(days=30)  # settlements this recent are checked on each scan

ADVISORY_LOCK_KEY = 7_318_004_211  # any constant: one overdue scan at a time per database
_TARGET_COLUMN = {"county": Case.county_code, "hospital": Case.hospital_code, "expert_group": Case.referral_group_code}


@dataclass(frozen=True)
class ScanReport:
    raised: int
    resolved: int
    escalated: int
    seconds: float
    skipped: bool = False


def _at(now: datetime):
    return literal(now, type_=UTCDateTime())


def _target_org(available: dict[str, PolicyPack]):
    """Per policy and state, the case column naming who is told (the pack's ``overdue_alerts``)."""
    whens = [
        (and_(Case.policy_code == pack.code, Case.state == state), _TARGET_COLUMN[target])
        for pack in available.values()
        for state, target in pack.overdue_alerts.items()
    ]
    return case(*whens, else_=None)


def _insert_alerts(session: Session, rows: Select) -> int:
    """Insert new alerts from ``rows``; the unique (case, rule, due_at) makes a repeat a no-op."""
    statement = (
        insert_ignoring_conflicts(session, Alert)
        .from_select(
            ["case_id", "rule", "due_at", "raised_at", "level", "org_unit_code", "status", "escalated_at"], rows
        )
        .on_conflict_do_nothing()
        # SQLAlchemy only reads an INSERT's rowcount when asked to.
        .execution_options(preserve_rowcount=True)
    )
    return session.connection().execute(statement).rowcount


def raise_overdue(session: Session, now: datetime, available: dict[str, PolicyPack] | None = None) -> int:
    available = packs() if available is None else available
    target = _target_org(available)
    rule = case(OVERDUE_RULES, value=Case.state, else_=None)
    overdue = overdue_cases(
        now, Case.id, rule, Case.due_at, _at(now), literal(0), target, literal("open"), _at(now)
    ).where(target.is_not(None))
    return _insert_alerts(session, overdue)


def resolve_ended(session: Session, now: datetime) -> int:
    """Resolve alerts whose case has moved on (a new step, a new deadline): the safety net behind
    the transitions, which resolve their own case's alerts as they happen.

    It starts from the unresolved alerts (``ix_alerts_status_escalate``) and looks each one's case up
    by primary key: a scalar subquery, which PostgreSQL never turns into a join over all cases (it
    planned the NOT EXISTS form as a merge anti-join over ``pk_cases`` before ``alerts`` had
    statistics)."""
    still_overdue = (
        select(literal(1))
        .where(
            Case.id == Alert.case_id,
            Case.due_at == Alert.due_at,
            case(OVERDUE_RULES, value=Case.state, else_=None) == Alert.rule,
        )
        .scalar_subquery()
    )
    statement = (
        update(Alert)
        .where(Alert.status.in_(UNRESOLVED), Alert.rule.in_(STEP_RULES), still_overdue.is_(None))
        .values(status="resolved", resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    return session.connection().execute(statement).rowcount


def open_step_alerts(case_id: Any) -> Exists:
    """Whether the case has alerts about its current step still open: a column for the query that
    locks the case, so a transition runs the resolving UPDATE only when there is something to end."""
    return exists().where(Alert.case_id == case_id, Alert.status != "resolved", _is_step_rule(Alert.rule))


def _is_step_rule(rule: Any) -> Any:
    """``rule IN (…)`` with one parameter per rule. ``in_(STEP_RULES)`` binds the list as one
    expanding parameter, and SQLAlchemy then renders the statement's SQL again at every execution:
    a quarter of the CPU of the lock query that carries this test on every transition."""
    return rule.in_([literal(name) for name in STEP_RULES])


def resolve_for_case(session: Session, case_id: int, now: datetime) -> None:
    """The case left its overdue step: its alerts end in the same transaction."""
    alerts = Alert.__table__
    session.connection().execute(
        update(alerts)
        .where(alerts.c.case_id == case_id, alerts.c.status != "resolved", _is_step_rule(alerts.c.rule))
        .values(status="resolved", resolved_at=now)
    )


def raise_below_floor(session: Session, now: datetime) -> int:
    """Tell the county coordinator about each recent settlement below its policy's floors, once."""
    recent = (
        select(
            Settlement.case_id,
            literal(BELOW_FLOOR),
            Settlement.recorded_at,
            _at(now),
            literal(0),
            Case.county_code,
            literal("open"),
            _at(now),
        )
        .join(Case, Case.id == Settlement.case_id)
        .where(
            Settlement.below_floor, Settlement.recorded_at >= now - BELOW_FLOOR_WINDOW, Settlement.recorded_at <= now
        )
    )
    return _insert_alerts(session, recent)


def escalate_unacknowledged(session: Session, now: datetime, available: dict[str, PolicyPack] | None = None) -> int:
    """Open alerts nobody acknowledged within the pack's limit climb one org unit: a hospital to the
    case's county bureau, a region or an expert group to the region above; the top stays put."""
    available = packs() if available is None else available
    unit = aliased(OrgUnit)
    next_org = case((unit.kind == "hospital", Case.county_code), else_=unit.parent_code)
    waited_long_enough = or_(
        false(),
        *(
            and_(
                Case.policy_code == pack.code,
                Alert.escalated_at <= now - timedelta(days=pack.deadlines_days["alert_escalation"]),
            )
            for pack in available.values()
        ),
    )
    due = (
        select(Alert.id, Alert.level + 1, Alert.org_unit_code, next_org, _at(now))
        .join(Case, Case.id == Alert.case_id)
        .join(unit, unit.code == Alert.org_unit_code)
        .where(Alert.status == "open", next_org.is_not(None), next_org != Alert.org_unit_code, waited_long_enough)
    )
    connection = session.connection()
    climbed = connection.execute(
        insert(AlertEscalation)
        .from_select(["alert_id", "level", "from_org_unit", "to_org_unit", "at"], due)
        .execution_options(preserve_rowcount=True)
    ).rowcount
    if climbed:
        record = select(AlertEscalation.to_org_unit).where(
            AlertEscalation.alert_id == Alert.id, AlertEscalation.level == Alert.level + 1
        )
        connection.execute(
            update(Alert)
            .where(exists(record))
            .values(org_unit_code=record.scalar_subquery(), level=Alert.level + 1, escalated_at=now)
        )
    return climbed


def scan(session: Session, now: datetime | None = None) -> ScanReport:
    """One overdue scan in one transaction: raise, resolve, escalate."""
    now = now or utcnow()
    started = time.perf_counter()
    with write_transaction(session):
        if session.get_bind().dialect.name == "postgresql":
            locked = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            if not locked.scalar():
                log.info("overdue scan skipped: another scheduler holds the lock")
                return ScanReport(0, 0, 0, time.perf_counter() - started, skipped=True)
        resolved = resolve_ended(session, now)
        from casework.services.assistance import raise_overdue_assistance  # it builds on this module's peers

        raised = raise_overdue(session, now) + raise_below_floor(session, now) + raise_overdue_assistance(session, now)
        escalated = escalate_unacknowledged(session, now)
    report = ScanReport(raised, resolved, escalated, time.perf_counter() - started)
    log.info(
        "overdue scan: %d raised, %d resolved, %d escalated in %.3f s",
        report.raised,
        report.resolved,
        report.escalated,
        report.seconds,
    )
    return report


# --- reading and acknowledging ------------------------------------------------------------------


def list_alerts(
    session: Session,
    actor: Actor,
    status: str | None = None,
    case_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> tuple[Sequence[Alert], int | None]:
    """Alerts on cases the actor sees, newest first, with keyset pagination like the case list."""
    if status is not None and status not in ALERT_STATUSES:
        raise ValidationFailed.field("status", f"must be one of {', '.join(ALERT_STATUSES)}")
    query = select(Alert).join(Case, Case.id == Alert.case_id).where(case_scope(actor))
    if status:
        query = query.where(Alert.status == status)
    if case_id is not None:
        query = query.where(Alert.case_id == case_id)
    return newest_first_page(session, query, Alert.id, limit, before_id)


def acknowledge(session: Session, actor: Actor, alert_id: int, now: datetime | None = None) -> Alert:
    """The org unit the alert is with says it has seen it; that stops the climb."""
    now = now or utcnow()
    with write_transaction(session):
        alert = session.scalar(
            select(Alert).join(Case, Case.id == Alert.case_id).where(Alert.id == alert_id, case_scope(actor))
        )
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if actor.role == "supervisor":
            raise Forbidden("supervisors read alerts; the org unit that must act acknowledges them")
        if actor.role != "admin" and alert.org_unit_code != actor.org_unit_code:
            raise Forbidden("only the org unit the alert is with may acknowledge it")
        if alert.status == "open":
            alert.status = "acknowledged"
            alert.acknowledged_at = now
            alert.acknowledged_by = actor.username
    return alert
