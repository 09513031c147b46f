"""Screening a case, firing events on it, reading it, and rebuilding it from its history.

Each write is one transaction: lock the case row, check the version, check scope and role, run
the state machine, append the event, bump the version, set the new deadline, and build the case
view the caller is answered with (casework/views.py) - the full ID's access-log row included, so
the change, its audit and what the caller was shown commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from marshmallow import Schema, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from casework.actor import Actor
from casework.db import flush_or_conflict, insert_ignoring_conflicts, utcnow, write_transaction
from casework.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from casework.models import Case, CaseEvent, CaseHolder, Person
from casework.privacy import log_full_read, may_see_any_full_id
from casework.references import DatabaseReferences, region_chain
from casework.scope import case_scope, person_scope
from casework.services.alerts import open_step_alerts, resolve_for_case
from casework.views import case_view
from workflows import case_machine as machine
from workflows.deadlines import due_at
from workflows.policy_pack import PolicyPack, pack_for, packs

SCREENERS = ("county_coordinator", "village_doctor", "hospital")
# Entries in a case's history that record a change beside the workflow (a follow-up visit moving
# the deadline): they keep the state, take a seq like any event, and replay steps over them.
VISIT_EVENT = "record_visit"

# What the case view shows beside the case row: loaded with it, in the same round trip.
_VIEW_RELATIONS = (joinedload(Case.person), joinedload(Case.hospital), joinedload(Case.referral_group))
_OPEN_STEP_ALERTS = open_step_alerts(Case.id)  # built once: a column of the lock query


def screen(
    session: Session,
    actor: Actor,
    *,
    person_id: int,
    disease_code: str,
    source: str,
    screened_at: datetime,
    note: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Open a case in ``screened`` for a person and a disease of the policy in force; returns the
    case view (casework/views.py ``case_view``) the screener is shown."""
    now = now or utcnow()
    if actor.role not in SCREENERS:
        raise Forbidden(f"role {actor.role} may not screen cases")
    if screened_at > now:
        raise ValidationFailed.field("screened_at", "lies in the future")

    with write_transaction(session):
        person = _screenable_person(session, actor, person_id)
        if person is None:
            # One answer for absent and out-of-area persons, given before anything about the person
            # (policy, category, open cases) is looked at: screening is no probe beyond one's area.
            raise ValidationFailed.field("person_id", "no such person in your area")
        regions = {unit.kind: unit.code for unit in region_chain(session, person.village_code)}
        pack = pack_for([regions.get(k, "") for k in ("county", "city", "province")], screened_at.date())
        if pack is None:
            raise ValidationFailed.field(
                "screened_at", f"no policy in force for county {regions.get('county')} on {screened_at.date()}"
            )
        disease = pack.disease(disease_code)
        if disease is None:
            raise ValidationFailed.field("disease_code", f"not in the catalogue of {pack.code}")
        if not pack.covers(person.category, on=screened_at.date(), category_since=person.category_since):
            raise ValidationFailed.field(
                "person_id", f"category {person.category} is not covered by {pack.code} on {screened_at.date()}"
            )
        if disease.age_max is not None and _age_on(person, screened_at) > disease.age_max:
            raise ValidationFailed.field("disease_code", f"{disease.name_zh} covers patients up to {disease.age_max}")
        case = new_case(
            person.id,
            person.village_code,
            regions,
            pack,
            disease_code,
            person.category,
            source,
            note,
            screened_at,
            now,
        )
        session.add(case)
        # One open case per person and disease: the partial unique index decides, race-free.
        flush_or_conflict(session, "this person already has an open case for this disease")
        _append_event(
            session,
            case,
            machine.SCREEN_EVENT,
            None,
            actor,
            now,
            screened_at,
            {"disease_code": disease_code, "source": source},
            note,
        )
        if actor.role == "hospital":
            _hold(session, case.id, actor.org_unit_code)
        view = _record_view(session, case, actor, now)
    return view


def new_case(
    person_id: int,
    village_code: str,
    regions: dict[str, str],
    pack: PolicyPack,
    disease_code: str,
    category: str,
    source: str,
    note: str | None,
    screened_at: datetime,
    now: datetime,
) -> Case:
    """A case row in ``screened``, its place and first deadline filled in: the one place a case
    starts, whether screened here, found in discharge records or migrated from a ledger."""
    return Case(
        person_id=person_id,
        disease_code=disease_code,
        policy_code=pack.code,
        category=category,
        state=machine.SCREENED,
        version=1,
        village_code=village_code,
        township_code=regions["township"],
        county_code=regions["county"],
        city_code=regions["city"],
        province_code=regions["province"],
        source=source,
        note=note,
        screened_at=screened_at,
        entered_state_at=screened_at,
        due_at=due_at(machine.SCREENED, screened_at, pack, disease_code),
        created_at=now,
        updated_at=now,
    )


def fire(
    session: Session,
    case_id: int,
    event: str,
    actor: Actor,
    data: dict[str, Any] | None,
    expected_version: int,
    reason: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Fire ``event`` on a case the actor last saw at ``expected_version``; returns the case view
    after the event, as the actor may see it."""
    now = now or utcnow()
    rule = machine.RULES.get(event)
    if rule is None:
        raise ValidationFailed.field("event", f"unknown event; events are {', '.join(machine.RULES)}")

    with write_transaction(session):
        case, alerted = _lock_for_event(session, case_id, actor)
        if case.version != expected_version:
            raise VersionMismatch(expected_version, case.version)
        if not machine.can_happen(event, case):
            raise Conflict(
                f"{event} cannot happen in state {case.state}",
                allowed_events=machine.allowed_events(case, actor),
            )
        if not machine.actor_may(rule, case, actor):
            raise Forbidden(f"{actor.role} ({actor.org_unit_code}) may not {event} this case")

        loaded, reason = _load_data(rule, data or {}, reason)
        pack = packs()[case.policy_code]
        ctx = machine.EventContext(case, actor, loaded, pack, DatabaseReferences(session), now)
        holders_before = (case.hospital_code, case.referral_group_code)
        try:
            from_state = machine.trigger(case, event, loaded, ctx)
        except machine.GuardFailed as exc:
            raise ValidationFailed.field(exc.field, exc.message) from None

        stored = _data_schema(event).dump(loaded)
        step_at = loaded[rule.step_time_field] if rule.step_time_field else now
        case.version += 1
        case.entered_state_at = step_at
        case.due_at = due_at(case.state, step_at, pack, case.disease_code, loaded.get("interval_days"))
        case.updated_at = now
        _append_event(session, case, event, from_state, actor, now, step_at, stored, reason)
        # Reopening beside a newer open case for the same disease trips the partial unique index.
        flush_or_conflict(session, "this person already has an open case for this disease")
        if alerted:  # the overdue step has ended: its alerts end in this transaction
            resolve_for_case(session, case.id, now)
        for holder in {case.hospital_code, case.referral_group_code} - set(holders_before):
            if holder:  # a new hospital or group took the case over: it keeps seeing it from now on
                _hold(session, case.id, holder)
        # The event moved the codes; the hospital and group loaded with the lock are the old ones.
        moved = [
            name
            for name, before in zip(("hospital", "referral_group"), holders_before, strict=True)
            if getattr(case, f"{name}_code") != before
        ]
        if moved:
            session.expire(case, moved)
        view = _record_view(session, case, actor, now)
    return view


def read_case(session: Session, actor: Actor, case_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The record view of one case. When it shows the full ID number the read is logged, in the
    same transaction as the read; actors who never see one read without writing anything."""
    now = now or utcnow()
    if not may_see_any_full_id(actor):
        return case_view(_find_case(session, actor, case_id), actor, now, full_id=True)
    with write_transaction(session):
        view = _record_view(session, _find_case(session, actor, case_id), actor, now)
    return view


def get_case(session: Session, actor: Actor, case_id: int) -> Case:
    case = session.scalar(select(Case).where(Case.id == case_id, case_scope(actor)))
    if case is None:
        raise NotFound(f"no case {case_id}")
    return case


def case_events(session: Session, actor: Actor, case_id: int) -> list[CaseEvent]:
    get_case(session, actor, case_id)
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)))


@dataclass
class Replayed:
    """The workflow fields of a case, as its history says they should be."""

    state: str
    version: int
    hospital_code: str | None = None
    referral_group_code: str | None = None
    referred_from: str | None = None
    disease_code: str = ""


def replay(session: Session, case_id: int) -> Replayed:
    """Rebuild a case's workflow fields by running its events through the machine again.

    Raises ValueError when the history is not a path the machine allows, or when a recorded
    ``to_state`` differs from where the machine goes.
    """
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq))
    rebuilt: Replayed | None = None
    for expected_seq, row in enumerate(events, start=1):
        if row.seq != expected_seq:
            raise ValueError(f"case {case_id}: history has a gap before seq {row.seq}")
        if rebuilt is None:
            if row.event != machine.SCREEN_EVENT:
                raise ValueError(f"case {case_id}: history does not start with screening")
            rebuilt = Replayed(machine.SCREENED, 1, disease_code=row.data["disease_code"])
            continue
        if row.event == VISIT_EVENT and row.from_state == row.to_state == rebuilt.state:
            rebuilt.version += 1
            continue
        if row.from_state != rebuilt.state:
            raise ValueError(
                f"case {case_id} seq {row.seq}: recorded from {row.from_state}, replay is in {rebuilt.state}"
            )
        machine.trigger(rebuilt, row.event, row.data)
        if rebuilt.state != row.to_state:
            raise ValueError(f"case {case_id} seq {row.seq}: recorded {row.to_state}, machine went to {rebuilt.state}")
        rebuilt.version += 1
    if rebuilt is None:
        raise NotFound(f"no history for case {case_id}")
    return rebuilt


# --- internals ----------------------------------------------------------------------------------


def _record_view(session: Session, case: Case, actor: Actor, now: datetime) -> dict[str, Any]:
    """The case as the actor is shown it after a write or in the record view; the view decides
    whether the full ID number shows, and if it does the read is logged in the caller's transaction."""
    view = case_view(case, actor, now, full_id=True)
    if not view["person"]["id_number_masked"]:
        log_full_read(session, actor, case.person_id, "case")
    return view


def _find_case(session: Session, actor: Actor, case_id: int) -> Case:
    case = session.scalar(select(Case).options(*_VIEW_RELATIONS).where(Case.id == case_id, case_scope(actor)))
    if case is None:
        raise NotFound(f"no case {case_id}")
    return case


def _lock_for_event(session: Session, case_id: int, actor: Actor) -> tuple[Case, bool]:
    """The case row locked as ``lock_case`` does, with everything its view shows and whether it has
    open overdue alerts (which the event then resolves), in one round trip."""
    row = session.execute(
        select(Case, _OPEN_STEP_ALERTS)
        .options(*_VIEW_RELATIONS)
        .where(Case.id == case_id, case_scope(actor))
        .with_for_update(of=Case)
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise NotFound(f"no case {case_id}")
    return row[0], bool(row[1])


def lock_case(session: Session, case_id: int, actor: Actor) -> Case:
    """The case row, locked for this transaction (SQLite: already, by BEGIN IMMEDIATE)."""
    case = session.scalar(
        select(Case)
        .where(Case.id == case_id, case_scope(actor))
        .with_for_update(of=Case)
        .execution_options(populate_existing=True)
    )
    if case is None:
        raise NotFound(f"no case {case_id}")
    return case


def _load_data(rule: machine.EventRule, data: dict[str, Any], reason: str | None) -> tuple[dict[str, Any], str | None]:
    if not isinstance(data, dict):
        raise ValidationFailed.field("data", "must be an object")
    try:
        loaded: dict[str, Any] = _data_schema(rule.name).load(data)
    except ValidationError as exc:
        raise ValidationFailed({f"data.{k}": _messages(v) for k, v in exc.messages_dict.items()}) from None
    reason = (reason or "").strip() or (loaded.pop("reason", None) or "").strip() or None
    loaded.pop("reason", None)
    if rule.needs_reason and not reason:
        raise ValidationFailed.field("reason", f"{rule.name} needs a reason")
    return loaded, reason


@cache
def _data_schema(event: str) -> Schema:
    """One instance per event's data schema, built once: marshmallow schemas keep no state between
    load and dump calls, and building one costs more than using it."""
    return machine.RULES[event].data_schema()


def _messages(value: Any) -> list[str]:
    return value if isinstance(value, list) else [str(value)]


def _append_event(
    session: Session,
    case: Case,
    event: str,
    from_state: str | None,
    actor: Actor,
    now: datetime,
    occurred_at: datetime,
    data: dict[str, Any],
    reason: str | None,
) -> None:
    session.add(
        CaseEvent(
            case_id=case.id,
            seq=case.version,
            event=event,
            from_state=from_state,
            to_state=case.state,
            actor_id=actor.user_id,
            actor_username=actor.username,
            org_unit_code=actor.org_unit_code or None,
            at=now,
            occurred_at=occurred_at,
            data=data,
            reason=reason,
        )
    )


def _hold(session: Session, case_id: int, org_unit_code: str) -> None:
    """Record that a hospital or group holds the case; holding twice is a no-op on both engines."""
    statement = insert_ignoring_conflicts(session, CaseHolder).values(case_id=case_id, org_unit_code=org_unit_code)
    session.execute(statement.on_conflict_do_nothing())


def _screenable_person(session: Session, actor: Actor, person_id: int) -> Person | None:
    """The person, if the actor may already see them: residents of its region, or for a hospital
    the patients of cases it holds (it cannot screen its way into a stranger's record)."""
    return session.scalar(select(Person).where(Person.id == person_id, person_scope(actor)))


def _age_on(person: Person, at: datetime) -> int:
    day = at.date()
    born = person.birth_date
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))
