"""County figures for coordinators and supervisors: cases by state, overdue, money against floors."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Float, case, func, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import raw, utcnow
from casework.models import Case, Hospital, OrgUnit, Settlement
from casework.scope import case_scope
from casework.services.queries import overdue_cases
from workflows.money import IN_COUNTY_LEVELS
from workflows.policy_pack import packs


def county_stats(session: Session, actor: Actor, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per county in the actor's scope; three grouped queries, whatever the number of cases."""
    now = now or utcnow()
    scope = case_scope(actor)
    rows: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "cases_by_state": {},
            "overdue": 0,
            "settlements": 0,
            "mean_actual_ratio": None,
            "shortfalls": {"count": 0, "total": Decimal("0.00")},
            "county_inpatient_actual_ratio": None,
        }
    )
    by_state = select(Case.county_code, Case.state, func.count()).where(scope).group_by(Case.county_code, Case.state)
    for county, state, count in session.execute(by_state):
        rows[county]["cases_by_state"][state] = count
    overdue = overdue_cases(now, Case.county_code, func.count()).where(scope).group_by(Case.county_code)
    for county, count in session.execute(overdue):
        rows[county]["overdue"] = count
    money = (
        select(
            Case.county_code,
            func.count(Settlement.id),
            func.avg(
                raw(case((Settlement.kind == "inpatient", Settlement.ratio_on_in_policy), else_=None)), type_=Float
            ),
            func.sum(case((Settlement.below_floor, 1), else_=0)),
            func.coalesce(func.sum(raw(case((Settlement.below_floor, Settlement.shortfall), else_=0))), 0),
        )
        .join(Case, Case.id == Settlement.case_id)
        .where(scope)
        .group_by(Case.county_code)
    )
    for county, count, mean_ratio, below, shortfall in session.execute(money):
        row = rows[county]
        row["settlements"] = count
        # Stored in 1/10,000 and fen (ScaledDecimal): scale the aggregates the same way.
        if mean_ratio is not None:
            row["mean_actual_ratio"] = (Decimal(str(mean_ratio)) / 10000).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        row["shortfalls"] = {"count": int(below or 0), "total": Decimal(int(shortfall)).scaleb(-2)}
    _county_ratio(session, scope, rows)
    names = dict(session.execute(select(OrgUnit.code, OrgUnit.name).where(OrgUnit.code.in_(list(rows)))).all())
    return [{"county": code, "county_name": names.get(code, ""), **rows[code]} for code in sorted(rows)]


def _county_ratio(session: Session, scope: Any, rows: dict[str, dict[str, Any]]) -> None:
    """县域内住院实际报销比例 per county against the pack's county-wide floor (seed 001 第2条 "确保县域内住院实际
    报销比例不低于70%"; 附件: "对达不到70%的进行筛查"): reimbursed over total cost of the county's inpatient stays in
    hospitals of the county, one grouped query."""
    in_county = (
        select(
            Case.county_code,
            Case.policy_code,
            func.coalesce(func.sum(raw(Settlement.total)), 0),
            func.coalesce(func.sum(raw(Settlement.own_payment)), 0),
        )
        .join(Case, Case.id == Settlement.case_id)
        .join(Hospital, Hospital.code == Settlement.hospital_code)
        .where(
            scope,
            Settlement.kind == "inpatient",
            # The SQL of workflows.money.outside_county, negated.
            Hospital.level.in_(IN_COUNTY_LEVELS),
            Hospital.region_code.startswith(Case.county_code),
        )
        .group_by(Case.county_code, Case.policy_code)
    )
    totals: dict[str, list[Any]] = {}
    for county, policy, total, own in session.execute(in_county):
        entry = totals.setdefault(county, [0, 0, None])
        entry[0] += int(total)
        entry[1] += int(own)
        pack = packs().get(policy)
        floor = pack.money.get("county_inpatient_actual_ratio_min") if pack else None
        if floor is not None:
            entry[2] = floor if entry[2] is None else max(entry[2], floor)
    for county, (total, own, floor) in totals.items():
        if total == 0:
            continue
        actual = (Decimal(total - own) / Decimal(total)).quantize(Decimal("0.0001"), ROUND_HALF_UP)
        rows[county]["county_inpatient_actual_ratio"] = {
            "actual": actual,
            "floor": floor,
            "met": None if floor is None else actual >= floor,
        }
