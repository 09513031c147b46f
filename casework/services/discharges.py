"""Case finding from discharge or insurance settlement records (``casework import discharges``).

Each record (ID number, principal diagnosis ICD-10, hospital, admission and discharge dates) is
matched to a registered person, eligible on the discharge day under the policy in force for them,
and to a disease of that policy's catalogue; a match becomes a proposed case in ``screened`` with
source ``registry_match``, unless the person already has an open case for that disease. Lookups
go by batch (one query per batch of ID numbers, one for their open cases), so a month of a
county's insurance data costs a few dozen queries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.db import SQLITE_IMMEDIATE, utcnow
from casework.id_number import InvalidIdNumber, parse_id_number
from casework.models import Case, CaseEvent, Person
from casework.references import region_chain
from casework.services.cases import new_case
from casework.services.eligibility import category_on, eligible
from casework.services.ledger_import import IMPORT_ACTOR, start_of
from casework.services.roster import id_number_error
from casework.tabular import cell_text, open_import, parse_day
from workflows import case_machine as machine
from workflows.policy_pack import PolicyPack, pack_for

HEADERS: dict[str, tuple[str, ...]] = {
    "id_number": ("身份证号", "身份证号码", "公民身份号码", "id_number"),
    "diagnosis": ("主要诊断编码", "主诊断编码", "诊断编码", "ICD-10", "ICD10", "diagnosis", "diagnosis_code"),
    "hospital": ("医院", "医院代码", "就诊医院", "定点医院代码", "hospital", "hospital_code"),
    "admitted": ("入院日期", "admitted", "admission_date"),
    "discharged": ("出院日期", "discharged", "discharge_date"),
}
REQUIRED = ("id_number", "diagnosis", "discharged")
LABELS = {"id_number": "身份证号", "diagnosis": "主要诊断编码", "discharged": "出院日期"}

OUTCOMES = {
    "proposed": "已生成待筛查病例",
    "already_open": "已有在办病例",
    "not_registered": "未在名册中",
    "not_eligible": "不属于救治对象",
    "unknown_diagnosis": "诊断不在病种目录内",
    "invalid": "错误",
}


@dataclass
class DischargeReport:
    rows: int = 0
    counts: Counter = field(default_factory=Counter)
    committed: bool = False
    dry_run: bool = False
    outcomes: dict[int, tuple[str, str]] = field(default_factory=dict)

    @property
    def matched(self) -> int:
        """Records of registered persons (eligible or not)."""
        return sum(self.counts[k] for k in ("proposed", "already_open", "not_eligible", "unknown_diagnosis"))

    def totals(self) -> dict[str, Any]:
        return {"rows": self.rows, "matched": self.matched, **{k: self.counts[k] for k in OUTCOMES}}

    def outcome(self, row: int) -> tuple[str, str]:
        return self.outcomes.get(row, ("", ""))


def describe(report: DischargeReport) -> str:
    c = report.counts
    state = "（试运行，未写入）" if report.dry_run else ""
    return (
        f"共 {report.rows} 条：匹配到名册 {report.matched}，生成待筛查病例 {c['proposed']}，"
        f"已有在办 {c['already_open']}，"
        f"不属于救治对象 {c['not_eligible']}，诊断不在目录 {c['unknown_diagnosis']}，未在名册 {c['not_registered']}，"
        f"错误 {c['invalid']}{state}"
    )


@dataclass
class _Record:
    row: int
    id_number: str
    diagnosis: str
    hospital: str
    admitted: date | None
    discharged: date


def import_discharges(
    session: Session,
    path: Path,
    *,
    dry_run: bool = False,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> DischargeReport:
    now = now or utcnow()
    table, columns = open_import(path, HEADERS, [(key, LABELS[key]) for key in REQUIRED])
    report = DischargeReport(dry_run=dry_run)
    finder = _Finder(session, now, report)
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={SQLITE_IMMEDIATE: True})
    try:
        batch: list[_Record] = []
        for row_number, cells in table.rows():
            report.rows += 1
            record = _parse(row_number, cells, columns, now.date(), report)
            if record is not None:
                batch.append(record)
            if len(batch) >= batch_size:
                finder.batch(batch)
                batch = []
            if progress is not None and report.rows % 1000 == 0:
                progress(report.rows)
        finder.batch(batch)
        if dry_run:
            session.rollback()
        else:
            session.commit()
            report.committed = True
    except BaseException:
        session.rollback()
        raise
    return report


def _parse(
    row_number: int, cells: list[Any], columns: dict[str, int], today: date, report: DischargeReport
) -> _Record | None:
    def cell(name: str) -> Any:
        index = columns.get(name)
        return cells[index] if index is not None and index < len(cells) else None

    def refuse(message: str) -> None:
        report.counts["invalid"] += 1
        report.outcomes[row_number] = (OUTCOMES["invalid"], message)

    try:
        number = parse_id_number(cell_text(cell("id_number")), today).number
    except InvalidIdNumber as exc:
        return refuse(f"身份证号：{id_number_error(exc)}")
    diagnosis = cell_text(cell("diagnosis")).upper()
    if not diagnosis:
        return refuse("主要诊断编码：不能为空")
    try:
        discharged = parse_day(cell("discharged"))
        admitted = parse_day(cell("admitted")) if cell_text(cell("admitted")) else None
    except ValueError as exc:
        return refuse(f"日期：{exc}")
    if discharged > today:
        return refuse("出院日期：晚于今天")
    if admitted is not None and admitted > discharged:
        return refuse("入院日期：晚于出院日期")
    return _Record(row_number, number, diagnosis, cell_text(cell("hospital")), admitted, discharged)


class _Finder:
    def __init__(self, session: Session, now: datetime, report: DischargeReport) -> None:
        self.session = session
        self.now = now
        self.report = report
        self.regions: dict[str, dict[str, str]] = {}

    def _say(self, record: _Record, outcome: str, detail: str = "") -> None:
        self.report.counts[outcome] += 1
        self.report.outcomes[record.row] = (OUTCOMES[outcome], detail)

    def batch(self, records: list[_Record]) -> None:
        if not records:
            return
        numbers = {r.id_number for r in records}
        persons = {p.id_number: p for p in self.session.scalars(select(Person).where(Person.id_number.in_(numbers)))}
        open_cases = set(
            self.session.execute(
                select(Case.person_id, Case.disease_code).where(
                    Case.person_id.in_([p.id for p in persons.values()]), Case.state.in_(machine.OPEN_STATES)
                )
            ).all()
        )
        for record in records:
            person = persons.get(record.id_number)
            if person is None:
                self._say(record, "not_registered")
                continue
            pack = self._pack(person, record.discharged)
            if pack is None:
                self._say(record, "not_eligible", f"{record.discharged} 本县没有施行中的政策")
                continue
            category = (
                person.category
                if person.category_since <= record.discharged
                else category_on(self.session, person.id, record.discharged)
            )
            if category is None or not eligible(pack, category, record.discharged):
                self._say(record, "not_eligible", f"出院时类别不属于 {pack.code} 的救治对象")
                continue
            disease = next((d for d in pack.diseases.values() if d.matches_icd10(record.diagnosis)), None)
            if disease is None:
                self._say(record, "unknown_diagnosis", f"{record.diagnosis} 不在 {pack.code} 的病种目录内")
                continue
            born, on = person.birth_date, record.discharged
            age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
            if disease.age_max is not None and age > disease.age_max:
                self._say(record, "not_eligible", f"{disease.name_zh} 只覆盖 {disease.age_max} 岁以下")
                continue
            if (person.id, disease.code) in open_cases:
                self._say(record, "already_open", disease.name_zh)
                continue
            self._propose(person, pack, disease.code, category, record)
            open_cases.add((person.id, disease.code))
            self._say(record, "proposed", disease.name_zh)

    def _pack(self, person: Person, day: date) -> PolicyPack | None:
        if person.village_code not in self.regions:
            self.regions[person.village_code] = {
                u.kind: u.code for u in region_chain(self.session, person.village_code)
            }
        regions = self.regions[person.village_code]
        return pack_for([regions.get(k, "") for k in ("county", "city", "province")], day)

    def _propose(self, person: Person, pack: PolicyPack, disease_code: str, category: str, record: _Record) -> None:
        regions = self.regions[person.village_code]
        screened_at = start_of(record.discharged)
        note = (
            f"出院记录匹配：医院 {record.hospital or '未填'}，主要诊断 {record.diagnosis}，"
            + (f"入院 {record.admitted}，" if record.admitted else "")
            + f"出院 {record.discharged}"
        )
        case = new_case(
            person.id,
            person.village_code,
            regions,
            pack,
            disease_code,
            category,
            "registry_match",
            note,
            screened_at,
            self.now,
        )
        self.session.add(case)
        self.session.flush()
        self.session.add(
            CaseEvent(
                case_id=case.id,
                seq=1,
                event=machine.SCREEN_EVENT,
                from_state=None,
                to_state=machine.SCREENED,
                actor_id=None,
                actor_username=IMPORT_ACTOR.username,
                org_unit_code=None,
                at=self.now,
                occurred_at=screened_at,
                data={"disease_code": disease_code, "source": "registry_match"},
                reason=note,
            )
        )
