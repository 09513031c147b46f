"""The assistance review chain: a second, smaller workflow on the same machinery as the case.

An application for second assistance (二次救助) or charity aid (慈善救助) on a case is raised (by the
county coordinator, or automatically when the year position says it is due), reviewed by the village
(村/居), then by the township (镇/街道), approved or refused by the fund (慈善基金会 / 民政), and recorded
as paid with the amount (seed 004 二(三)/二(四): "凭出院小结、收费票据…填写申请表，经村（居）、镇（园区、
街道）审核确认，由市慈善基金会、红十字会视情予以救助").

:data:`RULES` is the one definition: states, events, who may fire them (a role of the org unit
responsible for the step) and what each carries; :data:`MACHINE` is built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from marshmallow import RAISE, Schema, fields, post_dump, validate
from transitions import Machine

RAISED = "raised"  # 待村（居）审核
VILLAGE_REVIEWED = "village_reviewed"  # 待镇（街道）审核
TOWN_REVIEWED = "town_reviewed"  # 待基金审批
APPROVED = "approved"  # 已批准, 待发放
REFUSED = "refused"
PAID = "paid"

OPEN_STATES = (RAISED, VILLAGE_REVIEWED, TOWN_REVIEWED, APPROVED)
TERMINAL_STATES = (REFUSED, PAID)
# Before the fund's decision: an application the year position raised still follows the year's bills.
UNDECIDED_STATES = (RAISED, VILLAGE_REVIEWED, TOWN_REVIEWED)
STATE_LABELS = {
    RAISED: "待村（居）审核",
    VILLAGE_REVIEWED: "待镇（街道）审核",
    TOWN_REVIEWED: "待基金审批",
    APPROVED: "已批准待发放",
    REFUSED: "未予救助",
    PAID: "已发放",
}
# second_assistance pays as medical assistance (民政 二次救助); charity as the charity layer.
KINDS = {"second_assistance": "medical_assistance", "charity": "charity"}
FUNDS = ("civil_affairs", "charity_foundation", "red_cross")
RAISE_EVENT = "raise"
# Not a step of the chain: the system's entry when a later bill of the year changes what is due.
REVISE_EVENT = "revise_amount"

# Whose org unit acts in each open state: the case's village, its township, its county.
VILLAGE, TOWNSHIP, COUNTY = "village", "township", "county"


class ApplicationLike(Protocol):
    state: str
    village_code: str
    township_code: str
    county_code: str
    amount_approved: Decimal | None


class ActorLike(Protocol):
    role: str
    org_unit_code: str


class GuardFailed(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Data(Schema):
    class Meta:
        unknown = RAISE

    @post_dump
    def _drop_none(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v is not None}


_amount = dict(places=2, as_string=True, validate=validate.Range(min=Decimal("0.01"), max=Decimal("99999999.99")))


class RaiseData(_Data):
    kind = fields.String(required=True, validate=validate.OneOf(tuple(KINDS)))
    year = fields.Integer(required=True, validate=validate.Range(2000, 2100))
    amount_requested = fields.Decimal(load_default=None, **_amount)
    note = fields.String(load_default=None, validate=validate.Length(min=1, max=4000))


class ReviewData(_Data):
    opinion = fields.String(required=True, validate=validate.Length(min=1, max=4000))


class ApproveData(_Data):
    fund = fields.String(required=True, validate=validate.OneOf(FUNDS))
    amount_approved = fields.Decimal(required=True, **_amount)


class RefuseData(_Data):
    fund = fields.String(load_default=None, validate=validate.OneOf(FUNDS))


class PayData(_Data):
    amount_paid = fields.Decimal(required=True, **_amount)
    paid_on = fields.Date(required=True)


def _not_above_approved(app: ApplicationLike, data: Mapping[str, Any]) -> None:
    if app.amount_approved is not None and data["amount_paid"] > app.amount_approved:
        raise GuardFailed("amount_paid", f"exceeds the approved {app.amount_approved}")


@dataclass(frozen=True)
class Rule:
    name: str
    label: str
    sources: tuple[str, ...]
    dest: str
    role: str
    unit: str  # which of the application's org units the actor must belong to
    data_schema: type[Schema]
    needs_reason: bool = False
    guard: Any = None


_DOCTOR, _COORDINATOR = "village_doctor", "county_coordinator"
# The village review is a village doctor of the person's village; the town review a user of the
# township's org unit (a village doctor account at a township: 乡镇 health staff); the fund's decision
# and the payment the county coordinator, who keeps the county's 民政 / charity fund ledger.
RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("village_approve", "村（居）审核通过", (RAISED,), VILLAGE_REVIEWED, _DOCTOR, VILLAGE, ReviewData),
        Rule("village_reject", "村（居）审核不通过", (RAISED,), REFUSED, _DOCTOR, VILLAGE, ReviewData, True),
        Rule("town_approve", "镇（街道）审核通过", (VILLAGE_REVIEWED,), TOWN_REVIEWED, _DOCTOR, TOWNSHIP, ReviewData),
        Rule("town_reject", "镇（街道）审核不通过", (VILLAGE_REVIEWED,), REFUSED, _DOCTOR, TOWNSHIP, ReviewData, True),
        Rule("approve", "基金批准救助", (TOWN_REVIEWED,), APPROVED, _COORDINATOR, COUNTY, ApproveData),
        Rule("refuse", "基金不予救助", (TOWN_REVIEWED,), REFUSED, _COORDINATOR, COUNTY, RefuseData, True),
        Rule("pay", "救助金发放", (APPROVED,), PAID, _COORDINATOR, COUNTY, PayData, guard=_not_above_approved),
    )
}
# Who raises by hand: the county coordinator of the case's county (the scheduler raises as the system).
RAISER = ("county_coordinator", COUNTY)
# The org unit told when a step is overdue: whoever must act in it.
ACTING_UNIT = {RAISED: VILLAGE, VILLAGE_REVIEWED: TOWNSHIP, TOWN_REVIEWED: COUNTY, APPROVED: COUNTY}
OVERDUE_RULES = {state: f"assistance_{state}" for state in OPEN_STATES}


def unit_of(app: ApplicationLike, unit: str) -> str:
    return {VILLAGE: app.village_code, TOWNSHIP: app.township_code, COUNTY: app.county_code}[unit]


def actor_may(rule: Rule, app: ApplicationLike, actor: ActorLike) -> bool:
    return actor.role == rule.role and actor.org_unit_code == unit_of(app, rule.unit)


def can_happen(event: str, app: ApplicationLike) -> bool:
    rule = RULES.get(event)
    return rule is not None and app.state in rule.sources


def allowed_events(app: ApplicationLike, actor: ActorLike | None = None) -> list[str]:
    return [
        name
        for name, rule in RULES.items()
        if can_happen(name, app) and (actor is None or actor_may(rule, app, actor))
    ]


MACHINE = Machine(
    model=None,
    states=list(OPEN_STATES + TERMINAL_STATES),
    initial=RAISED,
    transitions=[
        {"trigger": rule.name, "source": source, "dest": rule.dest}
        for rule in RULES.values()
        for source in rule.sources
    ],
    auto_transitions=False,
    send_event=True,
)


def trigger(app: Any, event: str, data: Mapping[str, Any]) -> str:
    """Move ``app`` by ``event``; guards first, so a refused event leaves it untouched. Returns the old state."""
    rule = RULES[event]
    if rule.guard is not None:
        rule.guard(app, data)
    from_state = app.state
    MACHINE.events[event].trigger(app)
    return from_state
