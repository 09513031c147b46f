"""Recording a stay's bill (一站式结算) and judging it against the case's policy pack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import raw, utcnow, write_transaction
from casework.errors import Conflict, Forbidden, ValidationFailed
from casework.models import Case, CaseEvent, Hospital, Settlement
from casework.services.alerts import resolve_for_case
from casework.services.assistance import paid_in_year, raise_if_due
from casework.services.cases import get_case, lock_case
from casework.services.eligibility import category_entry_on
from workflows.case_machine import TERMINAL_STATES, TREATED
from workflows.money import (
    LAYERS,
    Assessment,
    Bill,
    YearPosition,
    YearToDate,
    assess,
    bill_errors,
    expected_layers,
    outside_county,
)
from workflows.money import year_position as position_for_year
from workflows.policy_pack import PolicyPack, packs

CHINA = ZoneInfo("Asia/Shanghai")  # a stay belongs to the calendar year in which it ended, in China


@dataclass(frozen=True)
class SettlementView:
    settlement: Settlement
    assessment: Assessment
    expected: dict[str, Decimal] | None
    year: YearPosition


def _bill(row: Settlement) -> Bill:
    return Bill(
        row.kind,
        row.total,
        row.in_policy,
        {layer: getattr(row, layer) for layer in LAYERS},
        row.own_payment,
        row.referral_compliant,
        row.special_treatment,
    )


@dataclass(frozen=True)
class _Context:
    pack: PolicyPack
    level: str
    grade: str | None
    higher_floor: bool
    category: str | None  # None: the pack no longer covers the person on the day of the stay
    out_of_county: bool  # the hospital lies outside the case's county (县域外)


def _category_for_stay(session: Session, case: Case, day: date) -> tuple[str, date | None]:
    """The person's eligibility category on the day of the stay, and since when (the category
    history); a stay before any recorded category falls back on the one the case was screened with."""
    return category_entry_on(session, case.person_id, day) or (case.category, None)


def _context(session: Session, case: Case, hospital_code: str, day: date) -> _Context:
    pack = packs()[case.policy_code]
    level, grade, region = session.execute(
        select(Hospital.level, Hospital.grade, Hospital.region_code).where(Hospital.code == hospital_code)
    ).one()
    category, since = _category_for_stay(session, case, day)
    # What the category counts as on the day of the stay: a support period may have run out since then.
    effective = pack.category_on(category, on=day, category_since=since)
    higher = pack.disease(case.disease_code).higher_floor
    return _Context(pack, level, grade, higher, effective, outside_county(level, region, case.county_code))


def _assess(bill: Bill, case: Case, ctx: _Context) -> Assessment:
    return assess(
        bill,
        ctx.pack,
        category=ctx.category,
        hospital_level=ctx.level,
        higher_floor=ctx.higher_floor,
        hospital_grade=ctx.grade,
        disease_code=case.disease_code,
        out_of_county=ctx.out_of_county,
    )


def record_settlement(
    session: Session,
    actor: Actor,
    case_id: int,
    *,
    kind: str,
    discharged_at: datetime,
    total: Decimal,
    in_policy: Decimal,
    own_payment: Decimal,
    referral_compliant: bool,
    special_treatment: bool,
    admitted_at: datetime | None = None,
    now: datetime | None = None,
    **layers: Decimal,
) -> SettlementView:
    now = now or utcnow()
    if actor.role != "hospital":
        raise Forbidden("designated hospitals record settlements")
    layers = {layer: layers.get(layer, Decimal("0.00")) for layer in LAYERS}
    bill = Bill(kind, total, in_policy, layers, own_payment, referral_compliant, special_treatment)
    errors = bill_errors(bill)
    if discharged_at > now:
        errors["discharged_at"] = ["lies in the future"]
    if admitted_at is not None and admitted_at > discharged_at:
        errors["admitted_at"] = ["lies after discharge"]
    if errors:
        raise ValidationFailed(errors, "the bill does not add up")
    with write_transaction(session):
        case = lock_case(session, case_id, actor)  # scope: hospitals see the cases they hold or held
        if case.hospital_code != actor.org_unit_code:
            raise Forbidden("only the hospital now treating the patient records bills on the case")
        if case.state in TERMINAL_STATES:
            raise Conflict(f"the case is {case.state}: no more bills")
        # Outpatient bills too: the special-treatment programme pays for care of an admitted case.
        admitted = session.scalar(select(exists().where(CaseEvent.case_id == case.id, CaseEvent.event == "admit")))
        if not admitted:
            raise Conflict("the case has no admission to settle")
        context = _context(session, case, actor.org_unit_code, discharged_at.astimezone(CHINA).date())
        result = _assess(bill, case, context)
        row = Settlement(
            case_id=case.id,
            person_id=case.person_id,
            hospital_code=actor.org_unit_code,
            kind=kind,
            admitted_at=admitted_at,
            discharged_at=discharged_at,
            year=discharged_at.astimezone(CHINA).year,
            referral_compliant=referral_compliant,
            special_treatment=special_treatment,
            total=total,
            in_policy=in_policy,
            own_payment=own_payment,
            ratio_on_total=result.ratio_on_total,
            ratio_on_in_policy=result.ratio_on_in_policy,
            below_floor=result.below_floor,
            shortfall=result.shortfall,
            recorded_by=actor.username,
            recorded_at=now,
            **layers,
        )
        session.add(row)
        if case.state == TREATED:
            # The discharged-without-settlement deadline is met: nothing is due in this step any more.
            case.due_at = None
            resolve_for_case(session, case.id, now)
        session.flush()
        view = _view(session, case, row, context, result)
        # Seed 004 二(三)/二(四): second assistance or charity due by the year's own payment starts its review.
        raise_if_due(session, case, view.year, now)
    return view


def list_settlements(session: Session, actor: Actor, case_id: int) -> list[SettlementView]:
    case = get_case(session, actor, case_id)
    rows: Sequence[Settlement] = session.scalars(
        select(Settlement).where(Settlement.case_id == case.id).order_by(Settlement.id)
    ).all()
    return [_view(session, case, row) for row in rows]


def _view(
    session: Session,
    case: Case,
    row: Settlement,
    context: _Context | None = None,
    assessment: Assessment | None = None,
) -> SettlementView:
    """The bill with its judgement; recording passes what it already computed instead of redoing it."""
    ctx = context or _context(session, case, row.hospital_code, row.discharged_at.astimezone(CHINA).date())
    bill = _bill(row)
    ytd = _year_to_date(session, row)
    expected = expected_layers(
        bill,
        ctx.pack,
        year=row.year,
        hospital_level=ctx.level,
        higher_floor=ctx.higher_floor,
        ytd=ytd,
        hospital_grade=ctx.grade,
        out_of_county=ctx.out_of_county,
    )
    result = assessment or _assess(bill, case, ctx)
    inpatient_own = ytd.inpatient_own_payment + (row.own_payment if row.kind == "inpatient" else Decimal("0"))
    year = position_for_year(
        ctx.pack,
        row.year,
        ytd.own_payment + row.own_payment,
        ctx.category,
        inpatient_own_to_date=inpatient_own,
        assistance_paid=paid_in_year(session, row.person_id, row.year),
    )
    return SettlementView(row, result, expected, year)


def _year_to_date(session: Session, row: Settlement) -> YearToDate:
    """The person's earlier settlements of the same year (any case): yearly bands, caps, thresholds."""
    earlier = and_(Settlement.person_id == row.person_id, Settlement.year == row.year, Settlement.id < row.id)
    chain_base = case(
        (
            and_(Settlement.kind == "inpatient", Settlement.referral_compliant, ~Settlement.special_treatment),
            raw(Settlement.in_policy) - raw(Settlement.basic_insurance),
        ),
        else_=0,
    )
    inpatient_own = case((Settlement.kind == "inpatient", raw(Settlement.own_payment)), else_=0)
    sums = session.execute(
        select(
            func.coalesce(func.sum(chain_base), 0),
            func.coalesce(func.sum(raw(Settlement.medical_assistance)), 0),
            func.coalesce(func.sum(raw(Settlement.own_payment)), 0),
            func.coalesce(func.sum(raw(Settlement.critical_illness_insurance)), 0),
            func.coalesce(func.sum(inpatient_own), 0),
        ).where(earlier)
    ).one()
    # Raw sums are in the stored unit (fen): scale them like the column type does.
    return YearToDate(*(Decimal(int(v)).scaleb(-2) for v in sums))
