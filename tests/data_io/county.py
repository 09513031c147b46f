"""A county's worth of cases in every state, built through the real services (so the ledger is
exported from histories the API could have written). Steps happen at midnight, China time: the
ledger carries days, and a re-import puts each step at the start of its day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from casework.id_number import parse_id_number
from casework.models import Case
from casework.services.cases import fire, screen
from casework.services.follow_ups import record_visit
from casework.services.settlements import record_settlement
from tests.casework.helpers import OESOPHAGEAL, OESOPHAGEAL_ICD, designated_hospital, expert_group, partner_of
from tests.conftest import DEHONG, LONGCHUAN, YUNNAN, actor_for_unit, new_person

CHINA = ZoneInfo("Asia/Shanghai")
GASTRIC = "gastric_cancer"


def day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=CHINA)


class CountyBuilder:
    def __init__(self, session: Session, start: date) -> None:
        self.session = session
        self.start = start
        self.coordinator = actor_for_unit(session, "county_coordinator", LONGCHUAN)
        self.hospital = designated_hospital(session, "county")
        self.city_group = expert_group(session, DEHONG)
        self.province_group = expert_group(session, YUNNAN)
        self.count = 0

    def at(self, offset: int) -> datetime:
        return day(self.start + timedelta(days=offset))

    def case(self, disease: str = OESOPHAGEAL, name: str = "岩温", category: str = "poor_not_exited") -> Case:
        self.count += 1
        person = new_person(self.session, name=name, category=category, born=date(1960 + self.count, 3, 14))
        person.sex = parse_id_number(person.id_number).sex  # the shared fixture says "M" for everyone
        self.session.commit()
        view = screen(
            self.session,
            self.coordinator,
            person_id=person.id,
            disease_code=disease,
            source="health_check" if self.count % 2 else "family_doctor_visit",
            screened_at=self.at(0),
            now=self.at(0),
        )
        return self.session.get(Case, view["id"])  # the row: the builder reads its workflow fields

    def fire(self, case: Case, event: str, offset: int, data: dict | None = None, actor=None, reason=None) -> Case:
        fire(
            self.session,
            case.id,
            event,
            actor or self.coordinator,
            data or {},
            case.version,
            reason,
            now=self.at(offset),
        )
        return self.session.get(Case, case.id)

    def hospital_actor(self):
        return actor_for_unit(self.session, "hospital", self.hospital)

    def confirm(self, case: Case, offset: int = 2, icd: str = OESOPHAGEAL_ICD) -> Case:
        data = {"diagnosis_code": icd, "diagnosed_by": self.hospital, "diagnosed_at": self.at(offset).isoformat()}
        return self.fire(case, "confirm", offset, data)

    def assign(self, case: Case, offset: int = 4) -> Case:
        return self.fire(case, "assign", offset, {"hospital_id": self.hospital, "plan": "手术治疗，临床路径"})

    def admit(self, case: Case, offset: int = 6) -> Case:
        return self.fire(case, "admit", offset, {"admitted_at": self.at(offset).isoformat()}, self.hospital_actor())

    def discharge(self, case: Case, offset: int = 20) -> Case:
        data = {"discharged_at": self.at(offset).isoformat(), "outcome": "improved"}
        return self.fire(case, "discharge", offset, data, self.hospital_actor())

    def settle(self, case: Case, offset: int = 21, total: str = "52000.00") -> None:
        total_d = Decimal(total)
        layers = {
            "basic_insurance": (total_d * Decimal("0.60")).quantize(Decimal("0.01")),
            "critical_illness_insurance": (total_d * Decimal("0.15")).quantize(Decimal("0.01")),
            "medical_assistance": (total_d * Decimal("0.10")).quantize(Decimal("0.01")),
            "government_backstop": (total_d * Decimal("0.05")).quantize(Decimal("0.01")),
            "charity": Decimal("0.00"),
            "other": Decimal("0.00"),
        }
        own = total_d - sum(layers.values())
        record_settlement(
            self.session,
            self.hospital_actor(),
            case.id,
            kind="inpatient",
            discharged_at=self.at(offset - 1),
            total=total_d,
            in_policy=(total_d * Decimal("0.9")).quantize(Decimal("0.01")),
            own_payment=own,
            referral_compliant=True,
            special_treatment=False,
            admitted_at=self.at(6),
            now=self.at(offset),
            **layers,
        )

    def treated(self, case: Case) -> Case:
        case = self.discharge(self.admit(self.assign(self.confirm(case))))
        self.settle(case)
        return case

    def build(self) -> dict[str, int]:
        """One case per shape a ledger shows; returns their ids by shape."""
        made: dict[str, Case] = {}
        made["screened"] = self.case()
        made["confirmed"] = self.confirm(self.case(GASTRIC, "李春梅"), icd="C16.9")
        made["assigned"] = self.assign(self.confirm(self.case()))
        made["in_treatment"] = self.admit(self.assign(self.confirm(self.case())))
        made["treated"] = self.treated(self.case(name="排玉香"))
        follow = self.fire(self.treated(self.case()), "start_follow_up", 22, {"interval_days": 30})
        record_visit(
            self.session,
            self.hospital_actor(),
            follow.id,
            visited_at=self.at(40),
            findings="恢复良好",
            now=self.at(40),
        )
        made["follow_up"] = follow
        closing = self.fire(self.treated(self.case()), "start_follow_up", 22)
        made["closed"] = self.fire(closing, "close", 60, reason="随访期满，病情稳定")
        made["excluded"] = self.fire(self.confirm(self.case()), "exclude", 5, reason="复核诊断不符")
        made["withdrawn"] = self.fire(self.case(), "withdraw", 3, reason="本人放弃")
        referred = self.fire(
            self.assign(self.confirm(self.case())),
            "refer",
            8,
            {"expert_group_id": self.city_group, "summary": "县级无法处置"},
        )
        expert = actor_for_unit(self.session, "expert", self.city_group)
        made["referred"] = self.fire(
            referred, "escalate", 9, {"expert_group_id": self.province_group, "summary": "需省级会诊"}, expert
        )
        died = self.admit(self.assign(self.confirm(self.case())))
        made["deceased"] = self.fire(died, "record_death", 12, {"died_at": self.at(12).isoformat()})
        return {shape: case.id for shape, case in made.items()}

    def histories(self) -> dict[str, int]:
        """Cases whose dated columns cannot tell their whole history (the ledger's 办理过程 does):
        referrals answered by a consultation, a refusal and an acceptance elsewhere, and a case
        closed, reopened on relapse and assigned again."""
        made: dict[str, Case] = {}
        city = actor_for_unit(self.session, "expert", self.city_group)
        province = actor_for_unit(self.session, "expert", self.province_group)
        refer = {"expert_group_id": self.city_group, "summary": "县级无法处置"}

        consulted = self.fire(self.admit(self.assign(self.confirm(self.case(name="刀玉兰")))), "refer", 8, refer)
        consulted = self.fire(consulted, "consult", 10, {"opinion": "维持县级治疗方案"}, city)
        made["consulted"] = self.discharge(consulted)
        self.settle(made["consulted"])

        declined = self.fire(self.assign(self.confirm(self.case(name="线光荣"))), "refer", 8, refer)
        upward = {"expert_group_id": self.province_group, "summary": "需省级会诊"}
        declined = self.fire(declined, "escalate", 9, upward, city)
        declined = self.fire(declined, "decline_referral", 11, actor=province, reason="县级可处置")
        made["declined"] = self.admit(declined, 14)

        accepted = self.fire(self.assign(self.confirm(self.case(name="孟兴"))), "refer", 8, refer)
        partner = partner_of(self.session, self.city_group)
        accepted = self.fire(accepted, "accept_referral", 10, {"hospital_id": partner, "plan": "州级手术"}, city)
        at_partner = actor_for_unit(self.session, "hospital", partner)
        made["accepted"] = self.fire(accepted, "admit", 12, {"admitted_at": self.at(12).isoformat()}, at_partner)

        reopened = self.fire(self.treated(self.case(name="闷三")), "start_follow_up", 22)
        reopened = self.fire(reopened, "close", 60, reason="随访期满")
        reopened = self.fire(reopened, "reopen", 70, reason="复发，重新救治")
        made["reopened"] = self.assign(reopened, 72)
        return {shape: case.id for shape, case in made.items()}
