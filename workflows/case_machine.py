"""The case state machine: the one definition of states, events, who may fire them and guards.

Everything that asks "what may happen to this case" reads :data:`RULES` or :data:`MACHINE`: the
service that fires events, the API's ``allowed_events``, error messages, ``replay`` and the
Mermaid diagram. One shared ``transitions.Machine`` with no registered models serves every case
(bench/machine_usage.py measures why: ~11 µs a request, against ~365 µs and ~42 KiB for a
Machine built per case).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from transitions import Machine, MachineError

from workflows import event_data as schemas

if TYPE_CHECKING:
    from workflows.policy_pack import PolicyPack

SCREENED = "screened"
CONFIRMED = "confirmed"
ASSIGNED = "assigned"
IN_TREATMENT = "in_treatment"
TREATED = "treated"
FOLLOW_UP = "follow_up"
REFERRED = "referred"
EXCLUDED = "excluded"
CLOSED = "closed"
WITHDRAWN = "withdrawn"
DECEASED = "deceased"

# How a state's deadline is counted from the step: a key of the pack's ``deadlines_days``, or one of
# the disease's own clocks (the expected stay; the follow-up interval plus the pack's grace).
EXPECTED_STAY = "disease.expected_stay_days"
FOLLOW_UP_INTERVAL = "disease.follow_up_interval_days"


@dataclass(frozen=True)
class State:
    """One state of a case, declared once.

    Everything else is derived from :data:`STATES`: ``OPEN_STATES``, ``TERMINAL_STATES``,
    ``STATE_LABELS``, the overdue rules (``workflows.deadlines``), the states a policy pack must
    name in ``overdue_alerts`` (``workflows.policy_pack``), and the database's CHECK constraint on
    ``cases.state`` and its partial indexes over open cases (``casework.models``). Adding a state
    therefore touches this table (and the events that reach it), the policy packs (who is told when
    a case is overdue in it) and one migration re-creating the CHECK constraint and the partial
    indexes — nothing else; ``tests/migrations`` proves the migrated DDL equals this declaration.
    """

    name: str
    label: str  # Chinese, shown to users
    terminal: bool = False
    deadline: str | None = None  # how ``due_at`` is counted in this state (see EXPECTED_STAY)
    overdue_rule: str | None = None  # the alert rule raised when a case is past ``due_at`` here


# The order is the order of the DDL's state lists (open states first).
STATES: tuple[State, ...] = (
    State(SCREENED, "筛查发现", deadline="screened", overdue_rule="not_confirmed"),
    State(CONFIRMED, "确诊", deadline="confirmed", overdue_rule="not_assigned"),
    State(ASSIGNED, "分配定点医院", deadline="assigned", overdue_rule="not_admitted"),
    State(IN_TREATMENT, "入院救治", deadline=EXPECTED_STAY, overdue_rule="stay_exceeded"),
    State(TREATED, "出院", deadline="settlement_after_discharge", overdue_rule="settlement_missing"),
    State(FOLLOW_UP, "随访", deadline=FOLLOW_UP_INTERVAL, overdue_rule="follow_up_missed"),
    State(REFERRED, "转诊", deadline="referred", overdue_rule="referral_waiting"),
    State(EXCLUDED, "排除", terminal=True),
    State(CLOSED, "结案", terminal=True),
    State(WITHDRAWN, "退出", terminal=True),
    State(DECEASED, "死亡", terminal=True),
)
STATE_BY_NAME: Mapping[str, State] = {state.name: state for state in STATES}
STATE_NAMES = tuple(STATE_BY_NAME)
OPEN_STATES = tuple(state.name for state in STATES if not state.terminal)
TERMINAL_STATES = tuple(state.name for state in STATES if state.terminal)
STATE_LABELS = {state.name: state.label for state in STATES}
# The overdue rule each state's deadline raises, by name (alerts carry it).
OVERDUE_RULES = {state.name: state.overdue_rule for state in STATES if state.overdue_rule}
REFERRAL_ORIGINS = (ASSIGNED, IN_TREATMENT, FOLLOW_UP)

# A referral's answer sends the case back where it came from: a pseudo-destination, expanded
# into one machine transition per origin, each guarded by the recorded ``referred_from``.
RETURN_TO_ORIGIN = "<referred_from>"

# Hospital levels, lowest first: the one list the database, the reference API and the packs'
# ``inpatient_ratio_by_level`` check against; a referral may only move up this ladder.
HOSPITAL_LEVELS = ("village_clinic", "township", "county", "municipal", "provincial")
HOSPITAL_RANK = {level: rank for rank, level in enumerate(HOSPITAL_LEVELS)}


class Relation(StrEnum):
    """What ties the actor to the case, beyond seeing it."""

    ANY = "any"  # any user of the role who can see the case
    ASSIGNED_HOSPITAL = "assigned_hospital"  # the hospital currently holding the case
    HOLDING_GROUP = "holding_group"  # the expert group the referral currently waits with


class CaseLike(Protocol):
    state: str
    disease_code: str
    policy_code: str
    hospital_code: str | None
    referral_group_code: str | None
    referred_from: str | None
    county_code: str
    city_code: str
    province_code: str
    screened_at: datetime


class ActorLike(Protocol):
    role: str
    org_unit_code: str


@dataclass(frozen=True)
class HospitalRef:
    code: str
    level: str
    region_code: str


@dataclass(frozen=True)
class ExpertGroupRef:
    code: str
    level: str
    region_code: str


class References(Protocol):
    """Reference data a guard may ask about; the service answers from the database."""

    def hospital(self, code: str) -> HospitalRef | None: ...
    def expert_group(self, code: str) -> ExpertGroupRef | None: ...
    def is_designated(self, hospital_code: str, policy_code: str, disease_code: str) -> bool: ...
    def is_partner(self, group_code: str, hospital_code: str) -> bool: ...
    def admitted_at(self, case: CaseLike) -> datetime | None: ...


@dataclass
class EventContext:
    case: CaseLike
    actor: ActorLike
    data: dict[str, Any]
    pack: PolicyPack
    refs: References
    now: datetime


class GuardFailed(Exception):
    """A guard refused the event because of one field of its data."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


Guard = Callable[[EventContext], None]
Effect = Callable[[Any, Mapping[str, Any], str], None]


# --- guards -------------------------------------------------------------------------------------


def diagnosis_matches_disease(ctx: EventContext) -> None:
    disease = ctx.pack.disease(ctx.case.disease_code)
    code = ctx.data["diagnosis_code"]
    if disease is None or not disease.matches_icd10(code):
        expected = ", ".join(disease.icd10) if disease else "?"
        raise GuardFailed("diagnosis_code", f"{code} is not {ctx.case.disease_code} (ICD-10 {expected})")
    secondary = ctx.data.get("secondary_codes") or []
    rule = disease.secondary_needed(code)
    if rule is not None and not any(_code_under(other, rule.any_of) for other in secondary):
        raise GuardFailed("secondary_codes", f"{code} needs one of {', '.join(rule.any_of)} beside it ({rule.why})")
    if disease.lesions_min is not None:
        # One lesion per ICD-10 subcategory: Q21.000 (clinical version) and Q21.0 are the same VSD.
        lesions = {lesion.strip().upper()[:5] for lesion in [*(ctx.data.get("lesions") or []), code]}
        if not all(disease.matches_icd10(lesion) for lesion in lesions):
            raise GuardFailed("lesions", f"every lesion must be a heart malformation ({', '.join(disease.icd10)})")
        if len(lesions) < disease.lesions_min:
            wanted = f"{disease.lesions_min} or more distinct lesions"
            raise GuardFailed("lesions", f"{ctx.case.disease_code} needs {wanted}, got {len(lesions)}")
    if disease.resistance is not None:
        _check_resistance(disease.resistance, ctx.data.get("drug_resistance"), secondary)


# Resistance to tuberculostatic drugs (ICD-10 2019 U84.3): on the record only after a DST showed it.
TB_RESISTANCE_CODE = "U84.3"


def _code_under(code: str, prefixes: tuple[str, ...]) -> bool:
    return any(code.strip().upper().startswith(prefix.upper()) for prefix in prefixes)


def _check_resistance(rule: str, dst: Mapping[str, Any] | None, secondary: list[str]) -> None:
    if dst is None:
        if any(_code_under(other, (TB_RESISTANCE_CODE,)) for other in secondary):
            return
        raise GuardFailed(
            "drug_resistance", f"drug-resistant TB needs the DST result, or {TB_RESISTANCE_CODE} among secondary_codes"
        )
    # Rifampicin resistance is what China's 耐多药 programme treats (RR/MDR-TB alike; Xpert reports only it).
    if rule == "rifampicin" and "rifampicin" not in dst["resistant_to"]:
        raise GuardFailed("drug_resistance", "multidrug-resistant TB needs resistance to rifampicin")


# The data fields in which an event names a hospital or an expert group, which its guards look up.
# The service reads the unit so named with the case it locks, in the same round trip.
HOSPITAL_FIELDS = ("diagnosed_by", "hospital_id")
GROUP_FIELDS = ("expert_group_id",)


def diagnosing_hospital_exists(ctx: EventContext) -> None:
    hospital = ctx.refs.hospital(ctx.data["diagnosed_by"])
    if hospital is None:
        raise GuardFailed("diagnosed_by", "no such hospital")
    # Region codes (GB/T 2260) start with the province: the policy pays for diagnoses in its province.
    if hospital.region_code[:2] != ctx.case.province_code[:2]:
        raise GuardFailed("diagnosed_by", "is a hospital of another province")


def hospital_designated(ctx: EventContext) -> None:
    code = ctx.data["hospital_id"]
    if ctx.refs.hospital(code) is None:
        raise GuardFailed("hospital_id", "no such hospital")
    if not ctx.refs.is_designated(code, ctx.case.policy_code, ctx.case.disease_code):
        raise GuardFailed(
            "hospital_id",
            f"{code} is not designated for {ctx.case.disease_code} under {ctx.case.policy_code}",
        )


def _covers_case(group: ExpertGroupRef, case: CaseLike) -> bool:
    region = case.city_code if group.level == "municipal" else case.province_code
    return group.region_code == region


def _check_next_rung(ctx: EventContext, rung: str | None) -> None:
    code = ctx.data["expert_group_id"]
    group = ctx.refs.expert_group(code)
    if group is None:
        raise GuardFailed("expert_group_id", "no such expert group")
    if rung is None:
        raise GuardFailed("expert_group_id", "the case is already at the top of the referral ladder")
    if group.level != rung or not _covers_case(group, ctx.case):
        raise GuardFailed("expert_group_id", f"must be the {rung} expert group of the case's region")


def referral_first_rung(ctx: EventContext) -> None:
    ladder = ctx.pack.referral_ladder
    _check_next_rung(ctx, ladder[0] if ladder else None)


def referral_next_rung(ctx: EventContext) -> None:
    ladder = list(ctx.pack.referral_ladder)
    holding = ctx.refs.expert_group(ctx.case.referral_group_code or "")
    position = ladder.index(holding.level) if holding and holding.level in ladder else len(ladder)
    _check_next_rung(ctx, ladder[position + 1] if position + 1 < len(ladder) else None)


def accepting_hospital_suitable(ctx: EventContext) -> None:
    code = ctx.data["hospital_id"]
    hospital = ctx.refs.hospital(code)
    if hospital is None:
        raise GuardFailed("hospital_id", "no such hospital")
    if ctx.refs.is_partner(ctx.case.referral_group_code or "", code):
        return
    current = ctx.refs.hospital(ctx.case.hospital_code or "")
    higher = current is None or HOSPITAL_RANK[hospital.level] > HOSPITAL_RANK[current.level]
    designated = ctx.refs.is_designated(code, ctx.case.policy_code, ctx.case.disease_code)
    if not (higher and designated):
        raise GuardFailed(
            "hospital_id", "must be a partner hospital of the expert group, or a higher-level designated one"
        )


def step_time_valid(field_name: str) -> Guard:
    """When a step happened in the world: clerks enter it late, never ahead of time."""

    def guard(ctx: EventContext) -> None:
        at = ctx.data[field_name]
        if at > ctx.now:
            raise GuardFailed(field_name, "lies in the future")
        if at < ctx.case.screened_at:
            raise GuardFailed(field_name, "lies before the case was screened")

    guard.__name__ = f"{field_name}_not_in_future"
    return guard


def discharged_after_admission(ctx: EventContext) -> None:
    # The latest admission: a consultation in between restarts the step, not the stay.
    admitted = ctx.refs.admitted_at(ctx.case)
    if admitted is not None and ctx.data["discharged_at"] < admitted:
        raise GuardFailed("discharged_at", "lies before the admission")


# --- effects: what a transition writes on the case besides its state -----------------------------


def set_hospital(case: Any, data: Mapping[str, Any], _from: str) -> None:
    case.hospital_code = data["hospital_id"]
    case.referral_group_code = None
    case.referred_from = None


def start_referral(case: Any, data: Mapping[str, Any], from_state: str) -> None:
    case.referral_group_code = data["expert_group_id"]
    case.referred_from = from_state


def move_referral_up(case: Any, data: Mapping[str, Any], _from: str) -> None:
    case.referral_group_code = data["expert_group_id"]


def end_referral(case: Any, _data: Mapping[str, Any], _from: str) -> None:
    case.referral_group_code = None
    case.referred_from = None


def clear_hospital(case: Any, data: Mapping[str, Any], from_state: str) -> None:
    end_referral(case, data, from_state)
    case.hospital_code = None


# --- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRule:
    name: str
    label: str  # Chinese, shown on the console's buttons and in import reports
    sources: tuple[str, ...]
    dest: str
    roles: Mapping[str, Relation]
    data_schema: type[schemas.Schema]
    guards: tuple[Guard, ...] = ()
    effect: Effect | None = None
    step_time_field: str | None = None  # the data field saying when it happened in the world
    needs_reason: bool = False


COORDINATOR = {"county_coordinator": Relation.ANY}
HOLDING_EXPERT = {"expert": Relation.HOLDING_GROUP}

RULES: dict[str, EventRule] = {
    rule.name: rule
    for rule in (
        EventRule(
            "confirm",
            "确诊",
            (SCREENED,),
            CONFIRMED,
            COORDINATOR,
            schemas.ConfirmData,
            guards=(diagnosis_matches_disease, diagnosing_hospital_exists, step_time_valid("diagnosed_at")),
            step_time_field="diagnosed_at",
        ),
        EventRule(
            "exclude",
            "排除",
            (SCREENED, CONFIRMED),
            EXCLUDED,
            COORDINATOR,
            schemas.ReasonOnlyData,
            needs_reason=True,
        ),
        EventRule(
            "assign",
            "分配定点医院",
            (CONFIRMED,),
            ASSIGNED,
            COORDINATOR,
            schemas.AssignData,
            guards=(hospital_designated,),
            effect=set_hospital,
        ),
        EventRule(
            "admit",
            "入院",
            (ASSIGNED,),
            IN_TREATMENT,
            {"hospital": Relation.ASSIGNED_HOSPITAL},
            schemas.AdmitData,
            guards=(step_time_valid("admitted_at"),),
            step_time_field="admitted_at",
        ),
        EventRule(
            "discharge",
            "出院",
            (IN_TREATMENT,),
            TREATED,
            {"hospital": Relation.ASSIGNED_HOSPITAL},
            schemas.DischargeData,
            guards=(step_time_valid("discharged_at"), discharged_after_admission),
            step_time_field="discharged_at",
        ),
        EventRule(
            "start_follow_up",
            "开始随访",
            (TREATED,),
            FOLLOW_UP,
            {"hospital": Relation.ASSIGNED_HOSPITAL, "county_coordinator": Relation.ANY},
            schemas.FollowUpData,
        ),
        EventRule(
            "close",
            "结案",
            (TREATED, FOLLOW_UP),
            CLOSED,
            COORDINATOR,
            schemas.ReasonOnlyData,
            needs_reason=True,
        ),
        EventRule(
            "refer",
            "转诊",
            REFERRAL_ORIGINS,
            REFERRED,
            {"hospital": Relation.ASSIGNED_HOSPITAL, "county_coordinator": Relation.ANY},
            schemas.ReferData,
            guards=(referral_first_rung,),
            effect=start_referral,
        ),
        EventRule(
            "escalate",
            "上转省级专家组",
            (REFERRED,),
            REFERRED,
            HOLDING_EXPERT,
            schemas.ReferData,
            guards=(referral_next_rung,),
            effect=move_referral_up,
        ),
        EventRule(
            "accept_referral",
            "接收转诊",
            (REFERRED,),
            ASSIGNED,
            HOLDING_EXPERT,
            schemas.AssignData,
            guards=(accepting_hospital_suitable,),
            effect=set_hospital,
        ),
        EventRule(
            "consult",
            "远程会诊",
            (REFERRED,),
            RETURN_TO_ORIGIN,
            HOLDING_EXPERT,
            schemas.ConsultData,
            effect=end_referral,
        ),
        EventRule(
            "decline_referral",
            "不予接收",
            (REFERRED,),
            RETURN_TO_ORIGIN,
            HOLDING_EXPERT,
            schemas.ReasonOnlyData,
            needs_reason=True,
            effect=end_referral,
        ),
        EventRule(
            "withdraw",
            "退出",
            OPEN_STATES,
            WITHDRAWN,
            COORDINATOR,
            schemas.ReasonOnlyData,
            needs_reason=True,
            effect=end_referral,
        ),
        EventRule(
            "record_death",
            "死亡",
            OPEN_STATES,
            DECEASED,
            {"county_coordinator": Relation.ANY, "hospital": Relation.ASSIGNED_HOSPITAL},
            schemas.DeathData,
            guards=(step_time_valid("died_at"),),
            step_time_field="died_at",
            effect=end_referral,
        ),
        EventRule(
            "reopen",
            "复发重启",
            (CLOSED,),
            CONFIRMED,
            COORDINATOR,
            schemas.ReasonOnlyData,
            needs_reason=True,
            effect=clear_hospital,
        ),
    )
}

# The screening that creates a case is recorded in its history like any event.
SCREEN_EVENT = "screen"


def _came_from(origin: str) -> Callable[[Any], bool]:
    def condition(event: Any) -> bool:
        return event.model.referred_from == origin

    condition.__name__ = f"referred_from_{origin}"
    return condition


def _run_guards(rule: EventRule) -> Callable[[Any], bool]:
    def condition(event: Any) -> bool:
        ctx: EventContext | None = event.kwargs.get("ctx")
        if ctx is not None:  # replay re-runs history without guards: they held when it happened
            for guard in rule.guards:
                guard(ctx)
        return True

    return condition


def _machine_transitions() -> list[dict[str, Any]]:
    out = []
    for rule in RULES.values():
        for source in rule.sources:
            if rule.dest == RETURN_TO_ORIGIN:
                for origin in REFERRAL_ORIGINS:
                    out.append(
                        {
                            "trigger": rule.name,
                            "source": source,
                            "dest": origin,
                            "conditions": [_came_from(origin), _run_guards(rule)],
                        }
                    )
            else:
                out.append(
                    {
                        "trigger": rule.name,
                        "source": source,
                        "dest": rule.dest,
                        "conditions": [_run_guards(rule)],
                    }
                )
    return out


MACHINE = Machine(
    model=None,
    states=list(STATE_NAMES),
    initial=SCREENED,
    transitions=_machine_transitions(),
    auto_transitions=False,
    send_event=True,
)


def can_happen(event: str, case: CaseLike) -> bool:
    """Whether the event has a transition from the case's state (routing only: no roles, guards)."""
    rule = RULES.get(event)
    if rule is None or case.state not in rule.sources:
        return False
    return rule.dest != RETURN_TO_ORIGIN or case.referred_from in REFERRAL_ORIGINS


def actor_may(rule: EventRule, case: CaseLike, actor: ActorLike) -> bool:
    relation = rule.roles.get(actor.role)
    if relation is None:
        return False
    if relation is Relation.ASSIGNED_HOSPITAL:
        return case.hospital_code is not None and case.hospital_code == actor.org_unit_code
    if relation is Relation.HOLDING_GROUP:
        return case.referral_group_code is not None and case.referral_group_code == actor.org_unit_code
    return True


def allowed_events(case: CaseLike, actor: ActorLike | None = None) -> list[str]:
    """Events that can happen now, and that ``actor`` (when given) may fire, in table order."""
    return [
        rule.name
        for rule in _RULES_FROM[case.state]
        if can_happen(rule.name, case) and (actor is None or actor_may(rule, case, actor))
    ]


# The rules each state is a source of, in table order: a list page asks for every case's events.
_RULES_FROM: Mapping[str, tuple[EventRule, ...]] = {
    state: tuple(rule for rule in RULES.values() if state in rule.sources) for state in STATE_NAMES
}


def trigger(case: Any, event: str, data: Mapping[str, Any], ctx: EventContext | None = None) -> str:
    """Move ``case`` by ``event`` with its ``data``; guards run when ``ctx`` is given (replay
    passes none: the guards held when the event was accepted). Returns the state left.

    Raises ``transitions.MachineError`` when no transition exists (``fire`` asks ``can_happen``
    first, so it never sees one), ``GuardFailed`` when a guard refuses because of a field of the
    data; in both cases the case is untouched.
    """
    from_state = case.state
    if not MACHINE.events[event].trigger(case, ctx=ctx):
        # The one condition that answers False rather than raising: a referral's answer with no
        # recorded origin to return to. To the caller that is no transition, like any other.
        raise MachineError(f"{event} cannot happen from {from_state} without a referral origin")
    rule = RULES[event]
    if rule.effect is not None:
        rule.effect(case, data, from_state)
    return from_state


def mermaid() -> str:
    """The state diagram in Mermaid, drawn from the same machine every request goes through."""
    lines = ["stateDiagram-v2", f"    [*] --> {SCREENED}: screen"]
    for state in STATE_NAMES:
        lines.append(f"    {state}: {state} {STATE_LABELS[state]}")
    seen: set[tuple[str, str, str]] = set()
    for name, event in MACHINE.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                edge = (source, transition.dest, name)
                if edge not in seen:
                    seen.add(edge)
                    roles = ", ".join(RULES[name].roles)
                    lines.append(f"    {source} --> {transition.dest}: {name} ({roles})")
    for state in TERMINAL_STATES:
        lines.append(f"    {state} --> [*]")
    return "\n".join(lines) + "\n"
