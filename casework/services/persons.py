"""Registering the persons cases are about."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import flush_or_conflict, write_transaction
from casework.errors import Conflict, Forbidden, NotFound, ValidationFailed
from casework.id_number import InvalidIdNumber, parse_id_number
from casework.models import OrgUnit, Person
from casework.scope import in_subtree, person_scope
from workflows.policy_pack import CATEGORIES

REGISTRARS = ("admin", "county_coordinator", "village_doctor")
DUPLICATE_ELSEWHERE = (
    "this ID number is registered outside your area; the county coordinator of the person's"
    " registered residence can move the person to your area"
)


def register_person(
    session: Session,
    actor: Actor,
    *,
    id_number: str,
    name: str,
    village_code: str,
    category: str,
    category_since: date,
    within: Callable[[Session, Person], None] | None = None,
) -> Person:
    """Register a resident; the ID number is checked, and birth date and sex come from it.
    ``within(session, person)`` runs inside the transaction, before it commits."""
    if actor.role not in REGISTRARS:
        raise Forbidden(f"role {actor.role} may not register persons")
    try:
        resident = parse_id_number(id_number)
    except InvalidIdNumber as exc:
        raise ValidationFailed.field("id_number", str(exc)) from None
    if category not in CATEGORIES:
        raise ValidationFailed.field("category", f"must be one of {', '.join(CATEGORIES)}")
    if category_since > date.today():
        raise ValidationFailed.field("category_since", "lies in the future")
    if not name.strip():
        raise ValidationFailed.field("name", "must not be empty")

    with write_transaction(session):
        village = session.get(OrgUnit, village_code)
        if village is None or village.kind != "village":
            raise ValidationFailed.field("village_code", "no such village")
        if actor.role != "admin" and not in_subtree(session, village_code, actor.org_unit_code):
            raise ValidationFailed.field("village_code", "outside your area")
        existing = session.scalar(select(Person.id).where(Person.id_number == resident.number))
        if existing is not None:
            visible = session.scalar(select(Person.id).where(Person.id == existing, person_scope(actor)))
            if visible is None:
                # The caller holds the person's ID card, so the number's being taken is no news; where
                # the record is, whose it is and what it says stay with the area that holds it.
                raise Conflict(DUPLICATE_ELSEWHERE)
            raise Conflict("a person with this ID number is already registered", location=f"/api/v1/persons/{existing}")
        person = Person(
            id_number=resident.number,
            name=name.strip(),
            sex=resident.sex,
            birth_date=resident.birth_date,
            village_code=village_code,
            category=category,
            category_since=category_since,
        )
        session.add(person)
        # A concurrent registration of the same ID may have won the race.
        flush_or_conflict(session, DUPLICATE_ELSEWHERE)
        if within is not None:
            within(session, person)
    return person


def get_person(session: Session, actor: Actor, person_id: int) -> Person:
    person = session.scalar(select(Person).where(Person.id == person_id, person_scope(actor)))
    if person is None:
        raise NotFound(f"no person {person_id}")
    return person
