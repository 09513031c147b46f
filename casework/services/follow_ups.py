"""Follow-up visits (随访): each visit sets when the next one is due, and ends a missed-visit alert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import utcnow, write_transaction
from casework.errors import Conflict, Forbidden, ValidationFailed
from casework.models import CaseEvent, FollowUpVisit
from casework.services.alerts import resolve_for_case
from casework.services.cases import VISIT_EVENT, get_case, lock_case
from casework.services.cases import _append_event as append_event
from casework.services.cases import _event_row as event_row
from workflows.case_machine import FOLLOW_UP, allowed_events
from workflows.policy_pack import packs

VISITORS = ("hospital", "village_doctor", "county_coordinator")
# The next visit falls due within a year of this one: follow-up intervals are weeks or months, and
# a far date would silence the missed-visit alert for good.
MAX_NEXT_VISIT = timedelta(days=366)


def interval_days(session: Session, case_id: int, disease_default: int) -> int:
    """The interval set when follow-up started, or the disease's own."""
    data = session.scalar(
        select(CaseEvent.data)
        .where(CaseEvent.case_id == case_id, CaseEvent.event == "start_follow_up")
        .order_by(CaseEvent.seq.desc())
        .limit(1)
    )
    return (data or {}).get("interval_days") or disease_default


def record_visit(
    session: Session,
    actor: Actor,
    case_id: int,
    *,
    visited_at: datetime,
    findings: str,
    next_due_at: datetime | None = None,
    now: datetime | None = None,
) -> FollowUpVisit:
    now = now or utcnow()
    if actor.role not in VISITORS:
        raise Forbidden(f"role {actor.role} does not record follow-up visits")
    with write_transaction(session):
        case = lock_case(session, case_id, actor)
        if actor.role == "hospital" and case.hospital_code != actor.org_unit_code:
            raise Forbidden("only the hospital that treated the patient records its visits")
        if case.state != FOLLOW_UP:
            raise Conflict(f"the case is {case.state}, not in follow-up", allowed_events=allowed_events(case, actor))
        if visited_at > now:
            raise ValidationFailed.field("visited_at", "lies in the future")
        if visited_at < case.screened_at:
            raise ValidationFailed.field("visited_at", "lies before the case was screened")
        pack = packs()[case.policy_code]
        disease = pack.disease(case.disease_code)
        due = next_due_at or visited_at + timedelta(
            days=interval_days(session, case.id, disease.follow_up_interval_days)
        )
        if due <= visited_at:
            raise ValidationFailed.field("next_due_at", "must come after the visit")
        if due > visited_at + MAX_NEXT_VISIT:
            raise ValidationFailed.field("next_due_at", f"must lie within {MAX_NEXT_VISIT.days} days of the visit")
        visit = FollowUpVisit(
            case_id=case.id,
            visited_at=visited_at,
            visitor=actor.username,
            org_unit_code=actor.org_unit_code or None,
            findings=findings,
            next_due_at=due,
            recorded_at=now,
        )
        session.add(visit)
        previous_due = case.due_at
        case.due_at = due + timedelta(days=pack.deadlines_days["follow_up_grace"])
        case.updated_at = now
        # The visit moves the case's deadline: the history says so (an audit entry, no state change).
        case.version += 1
        append_event(
            session,
            event_row(
                case,
                VISIT_EVENT,
                case.state,
                actor,
                now,
                visited_at,
                {
                    "visited_at": _iso(visited_at),
                    "next_due_at": _iso(due),
                    "previous_due_at": _iso(previous_due) if previous_due else None,
                    "due_at": _iso(case.due_at),
                },
                None,
            ),
        )
        resolve_for_case(session, case.id, now)
    return visit


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def list_visits(session: Session, actor: Actor, case_id: int) -> Sequence[FollowUpVisit]:
    get_case(session, actor, case_id)
    return session.scalars(
        select(FollowUpVisit).where(FollowUpVisit.case_id == case_id).order_by(FollowUpVisit.visited_at)
    ).all()
