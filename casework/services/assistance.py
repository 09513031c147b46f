"""The assistance review chain: applications for second assistance and charity aid on a case.

Raised by the county coordinator, or automatically when a settlement's year position says the aid is due
(seed 004 二(三)/二(四)); reviewed by the village, then the township; decided and paid by the fund. Every
step is one transaction that checks the version the actor saw, appends an audit event, moves the step's
deadline and ends the step's overdue alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import UTCDateTime, flush_or_conflict, insert_ignoring_conflicts, raw, utcnow, write_transaction
from casework.errors import Conflict, Forbidden, NotFound, ValidationFailed, VersionMismatch
from casework.models import Alert, AssistanceApplication, AssistanceEvent, Case, OrgUnit, Person
from casework.scope import case_scope
from workflows import assistance_machine as machine
from workflows.money import YearPosition
from workflows.policy_pack import PolicyPack, packs

SYSTEM = "system"


def _due(pack: PolicyPack | None, state: str, since: datetime) -> datetime | None:
    days = (pack.assistance_deadlines_days if pack else {}).get(state)
    return None if days is None else since + timedelta(days=days)


def _township_of(session: Session, village_code: str) -> str:
    return session.scalar(select(OrgUnit.parent_code).where(OrgUnit.code == village_code)) or village_code


def _kind_allowed(pack: PolicyPack, kind: str) -> bool:
    """The pack must have the rule the aid comes from (二次救助 / 慈善 thresholds)."""
    key = {"second_assistance": "second_assistance", "charity": "charity_thresholds"}[kind]
    return bool(pack.money.get(key))


def _append(
    session: Session,
    app: AssistanceApplication,
    event: str,
    from_state: str | None,
    actor: Actor | None,
    now: datetime,
    data: dict[str, Any],
    reason: str | None = None,
) -> None:
    session.add(
        AssistanceEvent(
            application_id=app.id,
            seq=app.version,
            event=event,
            from_state=from_state,
            to_state=app.state,
            actor_id=actor.user_id if actor else None,
            actor_username=actor.username if actor else SYSTEM,
            org_unit_code=(actor.org_unit_code or None) if actor else None,
            at=now,
            data=data,
            reason=reason,
        )
    )


def _load(schema: type, data: Any, prefix: str = "data.") -> dict[str, Any]:
    """``prefix`` names where the fields stood in the request: an event's ``data``, or (raising an
    application) the body itself."""
    if not isinstance(data, dict):
        raise ValidationFailed.field(prefix.rstrip(".") or "body", "must be an object")
    try:
        loaded: dict[str, Any] = schema().load(data)
    except ValidationError as exc:
        raise ValidationFailed(
            {f"{prefix}{k}": v if isinstance(v, list) else [str(v)] for k, v in exc.messages_dict.items()}
        ) from None
    return loaded


def raise_application(
    session: Session, actor: Actor, case_id: int, data: dict[str, Any], now: datetime | None = None
) -> AssistanceApplication:
    """The coordinator raises an application on a case of the county."""
    now = now or utcnow()
    loaded = _load(machine.RaiseData, data, prefix="")
    with write_transaction(session):
        case_row = _case(session, actor, case_id, lock=True)
        role, unit = machine.RAISER
        if actor.role != role or actor.org_unit_code != {"county": case_row.county_code}.get(unit):
            raise Forbidden("the county coordinator of the case's county raises applications")
        pack = packs()[case_row.policy_code]
        if not _kind_allowed(pack, loaded["kind"]):
            raise ValidationFailed.field("kind", f"{pack.code} has no {loaded['kind']} rule")
        app = _new(session, case_row, loaded, pack, now, automatic=False)
        session.add(app)
        flush_or_conflict(session, f"the person already has a {loaded['kind']} application for {loaded['year']}")
        _append(session, app, machine.RAISE_EVENT, None, actor, now, machine.RaiseData().dump(loaded))
    return app


def _new(
    session: Session, case_row: Case, loaded: dict[str, Any], pack: PolicyPack, now: datetime, automatic: bool
) -> AssistanceApplication:
    return AssistanceApplication(
        case_id=case_row.id,
        person_id=case_row.person_id,
        kind=loaded["kind"],
        year=loaded["year"],
        state=machine.RAISED,
        version=1,
        village_code=case_row.village_code,
        township_code=_township_of(session, case_row.village_code),
        county_code=case_row.county_code,
        automatic=automatic,
        amount_requested=loaded.get("amount_requested"),
        raised_at=now,
        entered_state_at=now,
        due_at=_due(pack, machine.RAISED, now),
        updated_at=now,
    )


def raise_if_due(session: Session, case_row: Case, position: YearPosition, now: datetime) -> list[str]:
    """Inside a settlement's transaction: raise the aid the year position says is due, once per person,
    kind and year (a concurrent raise of the same one is a no-op), or bring the amount of one it raised
    earlier up to date. Returns the kinds raised now."""
    pack = packs()[case_row.policy_code]
    wanted: list[tuple[str, Decimal | None]] = []
    if position.second_assistance_due is not None and position.second_assistance_due > 0:
        wanted.append(("second_assistance", position.second_assistance_due))
    if position.charity_eligible:
        wanted.append(("charity", None))
    raised = []
    for kind, amount in wanted:
        values = {
            "kind": kind,
            "year": position.year,
            "amount_requested": amount,
            "note": "raised automatically by the year position",
        }
        row = _new(session, case_row, values, pack, now, automatic=True)
        columns = {c.key: getattr(row, c.key) for c in AssistanceApplication.__table__.columns if c.key != "id"}
        statement = (
            insert_ignoring_conflicts(session, AssistanceApplication)
            .values(**columns)
            .on_conflict_do_nothing()
            .execution_options(preserve_rowcount=True)
        )
        if session.execute(statement).rowcount != 1:
            # Already raised this year (by hand, by an earlier bill, or by a concurrent one).
            if amount is not None:
                _follow_the_year(session, case_row.person_id, kind, position.year, amount, now)
            continue
        app = session.scalar(
            select(AssistanceApplication).where(
                AssistanceApplication.person_id == case_row.person_id,
                AssistanceApplication.kind == kind,
                AssistanceApplication.year == position.year,
            )
        )
        _append(session, app, machine.RAISE_EVENT, None, None, now, machine.RaiseData().dump(values))
        raised.append(kind)
    return raised


def _follow_the_year(session: Session, person_id: int, kind: str, year: int, due: Decimal, now: datetime) -> None:
    """A later bill changed what the year position says is due: an application the position raised asks for
    the new amount while nobody has decided on it, with an entry in its history and a new version (a review
    form filled in on the old amount is then refused as stale). One raised by hand keeps the coordinator's
    figure; once the fund approved or refused, or paid, the amount no longer moves."""
    app = session.scalar(
        select(AssistanceApplication)
        .where(
            AssistanceApplication.person_id == person_id,
            AssistanceApplication.kind == kind,
            AssistanceApplication.year == year,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if app is None or not app.automatic or app.state not in machine.UNDECIDED_STATES or app.amount_requested == due:
        return
    previous = app.amount_requested
    app.amount_requested = due
    app.version += 1
    app.updated_at = now
    data = {"amount_requested": str(due), "previous": None if previous is None else str(previous)}
    _append(session, app, machine.REVISE_EVENT, app.state, None, now, data)


def fire_application(
    session: Session,
    actor: Actor,
    application_id: int,
    event: str,
    data: dict[str, Any] | None,
    expected_version: int,
    reason: str | None = None,
    now: datetime | None = None,
) -> AssistanceApplication:
    """One review step on an application the actor last saw at ``expected_version``."""
    now = now or utcnow()
    rule = machine.RULES.get(event)
    if rule is None:
        raise ValidationFailed.field("event", f"unknown event; events are {', '.join(machine.RULES)}")
    with write_transaction(session):
        app = _application(session, actor, application_id, lock=True)
        if app.version != expected_version:
            raise VersionMismatch(expected_version, app.version)
        if not machine.can_happen(event, app):
            allowed = machine.allowed_events(app, actor)
            raise Conflict(f"{event} cannot happen in state {app.state}", allowed_events=allowed)
        if not machine.actor_may(rule, app, actor):
            raise Forbidden(f"{actor.role} ({actor.org_unit_code}) may not {event} this application")
        loaded = _load(rule.data_schema, data or {})
        reason = (reason or "").strip() or None
        if rule.needs_reason and not reason:
            raise ValidationFailed.field("reason", f"{event} needs a reason")
        old_due = app.due_at
        try:
            from_state = machine.trigger(app, event, loaded)
        except machine.GuardFailed as exc:
            raise ValidationFailed.field(f"data.{exc.field}", exc.message) from None
        if loaded.get("fund"):
            app.fund = loaded["fund"]
        if "amount_approved" in loaded:
            app.amount_approved = loaded["amount_approved"]
        if "amount_paid" in loaded:
            app.amount_paid = loaded["amount_paid"]
        case_row = session.get(Case, app.case_id)
        app.version += 1
        app.entered_state_at = now
        app.due_at = _due(packs().get(case_row.policy_code), app.state, now)
        app.updated_at = now
        _append(session, app, event, from_state, actor, now, rule.data_schema().dump(loaded), reason)
        # The step ended: its overdue alert ends with it, in this transaction.
        session.execute(
            update(Alert)
            .where(
                Alert.case_id == app.case_id,
                Alert.rule == machine.OVERDUE_RULES[from_state],
                Alert.due_at == old_due,
                Alert.status != "resolved",
            )
            .values(status="resolved", resolved_at=now)
            .execution_options(synchronize_session=False)
        )
    return app


def get_application(session: Session, actor: Actor, application_id: int) -> AssistanceApplication:
    return _application(session, actor, application_id)


# --- views: what the API serialises and the console renders ---------------------------------------

_VIEW_COLUMNS = (
    "id",
    "case_id",
    "kind",
    "year",
    "state",
    "version",
    "automatic",
    "amount_requested",
    "amount_approved",
    "amount_paid",
    "fund",
    "raised_at",
    "due_at",
)


def application_view(app: AssistanceApplication, actor: Actor, now: datetime | None = None) -> dict[str, Any]:
    """One application as a caller sees it, with the steps this caller may take now."""
    view: dict[str, Any] = {name: getattr(app, name) for name in _VIEW_COLUMNS}
    view["state_label"] = machine.STATE_LABELS[app.state]
    view["layer"] = machine.KINDS[app.kind]
    view["allowed_events"] = machine.allowed_events(app, actor)
    if now is not None:
        view["overdue"] = app.due_at is not None and app.due_at < now
    return view


def _event_view(event: AssistanceEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "event": event.event,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "actor_username": event.actor_username,
        "org_unit_code": event.org_unit_code,
        "at": event.at,
        "data": dict(event.data or {}),
        "reason": event.reason,
    }


def case_applications(
    session: Session, actor: Actor, case_id: int, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The case's applications with their histories (two queries, whatever their number)."""
    now = now or utcnow()
    apps = applications_for_case(session, actor, case_id)
    if not apps:
        return []
    events: dict[int, list[dict[str, Any]]] = {app.id: [] for app in apps}
    rows = session.scalars(
        select(AssistanceEvent)
        .where(AssistanceEvent.application_id.in_(list(events)))
        .order_by(AssistanceEvent.application_id, AssistanceEvent.seq)
    )
    for row in rows:
        events[row.application_id].append(_event_view(row))
    return [application_view(app, actor, now) | {"events": events[app.id]} for app in apps]


def raisable_kinds(actor: Actor, county_code: str, policy_code: str) -> list[str]:
    """The kinds of aid the actor may raise by hand on a case of the county and policy: the county
    coordinator, for the kinds the policy has a rule for (what :func:`raise_application` checks, asked before)."""
    role, unit = machine.RAISER
    if actor.role != role or actor.org_unit_code != {"county": county_code}.get(unit):
        return []
    pack = packs().get(policy_code)
    return [kind for kind in machine.KINDS if pack is not None and _kind_allowed(pack, kind)]


def waiting_for(
    session: Session, actor: Actor, limit: int = 50, now: datetime | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """The applications whose next step is the actor's, most urgent first, and whether there are more.

    Who acts is the machine's rule (a role of the org unit of the step), read from ``RULES``: the village
    doctor of the application's village, the township's, the county coordinator for the fund."""
    now = now or utcnow()
    columns = {
        machine.VILLAGE: AssistanceApplication.village_code,
        machine.TOWNSHIP: AssistanceApplication.township_code,
        machine.COUNTY: AssistanceApplication.county_code,
    }
    steps = {
        (state, rule.unit)
        for rule in machine.RULES.values()
        if rule.role == actor.role
        for state in rule.sources
    }
    if not steps or not actor.org_unit_code:
        return [], False
    mine = or_(
        *(
            and_(AssistanceApplication.state == state, columns[unit] == actor.org_unit_code)
            for state, unit in sorted(steps)
        )
    )
    rows = session.execute(
        select(AssistanceApplication, Person.name)
        .join(Case, and_(Case.id == AssistanceApplication.case_id, case_scope(actor)))
        .join(Person, Person.id == AssistanceApplication.person_id)
        .where(AssistanceApplication.state.in_(machine.OPEN_STATES), mine)
        .order_by(AssistanceApplication.due_at.asc().nulls_last(), AssistanceApplication.id)
        .limit(limit + 1)
    ).all()
    items = [application_view(app, actor, now) | {"person_name": name} for app, name in rows[:limit]]
    return items, len(rows) > limit


def applications_for_case(session: Session, actor: Actor, case_id: int) -> Sequence[AssistanceApplication]:
    _case(session, actor, case_id)
    return session.scalars(
        select(AssistanceApplication).where(AssistanceApplication.case_id == case_id).order_by(AssistanceApplication.id)
    ).all()


def application_events(session: Session, actor: Actor, application_id: int) -> Sequence[AssistanceEvent]:
    _application(session, actor, application_id)
    return session.scalars(
        select(AssistanceEvent).where(AssistanceEvent.application_id == application_id).order_by(AssistanceEvent.seq)
    ).all()


def paid_in_year(session: Session, person_id: int, year: int) -> dict[str, Decimal]:
    """What the chain paid the person for the year, by the settlement layer it counts in."""
    rows = session.execute(
        select(AssistanceApplication.kind, func.coalesce(func.sum(raw(AssistanceApplication.amount_paid)), 0))
        .where(
            AssistanceApplication.person_id == person_id,
            AssistanceApplication.year == year,
            AssistanceApplication.state == machine.PAID,
        )
        .group_by(AssistanceApplication.kind)
    ).all()
    return {machine.KINDS[kind]: Decimal(int(total)).scaleb(-2) for kind, total in rows}


# --- overdue steps: alerts on the application's case, told to the org unit that must act ----------


def raise_overdue_assistance(session: Session, now: datetime) -> int:
    """Alerts for applications past their step's deadline (the alerts table's unique key makes it once)."""
    at = literal(now, type_=UTCDateTime())
    rule = case(machine.OVERDUE_RULES, value=AssistanceApplication.state, else_=None)
    acting = case(
        {state: getattr(AssistanceApplication, f"{unit}_code") for state, unit in machine.ACTING_UNIT.items()},
        value=AssistanceApplication.state,
        else_=None,
    )
    overdue = select(
        AssistanceApplication.case_id,
        rule,
        AssistanceApplication.due_at,
        at,
        literal(0),
        acting,
        literal("open"),
        at,
    ).where(
        AssistanceApplication.state.in_(machine.OPEN_STATES),
        AssistanceApplication.due_at < now,
        AssistanceApplication.due_at.is_not(None),
    )
    statement = (
        insert_ignoring_conflicts(session, Alert)
        .from_select(
            ["case_id", "rule", "due_at", "raised_at", "level", "org_unit_code", "status", "escalated_at"], overdue
        )
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True)
    )
    return session.connection().execute(statement).rowcount


# --- internals ----------------------------------------------------------------------------------


def _case(session: Session, actor: Actor, case_id: int, lock: bool = False) -> Case:
    query = select(Case).where(Case.id == case_id, case_scope(actor))
    if lock:
        query = query.with_for_update(of=Case).execution_options(populate_existing=True)
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"no case {case_id}")
    return row


def _application(session: Session, actor: Actor, application_id: int, lock: bool = False) -> AssistanceApplication:
    """The application, if its case is in the actor's scope (outside it, it does not exist)."""
    query = (
        select(AssistanceApplication)
        .join(Case, and_(Case.id == AssistanceApplication.case_id, case_scope(actor)))
        .where(AssistanceApplication.id == application_id)
    )
    if lock:
        query = query.with_for_update(of=AssistanceApplication).execution_options(populate_existing=True)
    app = session.scalar(query)
    if app is None:
        raise NotFound(f"no application {application_id}")
    return app
