"""Reading cases: filtered lists with keyset pagination, and the expert groups' referral queue.

Every query starts from ``scoped_cases``; pagination walks the case id downwards, so cases
created or changed while a client pages neither repeat nor vanish from later pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, any_, func, or_, select
from sqlalchemy.orm import Session, joinedload

from casework.actor import Actor
from casework.db import utcnow
from casework.errors import Forbidden, ValidationFailed
from casework.models import DUE_OPEN_INDEX, Case, ExpertGroup, Hospital, OrgUnit, case_is_open
from casework.scope import PLACE_COLUMN, scoped_cases
from workflows.case_machine import REFERRED, STATE_LABELS

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
    query, id_column = scoped_cases(actor)
    if filters.state:
        if filters.state not in STATE_LABELS:
            raise ValidationFailed.field("state", f"must be one of {', '.join(STATE_LABELS)}")
        query = query.where(Case.state == filters.state)
    if filters.region:
        unit = session.get(OrgUnit, filters.region)
        if unit is None:
            raise ValidationFailed.field("region", "no such region")
        column = PLACE_COLUMN.get(unit.kind)
        if column is not None:
            query = query.where(column == unit.code)
        else:
            raise ValidationFailed.field("region", "must be a province, city, county, township or village")
    if filters.hospital:
        query = query.where(Case.hospital_code == filters.hospital)
    if filters.disease:
        query = query.where(Case.disease_code == filters.disease)
    if filters.overdue is True:
        # Overdue cases are few: take them from the deadline index first, then sort those, rather
        # than walking every case of the scope newest first in search of a late one.
        if session.get_bind().dialect.name == "postgresql":
            # ``id = ANY(ARRAY(…))``: primary-key probes for the overdue ids, then a top-N sort. As a
            # join, the planner merged them with a backward walk of pk_cases (x5 at 1M cases).
            query = query.where(Case.id == any_(func.array(overdue_cases(now).scalar_subquery())))
        else:
            # On SQLite the case rows are read by id only (NOT INDEXED still allows the rowid):
            # without statistics it would rather walk a county's index and probe each case.
            late = overdue_cases(now).cte("overdue").prefix_with("MATERIALIZED")
            query = query.join(late, late.c.id == Case.id).with_hint(Case, "NOT INDEXED", "sqlite")
    elif filters.overdue is False:
        query = query.where(or_(Case.due_at.is_(None), Case.due_at >= now))
    return newest_first_page(session, query.options(*_with_relations()), id_column, limit, before_id)


def overdue_cases(now: datetime, *columns) -> Select:
    """Open cases past their deadline, read from the partial index ``ix_cases_due_open`` on both
    engines (the literal open-state predicate makes the index eligible; on SQLite, which has no
    statistics to prefer it, the hint names it)."""
    return (
        select(*(columns or (Case.id,)))
        .where(and_(case_is_open(), Case.due_at < now))
        .with_hint(Case, f"INDEXED BY {DUE_OPEN_INDEX}", "sqlite")
    )


def newest_first_page(session: Session, query: Select, id_column, limit: int, before_id: int | None):
    """Keyset pagination down the primary key: one row more than asked says whether a page follows.

    Rows created while a client pages have higher ids, so they never shift the pages still to come.
    """
    if before_id is not None:
        query = query.where(id_column < before_id)
    rows = session.scalars(query.order_by(id_column.desc()).limit(limit + 1)).unique().all()
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def referral_queue(
    session: Session, actor: Actor, limit: int = 50, after: tuple[datetime, int] | None = None
) -> tuple[Sequence[Case], tuple[datetime, int] | None]:
    """A page of the referrals waiting for the actor's expert group, oldest first, and the
    (entered_state_at, id) to continue after (None on the last page)."""
    if actor.role != "expert":
        raise Forbidden("the referral queue belongs to expert groups")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed.field("limit", f"must be between 1 and {MAX_LIMIT}")
    query = select(Case).where(Case.state == REFERRED, Case.referral_group_code == actor.org_unit_code)
    if after is not None:
        since, last_id = after
        query = query.where(or_(Case.entered_state_at > since, and_(Case.entered_state_at == since, Case.id > last_id)))
    query = query.options(*_with_relations()).order_by(Case.entered_state_at, Case.id).limit(limit + 1)
    rows = session.scalars(query).unique().all()
    page = rows[:limit]
    return page, ((page[-1].entered_state_at, page[-1].id) if len(rows) > limit else None)
