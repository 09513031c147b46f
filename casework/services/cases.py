"""Screening a case, firing events on it, reading it, and rebuilding it from its history.

Each write is one transaction: lock the case row, check the version, check scope and role, run
the state machine, append the event, bump the version, set the new deadline, and build the case
view the caller is answered with (casework/views.py) - the full ID's access-log row included, so
the change, its audit and what the caller was shown commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from types import SimpleNamespace
from typing import Any

from marshmallow import Schema, ValidationError
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from casework.actor import Actor
from casework.db import bound_insert, flush_or_conflict, insert_ignoring_conflicts, utcnow, write_transaction
from casework.direct_sql import DirectStatement
from casework.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from casework.models import Case, CaseEvent, CaseHolder, ExpertGroup, Hospital, OrgUnit, Person
from casework.privacy import INSERT_READ, full_read, log_full_read, may_see_any_full_id
from casework.references import UNIT_FIELDS, DatabaseReferences, region_chain
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
            _event_row(
                case,
                machine.SCREEN_EVENT,
                None,
                actor,
                now,
                screened_at,
                {"disease_code": disease_code, "source": source},
                note,
            ),
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
    after the event, as the actor may see it.

    The hot path of the API, so it runs as Core statements on the driver's cursor of the session's
    connection (casework/direct_sql.py): one locking read of everything the machine and the view
    need, one UPDATE, one INSERT of the event (and of the access-log row when the view shows the
    full ID), the three writes one statement on PostgreSQL (``_move``). The ORM's unit of work cost
    about a third of a transition's CPU and bought nothing here: the case is written back field by
    field."""
    now = now or utcnow()
    rule = machine.RULES.get(event)
    if rule is None:
        raise ValidationFailed.field("event", f"unknown event; events are {', '.join(machine.RULES)}")

    with write_transaction(session):
        connection = session.connection()
        case, alerted, known = _lock_for_event(connection, case_id, actor, data or {})
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
        ctx = machine.EventContext(case, actor, loaded, pack, DatabaseReferences(session, known), now)
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
        if case.hospital_code != holders_before[0]:
            case.hospital = _unit(connection, _HOSPITAL_VIEW, case.hospital_code)
        if case.referral_group_code != holders_before[1]:
            case.referral_group = _unit(connection, _GROUP_VIEW, case.referral_group_code)
        view = case_view(case, actor, now, full_id=True)
        read = None if view["person"]["id_number_masked"] else full_read(actor, case.person_id, "case", now)
        _move(connection, case, _event_row(case, event, from_state, actor, now, step_at, stored, reason), read)
        if alerted:  # the overdue step has ended: its alerts end in this transaction
            resolve_for_case(session, case.id, now)
        for holder in {case.hospital_code, case.referral_group_code} - set(holders_before):
            if holder:  # a new hospital or group took the case over: it keeps seeing it from now on
                _hold(session, case.id, holder)
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


# --- the locking read of ``fire``, in Core -------------------------------------------------------

_CASES = Case.__table__
_PERSONS = Person.__table__
_HOSPITALS = Hospital.__table__
_GROUPS = ExpertGroup.__table__
_HOSPITAL_UNITS = OrgUnit.__table__.alias("hospital_unit")
_GROUP_UNITS = OrgUnit.__table__.alias("group_unit")
_CASE_COLUMNS = tuple(column.key for column in _CASES.columns)
# What casework/views.py shows of the person.
_PERSON_COLUMNS = ("id", "id_number", "name", "sex", "birth_date", "village_code", "category", "category_since")
# The case fields an event may change: the machine's effects, and the step the service stamps.
_MOVED = (
    "state",
    "version",
    "hospital_code",
    "referral_group_code",
    "referred_from",
    "entered_state_at",
    "due_at",
    "updated_at",
)


def _by_code(column: Any, code: Any) -> Any:
    """One column of the hospital or expert group a case names, as a scalar subquery, looked up for
    the one locked row. As four outer joins, PostgreSQL's plan hashed every row of the reference
    tables on each lock, and planning the lock took twice the CPU (docs/performance.md)."""
    return select(column).where(column.table.c.code == code).scalar_subquery()


_LOCK_COLUMNS = (
    *_CASES.columns,
    *(_PERSONS.c[name] for name in _PERSON_COLUMNS),
    _by_code(_HOSPITAL_UNITS.c.name, _CASES.c.hospital_code),
    _by_code(_HOSPITALS.c.level, _CASES.c.hospital_code),
    _by_code(_GROUP_UNITS.c.name, _CASES.c.referral_group_code),
    _by_code(_GROUPS.c.level, _CASES.c.referral_group_code),
    open_step_alerts(_CASES.c.id),
    # The hospital and the expert group the event's data names (machine.HOSPITAL_FIELDS and
    # GROUP_FIELDS), as its guards know them (UNIT_FIELDS), NULL when there is no such unit.
    *(_by_code(_HOSPITALS.c[name], bindparam("named_hospital")) for name in UNIT_FIELDS),
    *(_by_code(_GROUPS.c[name], bindparam("named_group")) for name in UNIT_FIELDS),
)
_PERSON_AT = len(_CASE_COLUMNS)  # where the person's columns start in a row of the lock query
_UNITS_AT = _PERSON_AT + len(_PERSON_COLUMNS)
_LOCK_FROM = _CASES.join(_PERSONS, _PERSONS.c.id == _CASES.c.person_id)
_MOVE_CASE = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("case_id"))
    .values({name: bindparam(f"new_{name}") for name in _MOVED})
)
_HOSPITAL_VIEW = (
    select(_HOSPITALS.c.code, _HOSPITAL_UNITS.c.name, _HOSPITALS.c.level)
    .join(_HOSPITAL_UNITS, _HOSPITAL_UNITS.c.code == _HOSPITALS.c.code)
    .where(_HOSPITALS.c.code == bindparam("code"))
)
_GROUP_VIEW = (
    select(_GROUPS.c.code, _GROUP_UNITS.c.name, _GROUPS.c.level)
    .join(_GROUP_UNITS, _GROUP_UNITS.c.code == _GROUPS.c.code)
    .where(_GROUPS.c.code == bindparam("code"))
)


@dataclass(frozen=True, slots=True)
class _Unit:
    """A hospital or expert group as the case view shows it."""

    code: str
    name: str
    level: str


def _lock_for_event(
    connection: Any, case_id: int, actor: Actor, data: dict[str, Any]
) -> tuple[SimpleNamespace, bool, dict[tuple[str, str], Any]]:
    """The case row locked as ``lock_case`` does (FOR UPDATE; SQLite: already, by BEGIN IMMEDIATE),
    with everything the machine and the view read, whether it has open overdue alerts (which the
    event then resolves) and the units the event's ``data`` names, in one round trip. The case
    comes back as a plain object with the row's attributes, which the machine moves and the UPDATE
    writes back; the units as ``DatabaseReferences`` knows them."""
    statement = _lock_statement(actor.role, actor.org_unit_code, actor.org_kind)
    hospital_code, group_code = _named(data, machine.HOSPITAL_FIELDS), _named(data, machine.GROUP_FIELDS)
    row = statement.first(connection, {"case_id": case_id, "named_hospital": hospital_code, "named_group": group_code})
    if row is None:
        raise NotFound(f"no case {case_id}")
    case = SimpleNamespace(**dict(zip(_CASE_COLUMNS, row[:_PERSON_AT], strict=True)))
    case.person = SimpleNamespace(**dict(zip(_PERSON_COLUMNS, row[_PERSON_AT:_UNITS_AT], strict=True)))
    hospital_name, hospital_level, group_name, group_level, alerted, *named = row[_UNITS_AT:]
    case.hospital = _Unit(case.hospital_code, hospital_name, hospital_level) if case.hospital_code else None
    case.referral_group = _Unit(case.referral_group_code, group_name, group_level) if case.referral_group_code else None
    hospital, group = named[: len(UNIT_FIELDS)], named[len(UNIT_FIELDS) :]
    known: dict[tuple[str, str], Any] = {}
    if hospital_code is not None:  # the fields are NOT NULL: all NULL means no such unit
        known["hospital", hospital_code] = machine.HospitalRef(hospital_code, *hospital) if hospital[0] else None
    if group_code is not None:
        known["expert_group", group_code] = machine.ExpertGroupRef(group_code, *group) if group[0] else None
    return case, bool(alerted), known


def _named(data: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    """The code given in the first of ``fields`` that ``data`` has as a string (the data is not
    validated yet: anything else is left to the event's schema to refuse)."""
    return next((data[name] for name in fields if isinstance(data.get(name), str)), None)


@lru_cache(maxsize=4096)
def _lock_statement(role: str, org_unit_code: str, org_kind: str) -> DirectStatement:
    """The lock query for one scope, built and compiled once, run on the driver's cursor. The scope
    depends on these three fields of the actor only."""
    scope = case_scope(Actor(None, "", role, org_unit_code, org_kind))
    return DirectStatement(
        select(*_LOCK_COLUMNS)
        .select_from(_LOCK_FROM)
        .where(_CASES.c.id == bindparam("case_id"), scope)
        .with_for_update(of=_CASES)
    )


def _unit(connection: Any, statement: Any, code: str | None) -> _Unit | None:
    row = connection.execute(statement, {"code": code}).first() if code else None
    return _Unit(*row) if row else None


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


def _append_event(session: Session, row: dict[str, Any]) -> None:
    """Append an event (``_event_row``) to its case's history: an INSERT now, not at the next
    flush, since the case row it refers to already exists."""
    _DIRECT_INSERT_EVENT.run(session.connection(), row)


def _event_row(
    case: Any,
    event: str,
    from_state: str | None,
    actor: Actor,
    now: datetime,
    occurred_at: datetime,
    data: dict[str, Any],
    reason: str | None,
) -> dict[str, Any]:
    """The parameters of ``_INSERT_EVENT``: the event's row in the case's history, numbered by the
    case's new version."""
    return {
        "event_case_id": case.id,
        "event_seq": case.version,
        "event_event": event,
        "event_from_state": from_state,
        "event_to_state": case.state,
        "event_actor_id": actor.user_id,
        "event_actor_username": actor.username,
        "event_org_unit_code": actor.org_unit_code or None,
        "event_at": now,
        "event_occurred_at": occurred_at,
        "event_data": data,
        "event_reason": reason,
    }


def _move(connection: Any, case: Any, event_row: dict[str, Any], read: dict[str, Any] | None) -> None:
    """Write the moved case, its history row and, when the answer shows the full ID, the
    access-log row. On PostgreSQL that is one statement (the UPDATE and the access-log INSERT as
    data-modifying WITH parts of the event's INSERT): one round trip and one statement's cost in
    the driver and the server instead of three. SQLite has no data-modifying WITH: three."""
    params = {f"new_{name}": getattr(case, name) for name in _MOVED} | {"case_id": case.id} | event_row | (read or {})
    try:
        if connection.dialect.name == "postgresql":
            _MOVE_AND_RECORD[read is not None].run(connection, params)
            return
        _DIRECT_MOVE_CASE.run(connection, params)
    except IntegrityError:
        # Reopening beside a newer open case for the same disease trips the partial unique index.
        raise Conflict("this person already has an open case for this disease") from None
    _DIRECT_INSERT_EVENT.run(connection, params)
    if read is not None:
        _DIRECT_INSERT_READ.run(connection, params)


_INSERT_EVENT = bound_insert(CaseEvent.__table__, "event_")
# The writes of ``_move``, run on the driver's cursor (casework/direct_sql.py).
_MOVE_AND_RECORD = {
    False: DirectStatement(_INSERT_EVENT.add_cte(_MOVE_CASE.cte("moved"))),
    True: DirectStatement(_INSERT_EVENT.add_cte(_MOVE_CASE.cte("moved")).add_cte(INSERT_READ.cte("logged"))),
}
_DIRECT_MOVE_CASE = DirectStatement(_MOVE_CASE)
_DIRECT_INSERT_EVENT = DirectStatement(_INSERT_EVENT)
_DIRECT_INSERT_READ = DirectStatement(INSERT_READ)


def _hold(session: Session, case_id: int, org_unit_code: str) -> None:
    """Record that a hospital or group holds the case; holding twice is a no-op on both engines."""
    statement = insert_ignoring_conflicts(session, CaseHolder.__table__).values(
        case_id=case_id, org_unit_code=org_unit_code
    )
    session.connection().execute(statement.on_conflict_do_nothing())


def _screenable_person(session: Session, actor: Actor, person_id: int) -> Person | None:
    """The person, if the actor may already see them: residents of its region, or for a hospital
    the patients of cases it holds (it cannot screen its way into a stranger's record)."""
    return session.scalar(select(Person).where(Person.id == person_id, person_scope(actor)))


def _age_on(person: Person, at: datetime) -> int:
    day = at.date()
    born = person.birth_date
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))
