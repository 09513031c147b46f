"""Reads the console needs besides the case list: work queues per role, names, and form choices.

Every query is scoped like the rest (``case_scope``/``person_scope``); queues are counted and paged
in SQL, so a home page costs a few statements whatever the number of cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session, joinedload

from casework.actor import Actor
from casework.db import utcnow
from casework.id_number import InvalidIdNumber, parse_id_number
from casework.models import Case, ExpertGroup, Hospital, HospitalDesignation, OrgUnit, Person
from casework.references import region_chain
from casework.scope import case_scope, org_subtree, person_scope
from casework.services.cases import get_case
from casework.services.persons import get_person
from workflows.case_machine import OPEN_STATES
from workflows.policy_pack import PolicyPack, pack_for

COUNT_CAP = 500  # a pile counts up to here ("500+"): its cost must not grow with the county


@dataclass
class QueuePage:
    state: str
    count: int  # up to COUNT_CAP + 1: more than COUNT_CAP reads as "COUNT_CAP+"
    overdue: int
    cases: Sequence[Case]

    @property
    def capped(self) -> bool:
        return self.count > COUNT_CAP


def work_queues(
    session: Session,
    actor: Actor,
    states: Sequence[str],
    *,
    hospital: str | None = None,
    limit: int = 8,
    now: datetime | None = None,
) -> list[QueuePage]:
    """Piles of work, one per state (held by ``hospital`` when given): how many (capped), how many
    overdue, and the most urgent cases, overdue first by deadline.

    Every figure is a bounded index range scan on ``ix_cases_county_state_due`` or
    ``ix_cases_hospital_state_due`` (migration 0010): the counts stop at COUNT_CAP + 1 rows, the
    overdue ones read only overdue entries, a page reads ``limit`` entries. One statement for the
    counts of every pile, then one per non-empty pile; nothing grows with the county."""
    now = now or utcnow()
    where = [case_scope(actor)]
    if hospital:
        where.append(Case.hospital_code == hospital)

    def capped_count(*conditions):
        # Ordered like the index, so that no planner estimate turns the capped count into a scan
        # of the table that stops at the cap only by luck.
        rows = select(Case.id).where(*where, *conditions).order_by(Case.due_at).limit(COUNT_CAP + 1).subquery()
        return select(func.count()).select_from(rows).scalar_subquery()

    figures = []
    for state in states:
        figures.append(capped_count(Case.state == state))
        late = (Case.due_at < now,) if state in OPEN_STATES else (false(),)
        figures.append(capped_count(Case.state == state, *late))
    numbers = session.execute(select(*figures)).one()
    pages = {
        state: session.scalars(
            select(Case)
            .where(*where, Case.state == state)
            .options(joinedload(Case.person), joinedload(Case.hospital).joinedload(Hospital.org_unit))
            # Deadline order puts the overdue first; cases with no deadline go last.
            .order_by(Case.due_at.asc().nulls_last(), Case.id)
            .limit(limit)
        )
        .unique()
        .all()
        for i, state in enumerate(states)
        if numbers[2 * i]
    }
    return [
        QueuePage(state, int(numbers[2 * i]), int(numbers[2 * i + 1]), pages.get(state, []))
        for i, state in enumerate(states)
    ]


def org_unit_names(session: Session, codes: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({c for c in codes if c})
    if not wanted:
        return {}
    return dict(session.execute(select(OrgUnit.code, OrgUnit.name).where(OrgUnit.code.in_(wanted))).all())


def event_choices(session: Session, actor: Actor, case_id: int) -> dict[str, list[tuple[str, str]]]:
    """The hospitals and expert groups an event's form may offer for this case (the guards still
    decide): designated hospitals, the hospitals of its province, the groups covering it."""
    found = get_case(session, actor, case_id)
    designated = (
        select(Hospital.code, OrgUnit.name)
        .join(OrgUnit, OrgUnit.code == Hospital.code)
        .join(HospitalDesignation, HospitalDesignation.hospital_code == Hospital.code)
        .where(HospitalDesignation.policy_code == found.policy_code)
        .where(HospitalDesignation.disease_code == found.disease_code)
        .order_by(Hospital.code)
    )
    in_province = (
        select(Hospital.code, OrgUnit.name)
        .join(OrgUnit, OrgUnit.code == Hospital.code)
        .where(Hospital.region_code.in_(org_subtree(found.province_code)), Hospital.level != "village_clinic")
        .order_by(Hospital.code)
    )
    groups = (
        select(ExpertGroup.code, OrgUnit.name)
        .join(OrgUnit, OrgUnit.code == ExpertGroup.code)
        .where(
            or_(
                (ExpertGroup.level == "municipal") & (ExpertGroup.region_code == found.city_code),
                (ExpertGroup.level == "provincial") & (ExpertGroup.region_code == found.province_code),
            )
        )
        .order_by(ExpertGroup.level, ExpertGroup.code)
    )
    return {
        "hospital_id": [tuple(r) for r in session.execute(designated)],
        "diagnosed_by": [tuple(r) for r in session.execute(in_province)],
        "expert_group_id": [tuple(r) for r in session.execute(groups)],
    }


def villages_in_area(session: Session, actor: Actor) -> list[tuple[str, str]]:
    """Villages a registrar may register residents in, with their township for the label."""
    township = OrgUnit.__table__.alias("township")
    query = (
        select(OrgUnit.code, township.c.name + OrgUnit.name)
        .join(township, township.c.code == OrgUnit.parent_code)
        .where(OrgUnit.kind == "village")
        .order_by(OrgUnit.code)
    )
    if actor.role != "admin":
        query = query.where(OrgUnit.code.in_(org_subtree(actor.org_unit_code)))
    return [tuple(r) for r in session.execute(query)]


def policy_for_person(session: Session, actor: Actor, person_id: int, day: date) -> PolicyPack | None:
    """The policy in force on ``day`` where the person lives: its catalogue is what may be screened."""
    person = get_person(session, actor, person_id)
    regions = {unit.kind: unit.code for unit in region_chain(session, person.village_code)}
    return pack_for([regions.get(k, "") for k in ("county", "city", "province")], day)


def find_person(session: Session, actor: Actor, id_number: str) -> Person | None:
    """A registered person by ID number, within the actor's scope (None outside it, or malformed)."""
    try:
        number = parse_id_number(id_number).number
    except InvalidIdNumber:
        return None
    return session.scalar(select(Person).where(Person.id_number == number, person_scope(actor)))
