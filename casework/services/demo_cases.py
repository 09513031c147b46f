"""The living demo: about forty cases per seed region, made through the services with past dates.

Every case is screened, moved and billed by the same services a user calls, at simulated past
times, so each has a real history, real deadlines and, after one overdue scan at the real "now",
real alerts. A newcomer logging in as any demo user finds work waiting.

Running it twice adds nothing: a region whose county already has cases carrying the demo marker
is left alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import utcnow
from casework.errors import Conflict
from casework.id_number import make_id_number
from casework.models import AssistanceApplication, Case, ExpertGroup, HospitalDesignation, OrgUnit, User
from casework.scope import org_subtree
from casework.services.alerts import scan
from casework.services.assistance import fire_application, raise_application
from casework.services.cases import fire, screen
from casework.services.follow_ups import record_visit
from casework.services.persons import register_person
from casework.services.settlements import record_settlement
from casework.services.users import actor_for
from workflows import case_machine as m
from workflows.policy_pack import Disease, PolicyPack, packs

MARKER = "【演示】"  # starts the note of every demo case: how a second run recognises them
CASES_PER_REGION = 40

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = ["秀英", "桂英", "建国", "志强", "玉兰", "国华", "明", "伟", "芳", "军", "丽华", "德福", "春梅", "永红", "海燕",
         "文斌", "兰英", "金凤", "小平", "建华", "凤英", "国庆", "玉珍", "成"]  # fmt: skip


@dataclass
class _Region:
    pack: PolicyPack
    county: str
    villages: list[str]
    coordinator: Actor
    hospital: Actor
    expert: Actor | None
    diseases: list[str]
    higher_hospital: str | None  # where an expert group accepts a referral
    village_reviewer: Actor | None = None  # the assistance chain's village review (village doctor of a village)
    town_reviewer: Actor | None = None  # and its township review


# A scenario: the events after screening, each with the days that pass before it, then how long
# ago the last step happened ("fresh" or "overdue" for the state the case ends in).
Scenario = tuple[str, list[tuple[str, float]], str]

SCENARIOS: list[Scenario] = [
    *[("screened", [], "fresh")] * 3,
    *[("screened", [], "overdue")] * 2,
    *[("confirmed", [("confirm", 4)], "fresh")] * 2,
    *[("confirmed", [("confirm", 3)], "overdue")] * 2,
    *[("assigned", [("confirm", 3), ("assign", 2)], "fresh")] * 2,
    *[("assigned", [("confirm", 5), ("assign", 3)], "overdue")] * 2,
    *[("in_treatment", [("confirm", 2), ("assign", 2), ("admit", 4)], "fresh")] * 3,
    ("in_treatment", [("confirm", 2), ("assign", 3), ("admit", 5)], "overdue"),
    *[("treated", [("confirm", 3), ("assign", 2), ("admit", 5), ("discharge", 14), ("bill", 0.2)], "fresh")] * 2,
    *[("treated", [("confirm", 3), ("assign", 2), ("admit", 5), ("discharge", 12)], "overdue")] * 2,
    ("treated", [("confirm", 3), ("assign", 2), ("admit", 4), ("discharge", 16), ("bill_below_floor", 0.3)], "fresh"),
    *[
        (
            "follow_up",
            [
                ("confirm", 3),
                ("assign", 2),
                ("admit", 5),
                ("discharge", 13),
                ("bill", 0.2),
                ("start_follow_up", 3),
                ("visit", 30),
            ],
            "fresh",
        )
    ]
    * 3,
    ("follow_up", [("confirm", 3), ("assign", 2), ("admit", 5), ("discharge", 13), ("start_follow_up", 2)], "overdue"),
    *[("referred", [("confirm", 3), ("assign", 2), ("admit", 3), ("refer", 4)], "fresh")] * 2,
    *[("referred", [("confirm", 3), ("assign", 2), ("refer", 6)], "overdue")] * 2,
    ("in_treatment", [("confirm", 3), ("assign", 2), ("admit", 3), ("refer", 2), ("consult", 1)], "fresh"),
    ("assigned", [("confirm", 3), ("assign", 2), ("refer", 3), ("accept_referral", 2)], "fresh"),
    *[("excluded", [("exclude", 6)], "old")] * 2,
    *[
        (
            "closed",
            [
                ("confirm", 3),
                ("assign", 2),
                ("admit", 4),
                ("discharge", 15),
                ("bill", 0.2),
                ("start_follow_up", 2),
                ("visit", 60),
                ("close", 90),
            ],
            "old",
        )
    ]
    * 3,
    (
        "confirmed",
        [("confirm", 3), ("assign", 2), ("admit", 4), ("discharge", 14), ("bill", 0.2), ("close", 20), ("reopen", 200)],
        "fresh",
    ),
    ("withdrawn", [("confirm", 3), ("withdraw", 5)], "old"),
    ("deceased", [("confirm", 3), ("assign", 2), ("admit", 3), ("record_death", 9)], "old"),
]
assert len(SCENARIOS) == CASES_PER_REGION


def load_demo_cases(session: Session, now: datetime | None = None, only: tuple[str, ...] | None = None) -> int:
    """Create the demo cases of every seed region (or the packs in ``only``) that has none yet;
    then one overdue scan at ``now``."""
    now = now or utcnow()
    made = 0
    for pack in packs().values():
        if only is not None and pack.code not in only:
            continue
        region = _region(session, pack)
        if region is None or _has_demo_cases(session, region.county):
            continue
        rng = random.Random(pack.code)  # the same demo every time
        heavy = _heavy_bills(region)
        case_ids = {}
        for index, scenario in enumerate(SCENARIOS):
            case_ids[index] = _make_case(session, region, index, scenario, now, rng, heavy=index in heavy)
            made += 1
        if heavy:
            _review_applications(session, region, [case_ids[i] for i in heavy], now)
    if made:
        scan(session, now)
    return made


def _has_demo_cases(session: Session, county: str) -> bool:
    return bool(session.scalar(select(exists().where(Case.county_code == county, Case.note.startswith(MARKER)))))


def _demo_actor(session: Session, username: str) -> Actor | None:
    user = session.scalar(select(User).where(User.username == username))
    return actor_for(user) if user else None


def _region(session: Session, pack: PolicyPack) -> _Region | None:
    slug = pack.code.split("-")[0]
    coordinator = _demo_actor(session, f"{slug}.coordinator")
    hospital = _demo_actor(session, f"{slug}.hospital")
    if coordinator is None or hospital is None:
        return None
    county = coordinator.org_unit_code
    villages = list(
        session.scalars(
            select(OrgUnit.code)
            .where(OrgUnit.kind == "village", OrgUnit.code.in_(org_subtree(county)))
            .order_by(OrgUnit.code)
        )
    )
    designated = set(
        session.scalars(
            select(HospitalDesignation.disease_code).where(
                HospitalDesignation.hospital_code == hospital.org_unit_code,
                HospitalDesignation.policy_code == pack.code,
            )
        )
    )
    # Adults' diseases the county hospital treats: every scenario can then run at the county.
    diseases = [code for code, d in pack.diseases.items() if code in designated and d.age_max is None]
    expert = _demo_actor(session, f"{slug}.expert")
    partner = None
    if expert is not None:
        group = session.get(ExpertGroup, expert.org_unit_code)
        partner = session.scalar(
            select(HospitalDesignation.hospital_code)
            .join(OrgUnit, OrgUnit.code == HospitalDesignation.hospital_code)
            .where(HospitalDesignation.policy_code == pack.code, OrgUnit.parent_code == group.region_code)
            .order_by(HospitalDesignation.hospital_code)
        )
    if not villages or not diseases:
        return None
    return _Region(
        pack, county, villages, coordinator, hospital, expert, diseases, partner,
        _demo_actor(session, f"{slug}.village"), _demo_actor(session, f"{slug}.doctor"),
    )  # fmt: skip


def _heavy_bills(region: _Region) -> list[int]:
    """Where the pack has second assistance (Qidong, seed 004 二(三)): two billed cases in the demo reviewer's
    village get a bill whose own payment passes the year's 10,000 threshold, which raises an application."""
    if not region.pack.money.get("second_assistance") or region.village_reviewer is None:
        return []
    village = region.village_reviewer.org_unit_code
    billed = [
        index
        for index, (_, steps, _) in enumerate(SCENARIOS)
        if any(event == "bill" for event, _ in steps) and region.villages[index % len(region.villages)] == village
    ]
    return billed[:2]


def _review_applications(session: Session, region: _Region, case_ids: list[int], now: datetime) -> None:
    """Leave one application waiting at each step a demo user takes: the fund (the first case's second
    assistance, reviewed by village and township), the township (the second case's, reviewed by the village)
    and the village (charity the coordinator raised by hand on the first case)."""
    if region.town_reviewer is None or region.village_reviewer is None:
        return
    apps = {
        case_id: session.scalar(
            select(AssistanceApplication).where(
                AssistanceApplication.case_id == case_id, AssistanceApplication.kind == "second_assistance"
            )
        )
        for case_id in case_ids
    }
    village, town = region.village_reviewer, region.town_reviewer
    steps = [
        (case_ids[0], village, "village_approve", "经入户核实，因病支出大，家庭困难属实", 9),
        (case_ids[0], town, "town_approve", "同意村（居）审核意见，报基金审批", 4),
        (case_ids[1], village, "village_approve", "收费票据与出院小结齐全，情况属实", 2),
    ]
    for case_id, actor, event, opinion, days_ago in steps:
        app = apps[case_id]
        if app is not None:
            at = now - timedelta(days=days_ago)
            apps[case_id] = fire_application(session, actor, app.id, event, {"opinion": opinion}, app.version, now=at)
    if region.pack.money.get("charity_thresholds"):
        at = now - timedelta(days=1)
        body = {"kind": "charity", "year": at.year, "note": "因病支出大，本年度自付费用较高，申请慈善救助"}
        with suppress(Conflict):  # the year position raised it already
            raise_application(session, region.coordinator, case_ids[0], body, now=at)


def _deadline_days(region: _Region, state: str, disease: str) -> float:
    pack = region.pack
    if state == m.IN_TREATMENT:
        return pack.diseases[disease].expected_stay_days
    if state == m.FOLLOW_UP:
        return FOLLOW_UP_INTERVAL + pack.deadlines_days["follow_up_grace"]
    if state == m.TREATED:
        return pack.deadlines_days["settlement_after_discharge"]
    return pack.deadlines_days.get(state, 30)


FOLLOW_UP_INTERVAL = 30


def _make_case(
    session: Session,
    region: _Region,
    index: int,
    scenario: Scenario,
    now: datetime,
    rng: random.Random,
    heavy: bool = False,
) -> int:
    final_state, steps, freshness = scenario
    disease = region.diseases[index % len(region.diseases)]
    if region.expert is None and any(event in ("refer", "accept_referral") for event, _ in steps):
        final_state, steps, freshness = ("confirmed", [("confirm", 4)], "fresh")
    limit = _deadline_days(region, final_state, disease)
    if freshness == "overdue":
        last_ago = limit + rng.uniform(1.5, 6)
    elif freshness == "fresh":
        last_ago = rng.uniform(0.1, max(0.3, limit / 3))
    else:
        last_ago = rng.uniform(20, 120)
    # Screening lies far enough back for every step to fit before the last one.
    start = now - timedelta(days=last_ago + sum(gap for _, gap in steps) + rng.uniform(0, 3))

    person_id = _register(session, region, index, start, rng)
    source = ("health_check", "family_doctor_visit", "hospital_diagnosis", "registry_match")[index % 4]
    note = f"{MARKER}{_SCENARIO_NOTES.get(final_state, '')}"
    case = screen(
        session,
        region.coordinator,
        person_id=person_id,
        disease_code=disease,
        source=source,
        screened_at=start,
        note=note,
        now=start,
    )
    case_id = case["id"]
    walk = _Walk(session, region, case_id, disease, start)
    walk.heavy = heavy
    for event, gap in steps:
        walk.at += timedelta(days=gap, hours=rng.uniform(0, 3))
        walk.step(event)
    return case_id


_SCENARIO_NOTES = {
    m.SCREENED: "入户筛查发现",
    m.CONFIRMED: "待分配定点医院",
    m.REFERRED: "县级医院申请上转",
    m.CLOSED: "救治完成",
}


def _register(session: Session, region: _Region, index: int, screened_at: datetime, rng: random.Random) -> int:
    born = date(1950 + rng.randrange(0, 25), rng.randrange(1, 13), rng.randrange(1, 29))
    name = SURNAMES[rng.randrange(len(SURNAMES))] + GIVEN[rng.randrange(len(GIVEN))]
    # The sequence makes the number unique per region; its parity gives the sex.
    id_number = make_id_number(region.county, born, 100 + index * 7 % 900)
    # Recognised within the last year and a half, in a category the pack still covers on the screening day
    # (Qidong's two years after exit; Yancheng's switch to the low-income population).
    since = screened_at.date() - timedelta(days=60 + (index * 11) % 480)
    covered = [
        c for c in region.pack.eligible_categories if region.pack.covers(c, on=screened_at.date(), category_since=since)
    ]
    person = register_person(
        session,
        Actor.system(),
        id_number=id_number,
        name=name,
        village_code=region.villages[index % len(region.villages)],
        category=covered[index % len(covered)],
        category_since=since,
    )
    return person["id"]


class _Walk:
    """One case moving along its scenario at simulated times, as the user each step belongs to."""

    def __init__(self, session: Session, region: _Region, case_id: int, disease: str, at: datetime) -> None:
        self.session = session
        self.region = region
        self.case_id = case_id
        self.disease = disease
        self.at = at
        self.version = 1
        self.hospital = region.hospital
        self.admitted_at: datetime | None = None
        self.discharged_at: datetime | None = None
        self.heavy = False  # a bill leaving a large own payment (see _heavy_bills)

    def _fire(self, actor: Actor, event: str, data: dict[str, Any], reason: str | None = None) -> None:
        self.version = fire(self.session, self.case_id, event, actor, data, self.version, reason, now=self.at)[
            "version"
        ]

    def step(self, event: str) -> None:
        handler: Callable[[], None] = getattr(self, f"_{event}")
        handler()

    def _confirm(self) -> None:
        disease = self.region.pack.diseases[self.disease]
        data = {"diagnosis_code": disease.icd10[0], "diagnosed_by": self.hospital.org_unit_code}
        data.update(_confirm_evidence(disease, disease.icd10[0]))
        data["diagnosed_at"] = (self.at - timedelta(hours=6)).isoformat()
        self._fire(self.region.coordinator, "confirm", data)

    def _assign(self) -> None:
        plan = "住院手术治疗，术后按方案随访" if self.disease.endswith("cancer") else "按临床路径住院治疗"
        self._fire(self.region.coordinator, "assign", {"hospital_id": self.hospital.org_unit_code, "plan": plan})

    def _admit(self) -> None:
        self.admitted_at = self.at - timedelta(hours=2)
        self._fire(self.hospital, "admit", {"admitted_at": self.admitted_at.isoformat()})

    def _discharge(self) -> None:
        self.discharged_at = self.at - timedelta(hours=1)
        data = {"discharged_at": self.discharged_at.isoformat(), "outcome": "improved"}
        self._fire(self.hospital, "discharge", data)

    def _bill(self, below_floor: bool = False) -> None:
        total = Decimal(20000 + (self.case_id * 7919) % 40000)
        shares = ("0.40", "0.10", "0.05", "0.02") if below_floor else ("0.86", "0.04", "0.045", "0.005")
        if self.heavy:
            # 80,000-120,000 with 15% left to the family (12,000-18,000): past Qidong's 10,000 for second
            # assistance, while the 25% of medical assistance still meets its 70% of the in-policy own payment.
            total += 60000
            shares = ("0.50", "0.10", "0.25", "0")
        in_policy = (total * Decimal("0.95")).quantize(Decimal("1"))
        layers = {
            name: (total * Decimal(share)).quantize(Decimal("0.01"))
            for name, share in zip(
                ("basic_insurance", "critical_illness_insurance", "medical_assistance", "government_backstop"),
                shares,
                strict=True,
            )
        }
        own = total - sum(layers.values())
        record_settlement(
            self.session,
            self.hospital,
            self.case_id,
            kind="inpatient",
            admitted_at=self.admitted_at,
            discharged_at=self.discharged_at or self.at,
            total=total,
            in_policy=in_policy,
            own_payment=own,
            referral_compliant=True,
            special_treatment=False,
            now=self.at,
            **layers,
        )

    def _bill_below_floor(self) -> None:
        self._bill(below_floor=True)

    def _start_follow_up(self) -> None:
        self._fire(self.region.coordinator, "start_follow_up", {"interval_days": FOLLOW_UP_INTERVAL})

    def _visit(self) -> None:
        record_visit(
            self.session,
            self.region.coordinator,
            self.case_id,
            visited_at=self.at - timedelta(hours=1),
            findings="病情稳定，按时服药，饮食正常",
            now=self.at,
        )
        self.version += 1  # a visit moves the deadline, which the case's history records as an entry

    def _refer(self) -> None:
        summary = "县级医院诊疗能力不足，申请市级专家组会诊"
        data = {"expert_group_id": self.region.expert.org_unit_code, "summary": summary}
        self._fire(self.region.coordinator, "refer", data)

    def _consult(self) -> None:
        self._fire(self.region.expert, "consult", {"opinion": "维持县级医院治疗方案，调整用药剂量，两周后复查"})

    def _accept_referral(self) -> None:
        if self.region.higher_hospital is None:
            self._consult()
            return
        data = {"hospital_id": self.region.higher_hospital, "plan": "转入市级定点医院手术治疗"}
        self._fire(self.region.expert, "accept_referral", data)

    def _exclude(self) -> None:
        self._fire(self.region.coordinator, "exclude", {}, "复核后诊断不符合救治病种")

    def _close(self) -> None:
        self._fire(self.region.coordinator, "close", {}, "救治完成，随访结束")

    def _reopen(self) -> None:
        self._fire(self.region.coordinator, "reopen", {}, "复查发现复发，重新纳入救治")

    def _withdraw(self) -> None:
        self._fire(self.region.coordinator, "withdraw", {}, "患者本人要求退出，已签字确认")

    def _record_death(self) -> None:
        self._fire(self.region.coordinator, "record_death", {"died_at": (self.at - timedelta(hours=5)).isoformat()})


def _confirm_evidence(disease: Disease, code: str) -> dict[str, Any]:
    """What the confirm guard wants beside the code, as a real record would carry it."""
    evidence: dict[str, Any] = {}
    rule = disease.secondary_needed(code)
    if rule is not None:
        evidence["secondary_codes"] = [rule.any_of[0]]
    if disease.lesions_min is not None:
        evidence["lesions"] = list(disease.icd10[: disease.lesions_min])
    if disease.resistance is not None:
        evidence["drug_resistance"] = {"method": "xpert_mtb_rif", "resistant_to": ["rifampicin", "isoniazid"]}
    return evidence
