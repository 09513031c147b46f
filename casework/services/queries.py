"""Reading cases: filtered lists with keyset pagination, and the expert groups' referral queue.

Every query starts from ``case_scope``; pagination walks the primary key downwards, so cases
created or changed while a client pages neither repeat nor vanish from later pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, joinedload

from casework.actor import Actor
from casework.db import utcnow
from casework.errors import Forbidden, ValidationFailed
from casework.models import Case, ExpertGroup, Hospital, OrgUnit
from casework.scope import REGION_COLUMN, case_scope, org_subtree
from workflows.case_machine import OPEN_STATES, REFERRED, STATE_LABELS

MAX_LIMIT = 500


@dataclass(frozen=True)
class CaseFilters:
    state: str | None = None
    region: str | None = None
    hospital: str | None = None
    disease: str | None = None
    overdue: bool | None = None


def _with_relations():
    return (
        joinedload(Case.person),
        joinedload(Case.hospital).joinedload(Hospital.org_unit),
        joinedload(Case.referral_group).joinedload(ExpertGroup.org_unit),
    )


def list_cases(
    session: Session,
    actor: Actor,
    filters: CaseFilters,
    limit: int = 50,
    before_id: int | None = None,
    now: datetime | None = None,
) -> tuple[Sequence[Case], int | None]:
    """A page of cases, newest first, and the id to continue below (None on the last page)."""
    now = now or utcnow()
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed.field("limit", f"must be between 1 and {MAX_LIMIT}")
    query = select(Case).where(case_scope(actor))
    if filters.state:
        if filters.state not in STATE_LABELS:
            raise ValidationFailed.field("state", f"must be one of {', '.join(STATE_LABELS)}")
        query = query.where(Case.state == filters.state)
    if filters.region:
        unit = session.get(OrgUnit, filters.region)
        if unit is None:
            raise ValidationFailed.field("region", "no such region")
        column = REGION_COLUMN.get(unit.kind)
        if column is not None:
            query = query.where(column == unit.code)
        elif unit.kind in ("township", "village"):
            query = query.where(Case.village_code.in_(org_subtree(unit.code)))
        else:
            raise ValidationFailed.field("region", "must be a province, city, county, township or village")
    if filters.hospital:
        query = query.where(Case.hospital_code == filters.hospital)
    if filters.disease:
        query = query.where(Case.disease_code == filters.disease)
    if filters.overdue is True:
        query = query.where(Case.state.in_(OPEN_STATES), Case.due_at < now)
    elif filters.overdue is False:
        query = query.where((Case.due_at.is_(None)) | (Case.due_at >= now))
    return newest_first_page(session, query.options(*_with_relations()), Case.id, limit, before_id)


def newest_first_page(session: Session, query: Select, id_column, limit: int, before_id: int | None):
    """Keyset pagination down the primary key: one row more than asked says whether a page follows.

    Rows created while a client pages have higher ids, so they never shift the pages still to come.
    """
    if before_id is not None:
        query = query.where(id_column < before_id)
    rows = session.scalars(query.order_by(id_column.desc()).limit(limit + 1)).unique().all()
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def referral_queue(session: Session, actor: Actor) -> Sequence[Case]:
    """Referrals waiting for the actor's expert group, oldest first."""
    if actor.role != "expert":
        raise Forbidden("the referral queue belongs to expert groups")
    query = (
        select(Case)
        .where(Case.state == REFERRED, Case.referral_group_code == actor.org_unit_code)
        .options(*_with_relations())
        .order_by(Case.entered_state_at, Case.id)
    )
    return session.scalars(query).unique().all()
