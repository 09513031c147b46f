"""Eligibility as a fact at a date: a dated category history per person, and the flag an open
case gets when its person stops being eligible under the case's own policy.

A case keeps the category it was screened with (``Case.category``); a later exit from the
registry does not drop it, it flags it (``Case.eligibility_lost_on``) for the coordinator.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from casework.db import insert_ignoring_conflicts, utcnow
from casework.models import Case, Person, PersonCategory
from workflows.case_machine import OPEN_STATES
from workflows.policy_pack import CATEGORY_LABELS, PolicyPack, packs

# How registries and ledgers write the categories; codes are accepted too.


def category_label(code: str) -> str:
    return CATEGORY_LABELS.get(code, code)


def eligible(pack: PolicyPack, category: str, day: date | None = None) -> bool:
    """Whether ``category`` is eligible under ``pack`` on ``day``: the one place that asks, so a
    pack's own rule (e.g. a window after exit) replaces this body without touching callers."""
    return category in pack.eligible_categories


def record_category(session: Session, person: Person, category: str, since: date, source: str) -> bool:
    """Add a dated category entry (never an overwrite). Returns False when that exact entry exists.

    The person's current category follows the newest entry; open cases whose policy no longer
    covers the person are flagged. Runs in the caller's transaction.
    """
    now = utcnow()
    if session.scalar(select(PersonCategory.id).where(PersonCategory.person_id == person.id).limit(1)) is None:
        # A person registered without a history entry: what they were registered as comes first.
        session.add(
            PersonCategory(
                person_id=person.id,
                category=person.category,
                since=person.category_since,
                source="registration",
                recorded_at=now,
            )
        )
        session.flush()
    statement = (
        insert_ignoring_conflicts(session, PersonCategory)
        .values(person_id=person.id, category=category, since=since, source=source, recorded_at=now)
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True)
    )
    added = session.execute(statement).rowcount > 0
    if added and since >= person.category_since:
        person.category = category
        person.category_since = since
        session.flush()
        flag_open_cases(session, [person.id])
    return added


def category_on(session: Session, person_id: int, day: date) -> str | None:
    """The person's category on ``day`` (the newest entry from that day or before), or None."""
    entry = category_entry_on(session, person_id, day)
    return entry[0] if entry else None


def category_entry_on(session: Session, person_id: int, day: date) -> tuple[str, date] | None:
    """The category the person had on ``day`` and since when they had it, or None."""
    entry = session.execute(
        select(PersonCategory.category, PersonCategory.since)
        .where(PersonCategory.person_id == person_id, PersonCategory.since <= day)
        .order_by(PersonCategory.since.desc(), PersonCategory.id.desc())
        .limit(1)
    ).first()
    if entry is not None:
        return entry[0], entry[1]
    # A person registered before the history existed, with no entry yet: the registration holds.
    person = session.get(Person, person_id)
    has_history = session.scalar(select(PersonCategory.id).where(PersonCategory.person_id == person_id).limit(1))
    if person is not None and has_history is None and person.category_since <= day:
        return person.category, person.category_since
    return None


def flag_open_cases(session: Session, person_ids: Iterable[int]) -> int:
    """Flag (or unflag, on re-entry) the open cases of these persons by their current category.

    Reads only the open cases of the given persons: a roster import passes the persons whose
    category changed, a handful of the file. Returns how many cases changed.
    """
    ids = list(person_ids)
    changed = 0
    available = packs()
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(Case.id, Case.policy_code, Case.eligibility_lost_on, Person.category, Person.category_since)
            .join(Person, Person.id == Case.person_id)
            .where(Case.person_id.in_(ids[start : start + 1000]), Case.state.in_(OPEN_STATES))
        ).all()
        for case_id, policy, lost_on, category, since in rows:
            pack = available.get(policy)
            still = pack is not None and eligible(pack, category, since)
            wanted = None if still else (lost_on or since)
            if wanted != lost_on:
                session.execute(update(Case).where(Case.id == case_id).values(eligibility_lost_on=wanted))
                changed += 1
    return changed
