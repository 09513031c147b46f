"""Which cases and persons an actor may see: one SQL predicate each, used by every query.

Outside the scope a case does not exist for the actor (404); inside it, the role decides what the
actor may do (403).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, and_, exists, false, select, true
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.models import Case, CaseHolder, OrgUnit, Person

REGION_COLUMN = {"province": Case.province_code, "city": Case.city_code, "county": Case.county_code}
# Every level of the region tree is copied onto the case at screening: a region is one equality.
PLACE_COLUMN = {**REGION_COLUMN, "township": Case.township_code, "village": Case.village_code}
HOLDER_ROLES = ("hospital", "expert")


def case_scope(actor: Actor) -> ColumnElement[bool]:
    """A WHERE clause on ``Case`` that admits exactly the cases the actor may see."""
    code = actor.org_unit_code
    if actor.role == "admin":
        return true()
    if actor.role == "supervisor" and actor.org_kind in REGION_COLUMN:
        return REGION_COLUMN[actor.org_kind] == code
    if actor.role == "county_coordinator" and actor.org_kind == "county":
        return Case.county_code == code
    if actor.role == "village_doctor" and actor.org_kind in ("village", "township"):
        return PLACE_COLUMN[actor.org_kind] == code
    if holds_cases(actor):
        # Holders keep seeing a case they once held: the history is theirs too.
        return exists().where(CaseHolder.case_id == Case.id, CaseHolder.org_unit_code == code)
    return false()


def holds_cases(actor: Actor) -> bool:
    """Whether the actor sees cases by having held them (hospitals, expert groups)."""
    return actor.role in HOLDER_ROLES and actor.org_kind in ("hospital", "expert_group")


def scoped_cases(actor: Actor) -> tuple[Select[tuple[Case]], ColumnElement[int]]:
    """The cases the actor sees, and the id column to page them by (newest first).

    A holder's cases are found through ``case_holders`` (org unit, case id): walking that index
    backwards gives the holder's newest cases first, instead of probing every case for a holder.
    """
    if holds_cases(actor):
        held = CaseHolder.case_id == Case.id
        query = select(Case).join(CaseHolder, and_(held, CaseHolder.org_unit_code == actor.org_unit_code))
        return query, CaseHolder.case_id
    return select(Case).where(case_scope(actor)), Case.id


def person_scope(actor: Actor) -> ColumnElement[bool]:
    """A WHERE clause on ``Person``: residents of the actor's region, or patients of its cases."""
    code = actor.org_unit_code
    if actor.role == "admin":
        return true()
    if actor.role in ("supervisor", "county_coordinator", "village_doctor") and actor.org_kind in (
        "province",
        "city",
        "county",
        "township",
        "village",
    ):
        return Person.village_code.in_(org_subtree(code))
    if actor.role in ("hospital", "expert"):
        held = select(Case.person_id).join(CaseHolder, CaseHolder.case_id == Case.id)
        return Person.id.in_(held.where(CaseHolder.org_unit_code == code))
    return false()


def org_subtree(code: str) -> Select[tuple[str]]:
    """The region and every org unit below it, by walking the tree in SQL."""
    # Anonymous: one query may hold two subtrees (the scope and a region filter), each its own CTE.
    tree = select(OrgUnit.code).where(OrgUnit.code == code).cte(recursive=True)
    tree = tree.union_all(select(OrgUnit.code).where(OrgUnit.parent_code == tree.c.code))
    return select(tree.c.code)


def in_subtree(session: Session, code: str, root: str) -> bool:
    """Whether org unit ``code`` is ``root`` or lies below it."""
    return bool(session.scalar(select(exists().where(OrgUnit.code == code, OrgUnit.code.in_(org_subtree(root))))))
