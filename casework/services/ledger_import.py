"""Ledger migration (``casework import cases``): a county's existing big-illness ledger, one row
per case with the dates of its steps, rebuilt case by case THROUGH the state machine.

Each row becomes the events a clerk would have fired — screen, confirm, assign, admit, discharge,
start follow-up, refer/escalate, close/exclude/withdraw/death — each with the row's date as its
``occurred_at`` (midnight, China time), recorded by ``import``. Every event's data goes through its
schema and its guards, so a row the rules forbid (discharged but never admitted, a hospital not
designated for the disease, dates out of order) is refused with the reason, in Chinese. The columns
are the ledger export's own (:data:`casework.services.ledger.COLUMNS`), so an exported ledger
imports back as it was. A case already present (same person, disease and screening day) is left
alone: re-importing a file changes nothing.

What the dated columns cannot say is not invented: a case whose referral has ended (accepted,
consulted or declined) or that was reopened went through steps more than once, and the columns
keep only the latest of each. The export writes such a history out in 办理过程 (every step, its day
and code); the import fires exactly those steps and checks that the columns agree with them. A
row with an ended referral and no 办理过程 is refused with that reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from transitions import MachineError

from casework.actor import Actor
from casework.db import SQLITE_IMMEDIATE, insert_ignoring_conflicts, utcnow
from casework.id_number import InvalidIdNumber, parse_id_number
from casework.models import Case, CaseEvent, CaseHolder, FollowUpVisit, Person, PersonCategory, Settlement
from casework.references import DatabaseReferences, region_chain
from casework.services.cases import VISIT_EVENT, new_case
from casework.services.eligibility import eligible
from casework.services.ledger import CHINA, COLUMNS, ENDING_EVENTS, OUTCOME_LABELS, SOURCE_LABELS, fold_events
from casework.services.roster import Villages, id_number_error, parse_category
from casework.tabular import cell_text, open_import, parse_day
from workflows import case_machine as machine
from workflows.deadlines import due_at
from workflows.money import LAYERS
from workflows.policy_pack import PolicyPack, pack_for

IMPORT_ACTOR = Actor(None, "import", "admin", "", "system")
PLACEHOLDER = "台账导入"  # texts the ledger does not carry (plans, summaries): said so, not invented

HEADERS: dict[str, tuple[str, ...]] = {key: (header, key) for key, header in COLUMNS}
HEADERS["village_code"] = ("村/社区代码", "村代码", "village_code")
HEADERS["village"] = ("村/社区", "村（社区）", "村", "village")
HEADERS["id_number"] = ("身份证号", "身份证号码", "id_number")
LABEL = dict(COLUMNS)
REQUIRED = ("id_number", "name", "category", "disease_code", "state", "screened_on")

_STATES = {label: state for state, label in machine.STATE_LABELS.items()} | {s: s for s in machine.STATE_LABELS}
_SOURCES = {label: code for code, label in SOURCE_LABELS.items()} | {c: c for c in SOURCE_LABELS}
_OUTCOMES = {label: code for code, label in OUTCOME_LABELS.items()} | {c: c for c in OUTCOME_LABELS}
_FIELD_COLUMN = {
    "diagnosis_code": "diagnosis_code",
    "diagnosed_by": "diagnosed_by",
    "diagnosed_at": "confirmed_on",
    "hospital_id": "hospital_code",
    "admitted_at": "admitted_on",
    "discharged_at": "discharged_on",
    "died_at": "ended_on",
    "expert_group_id": "referral_path",
}
_GUARD_MESSAGES = (
    ("is not designated", "不是该病种在本政策下的定点医院"),
    ("no such hospital", "没有这家医院"),
    ("no such expert group", "没有这个专家组"),
    ("lies in the future", "晚于今天"),
    ("lies before the case was screened", "早于筛查日期"),
    ("top of the referral ladder", "已在转诊的最高一级"),
    ("expert group of the case's region", "不是病例所在地区这一级的专家组"),
)
MONEY_KEYS = ("total", "in_policy", *LAYERS, "own_payment", "shortfall")

IMPORTED, PRESENT, INVALID, NOT_IMPORTED = b"IPEX"
OUTCOME_TEXT = {IMPORTED: "已导入", PRESENT: "已存在，未改动", INVALID: "错误", NOT_IMPORTED: "未导入（文件有错误行）"}


class RowRefused(Exception):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"{LABEL.get(column, column)}：{message}")


@dataclass
class CaseImportReport:
    rows: int = 0
    imported: int = 0
    present: int = 0
    invalid: int = 0
    persons_created: int = 0
    committed: bool = False
    dry_run: bool = False
    outcomes: dict[int, int] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "present": self.present,
            "invalid": self.invalid,
            "persons_created": self.persons_created,
            "committed": self.committed,
            "dry_run": self.dry_run,
        }

    def outcome(self, row: int) -> tuple[str, str]:
        code = self.outcomes.get(row)
        return (OUTCOME_TEXT[code], self.errors.get(row, "")) if code else ("", "")


def describe(report: CaseImportReport) -> str:
    state = "（试运行，未写入）" if report.dry_run else ("" if report.committed else "（未导入）")
    return (
        f"共 {report.rows} 行：导入 {report.imported}（新登记人员 {report.persons_created}），"
        f"已存在 {report.present}，错误 {report.invalid}{state}"
    )


def start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=CHINA)


def import_cases(
    session: Session,
    path: Path,
    *,
    county: str | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> CaseImportReport:
    """Import a ledger file; one transaction, each row in a savepoint (see the module docstring)."""
    now = now or utcnow()
    table, columns = open_import(
        path, HEADERS, [(key, LABEL[key]) for key in REQUIRED], any_of=[(("village_code", "village"), "村/社区代码")]
    )
    report = CaseImportReport(dry_run=dry_run)
    villages = Villages(session, county)
    importer = _RowImporter(session, now)
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={SQLITE_IMMEDIATE: True})
    try:
        for row_number, cells in table.rows():
            report.rows += 1
            values = {key: (cells[index] if index < len(cells) else None) for key, index in columns.items()}
            savepoint = session.begin_nested()
            try:
                created, person_new = importer.row(values, villages)
                savepoint.commit()
            except RowRefused as exc:
                savepoint.rollback()
                report.invalid += 1
                report.outcomes[row_number] = INVALID
                report.errors[row_number] = str(exc)
                continue
            if created:
                report.imported += 1
                report.persons_created += person_new
                report.outcomes[row_number] = IMPORTED
            else:
                report.present += 1
                report.outcomes[row_number] = PRESENT
            if progress is not None and report.rows % 100 == 0:
                progress(report.rows)
        if progress is not None:
            progress(report.rows)
        if dry_run or (report.invalid and not skip_invalid):
            session.rollback()
            if not dry_run:
                for row_number, code in report.outcomes.items():
                    if code == IMPORTED:
                        report.outcomes[row_number] = NOT_IMPORTED
                report.imported = report.persons_created = 0
        else:
            session.commit()
            report.committed = True
    except BaseException:
        session.rollback()
        raise
    return report


class _RowImporter:
    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.refs = DatabaseReferences(session)
        self.regions: dict[str, dict[str, str]] = {}

    def _regions(self, village: str) -> dict[str, str]:
        if village not in self.regions:
            self.regions[village] = {unit.kind: unit.code for unit in region_chain(self.session, village)}
        return self.regions[village]

    def row(self, values: dict[str, Any], villages: Villages) -> tuple[bool, int]:
        """Import one row; True when a case was created (False: it was there already)."""
        text = {key: cell_text(value) for key, value in values.items()}
        try:
            resident = parse_id_number(text["id_number"], self.now.date())
        except InvalidIdNumber as exc:
            raise RowRefused("id_number", id_number_error(exc)) from None
        if not text.get("name"):
            raise RowRefused("name", "不能为空")
        try:
            village = villages.resolve(values.get("village_code") or values.get("village"))
        except ValueError as exc:
            raise RowRefused("village_code", str(exc)) from None
        try:
            category = parse_category(values["category"])
        except ValueError as exc:
            raise RowRefused("category", str(exc)) from None
        state = _STATES.get(text["state"])
        if state is None:
            raise RowRefused("state", f"未知状态“{text['state']}”")
        days = {key: self._day(values, key) for key in _DATE_KEYS}
        screened_on = days["screened_on"]
        if screened_on is None:
            raise RowRefused("screened_on", "不能为空")
        regions = self._regions(village)
        pack = pack_for([regions.get(k, "") for k in ("county", "city", "province")], screened_on)
        if pack is None:
            raise RowRefused("screened_on", f"{screened_on} 本县没有施行中的政策")
        if text.get("policy") and text["policy"] != pack.code:
            raise RowRefused("policy", f"筛查日期施行的政策是 {pack.code}，不是 {text['policy']}")
        disease_code = text["disease_code"]
        disease = pack.disease(disease_code)
        if disease is None:
            raise RowRefused("disease_code", f"{pack.code} 的病种目录中没有“{disease_code}”")
        if not eligible(pack, category, screened_on):
            raise RowRefused("category", f"该类别在 {pack.code} 下不属于救治对象")
        if disease.age_max is not None and _age(resident.birth_date, screened_on) > disease.age_max:
            raise RowRefused("disease_code", f"{disease.name_zh} 只覆盖 {disease.age_max} 岁以下")

        person, person_new = self._person(resident, text["name"], village, category, screened_on)
        if self._present(person.id, disease_code, screened_on):
            return False, 0
        case = new_case(
            person.id,
            village,
            regions,
            pack,
            disease_code,
            category,
            _SOURCES.get(text.get("source") or "", "other"),
            PLACEHOLDER,
            start_of(screened_on),
            self.now,
        )
        case.eligibility_lost_on = days["eligibility_lost_on"]
        self.session.add(case)
        self.session.flush()
        self._event(case, machine.SCREEN_EVENT, None, start_of(screened_on), {"disease_code": disease_code}, None)
        history = bool(text.get("history"))
        steps = self._history(text, days) if history else self._steps(text, days, state)
        visit = self._planned_visit(pack, case.disease_code, days)
        for number, (event, on, data, reason) in enumerate(steps, start=1):
            step = f"第{number}步（{machine.RULES[event].label} {on}）" if history and event != "confirm" else None
            self._fire(case, pack, event, on, data, reason, step=step)
            # the visit took place during follow-up, before whatever came next
            if visit and case.state == machine.FOLLOW_UP and (number == len(steps) or steps[number][1] >= visit[0]):
                self._record_visit(case, pack, *visit)
                visit = None
        if case.state != state:
            shown = machine.STATE_LABELS[case.state]
            raise RowRefused("state", f"按各步骤日期病例应处于“{shown}”，与填写的“{text['state']}”不符")
        if visit:
            raise RowRefused("last_visit_on", "不在随访期内（随访开始之后、随访结束之前）")
        if history:
            self._agrees_with_history(case, text, days, steps)
        self._money(case, pack, values, days)
        try:
            self.session.flush()
        except Exception as exc:  # a second open case for this person and disease
            raise RowRefused("disease_code", "此人已有该病种的在办病例") from exc
        return True, int(person_new)

    def _day(self, values: dict[str, Any], key: str) -> date | None:
        value = values.get(key)
        if value in (None, ""):
            return None
        try:
            day = parse_day(value)
        except ValueError as exc:
            raise RowRefused(key, str(exc)) from None
        if day > self.now.astimezone(CHINA).date():
            raise RowRefused(key, "晚于今天")
        return day

    def _person(self, resident, name: str, village: str, category: str, since: date) -> tuple[Person, bool]:
        person = self.session.scalar(select(Person).where(Person.id_number == resident.number))
        if person is not None:
            return person, False
        person = Person(
            id_number=resident.number,
            name=name,
            sex=resident.sex,
            birth_date=resident.birth_date,
            village_code=village,
            category=category,
            category_since=since,
            created_at=self.now,
        )
        self.session.add(person)
        self.session.flush()
        self.session.add(
            PersonCategory(person_id=person.id, category=category, since=since, source="import", recorded_at=self.now)
        )
        return person, True

    def _present(self, person_id: int, disease_code: str, screened_on: date) -> bool:
        start = start_of(screened_on)
        return (
            self.session.scalar(
                select(Case.id)
                .where(
                    Case.person_id == person_id,
                    Case.disease_code == disease_code,
                    Case.screened_at >= start,
                    Case.screened_at < start + timedelta(days=1),
                )
                .limit(1)
            )
            is not None
        )

    def _steps(self, text: dict[str, str], days: dict[str, date | None], state: str) -> list[tuple]:
        """The events the row's dates stand for, in workflow order, checked to be in date order."""
        path = [p.strip() for p in (text.get("referral_path") or "").split("→") if p.strip()]
        if any(p in _REFERRAL_ANSWERS for p in path):
            raise RowRefused("referral_path", "已结束的转诊无法仅凭各步骤日期重建：请在“办理过程”列写明各步骤")
        steps: list[tuple[str, str, date, dict[str, Any], str | None]] = []
        if days["confirmed_on"]:
            data = {
                "diagnosis_code": text.get("diagnosis_code") or "",
                "diagnosed_by": text.get("diagnosed_by") or "",
                "diagnosed_at": start_of(days["confirmed_on"]).isoformat(),
            }
            steps.append(("confirmed_on", "confirm", days["confirmed_on"], data, None))
        if days["assigned_on"]:
            data = {"hospital_id": text.get("hospital_code") or "", "plan": PLACEHOLDER}
            steps.append(("assigned_on", "assign", days["assigned_on"], data, None))
        if days["admitted_on"]:
            data = {"admitted_at": start_of(days["admitted_on"]).isoformat()}
            steps.append(("admitted_on", "admit", days["admitted_on"], data, None))
        if days["discharged_on"]:
            outcome = _OUTCOMES.get(text.get("outcome") or "", "other")
            data = {"discharged_at": start_of(days["discharged_on"]).isoformat(), "outcome": outcome}
            steps.append(("discharged_on", "discharge", days["discharged_on"], data, None))
        if days["follow_up_on"]:
            steps.append(("follow_up_on", "start_follow_up", days["follow_up_on"], {}, None))
        if path:
            if not days["referred_on"]:
                raise RowRefused("referred_on", "有转诊路径时不能为空")
            summary = {"summary": PLACEHOLDER}
            steps.append(("referred_on", "refer", days["referred_on"], {"expert_group_id": path[0], **summary}, None))
            for group in path[1:]:
                steps.append(
                    ("referred_on", "escalate", days["referred_on"], {"expert_group_id": group, **summary}, None)
                )
        if state in ENDING_EVENTS.values():
            ended = days["ended_on"]
            if ended is None:
                raise RowRefused("ended_on", f"状态为“{text['state']}”时不能为空")
            event = next(name for name, dest in ENDING_EVENTS.items() if dest == state)
            data = {"died_at": start_of(ended).isoformat()} if event == "record_death" else {}
            reason = text.get("end_reason") or (None if event == "record_death" else PLACEHOLDER)
            steps.append(("ended_on", event, ended, data, reason))
        for (earlier_key, _, earlier, _, _), (key, _, later, _, _) in pairwise(steps):
            if later < earlier:
                raise RowRefused(key, f"{later} 早于{LABEL[earlier_key]} {earlier}（日期顺序不对）")
        return [(event, on, data, reason) for _, event, on, data, reason in steps]

    def _history(self, text: dict[str, str], days: dict[str, date | None]) -> list[tuple]:
        """The steps 办理过程 lists (see :func:`casework.services.ledger.history_text`), each with
        the data its event needs; the confirmation's own data come from their columns."""
        steps: list[tuple[str, date, dict[str, Any], str | None]] = []
        today = self.now.astimezone(CHINA).date()
        parts = [part.split() for part in _STEP_SPLIT.split(text["history"])]
        for number, words in enumerate((words for words in parts if words), start=1):
            event = _HISTORY_EVENTS.get(words[0])
            if event is None:
                known = "确诊、分配定点医院、入院、出院、转诊、远程会诊、复发重启…"
                raise RowRefused("history", f"第{number}步“{words[0]}”不是办理步骤（{known}）")
            if len(words) < 2:
                raise RowRefused("history", f"第{number}步“{words[0]}”缺少日期")
            try:
                on = parse_day(words[1])
            except ValueError as exc:
                raise RowRefused("history", f"第{number}步：{exc}") from None
            if on > today:
                raise RowRefused("history", f"第{number}步：{on} 晚于今天")
            argument = words[2] if len(words) > 2 else ""
            if event in _NEEDS_ARGUMENT and not argument:
                raise RowRefused("history", f"第{number}步“{words[0]}”缺少{_NEEDS_ARGUMENT[event]}")
            if on < days["screened_on"]:
                raise RowRefused("history", f"第{number}步 {on} 早于筛查日期 {days['screened_on']}")
            if steps and on < steps[-1][1]:
                raise RowRefused("history", f"第{number}步 {on} 早于第{number - 1}步 {steps[-1][1]}（日期顺序不对）")
            reason = PLACEHOLDER if event in _REASONED else None
            steps.append((event, on, self._step_data(event, on, argument, text), reason))
        endings = [index for index, step in enumerate(steps) if step[0] in ENDING_EVENTS]
        if endings:  # 结束原因 is the last ending's reason
            event, on, data, _ = steps[endings[-1]]
            reason = text.get("end_reason") or (None if event == "record_death" else PLACEHOLDER)
            steps[endings[-1]] = (event, on, data, reason)
        return steps

    @staticmethod
    def _step_data(event: str, on: date, argument: str, text: dict[str, str]) -> dict[str, Any]:
        at = start_of(on).isoformat()
        if event == "confirm":
            return {"diagnosis_code": text.get("diagnosis_code") or "", "diagnosed_by": text.get("diagnosed_by") or "",
                    "diagnosed_at": at}  # fmt: skip
        if event in ("assign", "accept_referral"):
            return {"hospital_id": argument, "plan": PLACEHOLDER}
        if event == "admit":
            return {"admitted_at": at}
        if event == "discharge":
            return {"discharged_at": at, "outcome": _OUTCOMES.get(argument, "other")}
        if event in ("refer", "escalate"):
            return {"expert_group_id": argument, "summary": PLACEHOLDER}
        if event == "consult":
            return {"opinion": PLACEHOLDER}
        if event == "record_death":
            return {"died_at": at}
        return {}

    def _agrees_with_history(self, case: Case, text: dict[str, str], days: dict[str, date | None], steps: list) -> None:
        """The dated columns must say what the rebuilt history says: the same fold the export
        makes, compared column by column, so a row cannot claim one thing in each place."""
        events = [
            (case.id, event, on, data.get("diagnosis_code"), data.get("diagnosed_by"), data.get("outcome"),
             data.get("expert_group_id"), data.get("hospital_id"), reason)
            for event, on, data, reason in steps
        ]  # fmt: skip
        folded: dict[str, Any] = {}
        fold_events(folded, events, case.state)
        for key in _HISTORY_CHECKED:
            expected = folded.get(key)
            given: Any = days[key] if key in days else (text.get(key) or None)
            if key == "outcome" and given:
                given = OUTCOME_LABELS.get(_OUTCOMES.get(given, given), given)
            if key == "referral_path":
                given = " → ".join(p.strip() for p in given.split("→")) if given else None
            if given != expected:
                shown = expected.isoformat() if isinstance(expected, date) else (expected or "空")
                raise RowRefused(key, f"与办理过程不符（按办理过程应为 {shown}）")
        if (text.get("hospital_code") or None) != case.hospital_code:
            raise RowRefused("hospital_code", f"与办理过程不符（按办理过程应为 {case.hospital_code or '空'}）")

    def _fire(
        self,
        case: Case,
        pack: PolicyPack,
        event: str,
        on: date,
        data: dict[str, Any],
        reason: str | None,
        step: str | None = None,
    ) -> None:
        """One event through the schema, the guards and the machine. ``step`` names a step of
        办理过程: then every refusal is on that column, saying which step."""
        rule = machine.RULES[event]
        column = "history" if step else _STEP_COLUMN[event]

        def refused(field_name: str | None, message: str) -> RowRefused:
            if step:
                return RowRefused("history", f"{step}：{message}")
            return RowRefused(_FIELD_COLUMN.get(field_name or "", column), message)

        try:
            loaded = rule.data_schema().load(data)
        except ValidationError as exc:
            name = next(iter(exc.messages_dict))
            raise refused(name, f"无效（{_first(exc.messages_dict[name])}）") from None
        at = start_of(on)
        ctx = machine.EventContext(case, IMPORT_ACTOR, loaded, pack, self.refs, self.now)
        holders = {case.hospital_code, case.referral_group_code}
        try:
            from_state = machine.trigger(case, event, loaded, ctx)
        except MachineError:
            shown = machine.STATE_LABELS[case.state]
            hint = "（步骤顺序不对？）" if step else "（缺少前面步骤的日期？）"
            raise refused(None, f"病例处于“{shown}”时不能{rule.label}{hint}") from None
        except machine.GuardFailed as exc:
            message = next((zh for key, zh in _GUARD_MESSAGES if key in exc.message), exc.message)
            raise refused(exc.field, message) from None
        case.version += 1
        case.entered_state_at = at
        case.due_at = due_at(case.state, at, pack, case.disease_code, loaded.get("interval_days"))
        self._event(case, event, from_state, at, rule.data_schema().dump(loaded), reason)
        for holder in {case.hospital_code, case.referral_group_code} - holders:
            if holder:
                statement = insert_ignoring_conflicts(self.session, CaseHolder).values(
                    case_id=case.id, org_unit_code=holder
                )
                self.session.execute(statement.on_conflict_do_nothing())

    def _event(self, case: Case, event: str, from_state: str | None, at: datetime, data: dict, reason: str | None):
        self.session.add(
            CaseEvent(
                case_id=case.id,
                seq=case.version,
                event=event,
                from_state=from_state,
                to_state=case.state,
                actor_id=None,
                actor_username=IMPORT_ACTOR.username,
                org_unit_code=None,
                at=self.now,
                occurred_at=at,
                data=data,
                reason=reason,
            )
        )

    def _money(self, case: Case, pack: PolicyPack, values: dict[str, Any], days: dict[str, date | None]) -> None:
        amounts = {}
        for key in MONEY_KEYS:
            try:
                amounts[key] = _amount(values.get(key))
            except (InvalidOperation, ValueError):
                raise RowRefused(key, f"“{cell_text(values.get(key))}”不是金额") from None
        if not any(amounts.values()):
            return
        if case.hospital_code is None:
            raise RowRefused("hospital_code", "有费用却没有定点医院")
        discharged = days["discharged_on"] or days["ended_on"]
        if discharged is None:
            raise RowRefused("discharged_on", "有费用却没有出院日期")
        reimbursed = sum((amounts[layer] for layer in LAYERS), Decimal("0"))
        if reimbursed + amounts["own_payment"] != amounts["total"]:
            raise RowRefused("total", f"各项报销 {reimbursed} 加个人自付 {amounts['own_payment']} 不等于总费用")
        if amounts["in_policy"] > amounts["total"]:
            raise RowRefused("in_policy", "超过总费用")
        self.session.add(
            Settlement(
                case_id=case.id,
                person_id=case.person_id,
                hospital_code=case.hospital_code,
                kind="inpatient",
                admitted_at=start_of(days["admitted_on"]) if days["admitted_on"] else None,
                discharged_at=start_of(discharged),
                year=discharged.year,
                referral_compliant=True,
                special_treatment=False,
                ratio_on_total=_ratio(reimbursed, amounts["total"]),
                ratio_on_in_policy=_ratio(reimbursed, amounts["in_policy"]),
                below_floor=amounts["shortfall"] > 0,  # the old ledger's own judgement, kept as it was
                recorded_by=IMPORT_ACTOR.username,
                recorded_at=self.now,
                **amounts,
            )
        )
        if case.state == machine.TREATED:
            case.due_at = None  # the bill is in: nothing is due in this step any more

    def _planned_visit(
        self, pack: PolicyPack, disease_code: str, days: dict[str, date | None]
    ) -> tuple[date, datetime] | None:
        """末次随访日期 / 下次随访日期 as one visit: its day and when the next is due."""
        visited = days["last_visit_on"]
        if visited is None:
            return None
        if days["follow_up_on"] is None or visited < days["follow_up_on"]:
            raise RowRefused("last_visit_on", "随访开始之前不能有随访")
        next_day = days["next_visit_on"]
        interval = pack.disease(disease_code).follow_up_interval_days
        next_due = start_of(next_day) if next_day else start_of(visited) + timedelta(days=interval)
        if next_due <= start_of(visited):
            raise RowRefused("next_visit_on", "应晚于末次随访日期")
        return visited, next_due

    def _record_visit(self, case: Case, pack: PolicyPack, visited: date, next_due: datetime) -> None:
        """The visit, and its entry in the history as the follow-up service writes it (the visit
        moves the deadline: an audit entry, no change of state)."""
        at = start_of(visited)
        self.session.add(
            FollowUpVisit(
                case_id=case.id,
                visited_at=at,
                visitor=IMPORT_ACTOR.username,
                org_unit_code=None,
                findings=PLACEHOLDER,
                next_due_at=next_due,
                recorded_at=self.now,
            )
        )
        previous_due = case.due_at
        case.due_at = next_due + timedelta(days=pack.deadlines_days["follow_up_grace"])
        case.version += 1
        data = {
            "visited_at": _utc_iso(at),
            "next_due_at": _utc_iso(next_due),
            "previous_due_at": _utc_iso(previous_due) if previous_due else None,
            "due_at": _utc_iso(case.due_at),
        }
        self._event(case, VISIT_EVENT, case.state, at, data, None)


def _utc_iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


_DATE_KEYS = (
    "screened_on",
    "confirmed_on",
    "assigned_on",
    "admitted_on",
    "discharged_on",
    "referred_on",
    "follow_up_on",
    "last_visit_on",
    "next_visit_on",
    "ended_on",
    "eligibility_lost_on",
)
_STEP_SPLIT = re.compile(r"[；;]")
_HISTORY_EVENTS = {rule.label: name for name, rule in machine.RULES.items()} | {name: name for name in machine.RULES}
_NEEDS_ARGUMENT = {
    "assign": "定点医院代码",
    "accept_referral": "接收医院代码",
    "refer": "专家组代码",
    "escalate": "专家组代码",
}
_REASONED = frozenset(("close", "exclude", "withdraw", "decline_referral", "reopen"))
_REFERRAL_ANSWERS = ("接收", "会诊", "不予接收")
_HISTORY_CHECKED = (
    "confirmed_on",
    "assigned_on",
    "admitted_on",
    "discharged_on",
    "outcome",
    "referred_on",
    "referral_path",
    "follow_up_on",
    "ended_on",
)
_STEP_COLUMN = {
    "confirm": "confirmed_on",
    "assign": "assigned_on",
    "admit": "admitted_on",
    "discharge": "discharged_on",
    "start_follow_up": "follow_up_on",
    "refer": "referred_on",
    "escalate": "referral_path",
    "close": "ended_on",
    "exclude": "ended_on",
    "withdraw": "ended_on",
    "record_death": "ended_on",
    "accept_referral": "referral_path",
    "consult": "referral_path",
    "decline_referral": "referral_path",
    "reopen": "history",
}


def _first(messages: Any) -> str:
    return str(messages[0]) if isinstance(messages, list) and messages else str(messages)


def _amount(value: Any) -> Decimal:
    text = cell_text(value).replace(",", "")
    if not text:
        return Decimal("0.00")
    amount = Decimal(text).quantize(Decimal("0.01"), ROUND_HALF_UP)
    if amount < 0:
        raise ValueError("negative")
    return amount


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    if denominator <= 0:
        return None
    return (numerator / denominator).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))
