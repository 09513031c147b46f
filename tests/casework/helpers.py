"""Finding demo-region entities by what they are, and walking a case along its workflow."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.models import Case, ExpertGroup, ExpertGroupPartner, Hospital, HospitalDesignation
from casework.services.cases import fire, screen
from tests.conftest import DEHONG, LONGCHUAN, YUNNAN, actor_for_unit, new_person
from workflows.policy_pack import packs

POLICY = "longchuan-2017"
PACK = packs()[POLICY]
OESOPHAGEAL = next(d.code for d in PACK.diseases.values() if d.name_zh == "食管癌")
OESOPHAGEAL_ICD = "C15.9"


def designated_hospital(session: Session, level: str, disease: str = OESOPHAGEAL, policy: str = POLICY) -> str:
    code = session.scalar(
        select(Hospital.code)
        .join(HospitalDesignation, HospitalDesignation.hospital_code == Hospital.code)
        .where(
            Hospital.level == level,
            HospitalDesignation.policy_code == policy,
            HospitalDesignation.disease_code == disease,
        )
        .order_by(Hospital.code)
    )
    assert code, f"demo region has no {level} hospital designated for {disease} under {policy}"
    return code


def expert_group(session: Session, region: str) -> str:
    return session.scalar(select(ExpertGroup.code).where(ExpertGroup.region_code == region))


def partner_of(session: Session, group: str) -> str:
    return session.scalar(select(ExpertGroupPartner.hospital_code).where(ExpertGroupPartner.group_code == group))


class Walker:
    """Moves one case through its workflow as the right actor for each step."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.coordinator = actor_for_unit(session, "county_coordinator", LONGCHUAN)
        self.county_hospital = designated_hospital(session, "county")
        self.city_group = expert_group(session, DEHONG)
        self.province_group = expert_group(session, YUNNAN)

    def hospital_actor(self, case: Case) -> Actor:
        return actor_for_unit(self.session, "hospital", case.hospital_code)

    def expert_actor(self, case: Case) -> Actor:
        return actor_for_unit(self.session, "expert", case.referral_group_code)

    def new_case(self, screened_days_ago: int = 20, **person: Any) -> Case:
        p = new_person(self.session, **person)
        view = screen(
            self.session,
            self.coordinator,
            person_id=p.id,
            disease_code=OESOPHAGEAL,
            source="health_check",
            screened_at=self.now - timedelta(days=screened_days_ago),
            now=self.now,
        )
        return self.session.get(Case, view["id"])  # the service answers with the view; tests read the row

    def fire(
        self, case: Case, event: str, data: dict | None = None, actor: Actor | None = None, reason: str | None = None
    ) -> Case:
        view = fire(
            self.session,
            case.id,
            event,
            actor or self.coordinator,
            data or {},
            case.version,
            reason=reason,
            now=self.now,
        )
        return self.session.get(Case, view["id"])

    def confirm(self, case: Case) -> Case:
        return self.fire(
            case,
            "confirm",
            {
                "diagnosis_code": OESOPHAGEAL_ICD,
                "diagnosed_by": self.county_hospital,
                "diagnosed_at": (self.now - timedelta(days=10)).isoformat(),
            },
        )

    def assign(self, case: Case) -> Case:
        return self.fire(case, "assign", {"hospital_id": self.county_hospital, "plan": "食管癌根治术，临床路径"})

    def admit(self, case: Case) -> Case:
        return self.fire(
            case, "admit", {"admitted_at": (self.now - timedelta(days=5)).isoformat()}, self.hospital_actor(case)
        )

    def discharge(self, case: Case) -> Case:
        return self.fire(
            case,
            "discharge",
            {"discharged_at": (self.now - timedelta(days=1)).isoformat(), "outcome": "improved"},
            self.hospital_actor(case),
        )

    def refer(self, case: Case) -> Case:
        return self.fire(case, "refer", {"expert_group_id": self.city_group, "summary": "术后复发，县级无法处置"})
