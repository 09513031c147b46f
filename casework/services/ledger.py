"""The ledger (台账): one row per case with Chinese headers, the spreadsheet a county sends upward
every month; a second sheet with the totals per county.

Streamed end to end: four ordered queries run side by side on server-side cursors — the cases
with their persons, their events, their settlements summed in SQL per case, their latest
follow-up visit — and are merged by case id as they arrive, so memory stays flat whatever the
number of cases, and the file goes to disk (or to the client) row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Select, String, and_, func, literal, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import UTCDateTime, raw, utcnow, write_transaction
from casework.errors import Forbidden, NotFound, ValidationFailed
from casework.id_number import mask_id_number
from casework.models import AccessLog, Case, CaseEvent, FollowUpVisit, OrgUnit, Person, Settlement
from casework.privacy import may_see_full_id
from casework.scope import case_scope, in_subtree
from casework.services.cases import VISIT_EVENT
from casework.services.eligibility import category_label
from casework.tabular import SheetWriter
from casework.xlsx import MAX_ROWS as XLSX_MAX_ROWS
from workflows.case_machine import OPEN_STATES, RULES, SCREEN_EVENT, STATE_LABELS, TERMINAL_STATES
from workflows.money import LAYERS
from workflows.policy_pack import packs

CHINA = ZoneInfo("Asia/Shanghai")
STREAM_ROWS = 5000

SOURCE_LABELS = {
    "health_check": "健康体检",
    "family_doctor_visit": "家庭医生随访",
    "hospital_diagnosis": "医院诊断",
    "registry_match": "数据比对",
    "other": "其他",
}
OUTCOME_LABELS = {"cured": "治愈", "improved": "好转", "unchanged": "未愈", "worsened": "恶化", "other": "其他"}
LAYER_HEADERS = {
    "basic_insurance": "基本医保",
    "critical_illness_insurance": "大病保险",
    "medical_assistance": "医疗救助",
    "government_backstop": "政府兜底",
    "charity": "慈善",
    "other": "其他保障",
}
ENDING_EVENTS = {"close": "closed", "exclude": "excluded", "withdraw": "withdrawn", "record_death": "deceased"}

# (key, header): the order of the columns in the file. Import reads the same headers back.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("id_number", "身份证号"),
    ("name", "姓名"),
    ("sex", "性别"),
    ("age", "年龄"),
    ("county", "县"),
    ("village_code", "村/社区代码"),
    ("village", "村/社区"),
    ("category", "类别"),
    ("disease_code", "病种代码"),
    ("disease", "病种"),
    ("policy", "政策"),
    ("source", "发现途径"),
    ("state", "状态"),
    ("screened_on", "筛查日期"),
    ("confirmed_on", "确诊日期"),
    ("diagnosis_code", "诊断编码"),
    ("diagnosed_by", "确诊医院代码"),
    ("assigned_on", "分配日期"),
    ("hospital_code", "定点医院代码"),
    ("hospital", "定点医院"),
    ("admitted_on", "入院日期"),
    ("discharged_on", "出院日期"),
    ("outcome", "出院转归"),
    ("referred_on", "转诊日期"),
    ("referral_path", "转诊路径"),
    ("follow_up_on", "随访开始日期"),
    ("follow_up_status", "随访状态"),
    ("last_visit_on", "末次随访日期"),
    ("next_visit_on", "下次随访日期"),
    ("ended_on", "结束日期"),
    ("end_reason", "结束原因"),
    ("history", "办理过程"),
    ("eligibility_lost_on", "资格丧失日期"),
    ("total", "总费用"),
    ("in_policy", "政策范围内费用"),
    *((layer, LAYER_HEADERS[layer]) for layer in LAYERS),
    ("own_payment", "个人自付"),
    ("actual_ratio", "实际报销比例"),
    ("shortfall", "保障缺口"),
    ("overdue", "是否超期"),
)
HEADERS = [header for _, header in COLUMNS]
_EMPTY_ROW: dict[str, Any] = dict.fromkeys(key for key, _ in COLUMNS)
TOTAL_HEADERS = ["县代码", "县", "病例数", "在办", "已结束", "超期", "资格丧失", "总费用", "个人自付", "保障缺口"]
MONEY_KEYS = ("total", "in_policy", *LAYERS, "own_payment", "shortfall")


def local_day(moment: datetime | None) -> date | None:
    return moment.astimezone(CHINA).date() if moment is not None else None


def _as_date(value: Any) -> date:
    """SQLite's date() answers text, PostgreSQL's a date."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _yuan(fen: int | None) -> Decimal:
    return Decimal(int(fen or 0)).scaleb(-2)


@dataclass(frozen=True)
class LedgerScope:
    """Which cases the ledger covers and whether ID numbers are shown in full."""

    where: Any
    full_ids: bool


EXPORTERS = ("admin", "supervisor", "county_coordinator")


def ledger_scope(session: Session, actor: Actor, county: str | None) -> LedgerScope:
    """The actor's cases, of one county when given. Full ID numbers only for who may see them
    for the whole export: admins, and the coordinator of the county."""
    if actor.role not in EXPORTERS:
        raise Forbidden(f"role {actor.role} does not export the ledger")
    if county is None and actor.role == "county_coordinator":
        county = actor.org_unit_code
    where = case_scope(actor)
    if county:
        unit = session.get(OrgUnit, county)
        visible = unit is not None and unit.kind == "county"
        if visible and actor.role != "admin":
            visible = in_subtree(session, county, actor.org_unit_code)
        if not visible:
            raise NotFound(f"no county {county} in your area")
        where = and_(where, Case.county_code == county)
    full = actor.role == "admin" or (county is not None and may_see_full_id(actor, county))
    return LedgerScope(where, full)


def log_export(session: Session, actor: Actor, scope: LedgerScope) -> int:
    """Every person whose full ID number the export shows gets an access-log row (PIPL), written
    set-based in its own transaction before the first row leaves."""
    if not scope.full_ids:
        return 0
    persons = select(Case.person_id).where(scope.where).distinct().subquery()
    rows = select(
        literal(actor.user_id, type_=BigInteger()),
        literal(actor.username, type_=String()),
        persons.c.person_id,
        literal("ledger_export", type_=String()),
        literal(utcnow(), type_=UTCDateTime()),
    )
    with write_transaction(session):
        result = session.execute(
            AccessLog.__table__.insert()
            .from_select(["user_id", "username", "person_id", "what", "at"], rows)
            .execution_options(preserve_rowcount=True)
        )
    return result.rowcount or 0


def _cases(scope: LedgerScope, dialect: str, now: datetime) -> Select:
    return (
        select(
            Case.id,
            Person.id_number,
            Person.name,
            Person.sex,
            Person.birth_date,
            Case.county_code,
            Case.village_code,
            Case.category,
            Case.disease_code,
            Case.policy_code,
            Case.source,
            Case.state,
            local_date(Case.screened_at, dialect),
            Case.hospital_code,
            and_(Case.state.in_(OPEN_STATES), Case.due_at < literal(now, type_=UTCDateTime())),
            Case.eligibility_lost_on,
        )
        .join(Person, Person.id == Case.person_id)
        .where(scope.where)
        .order_by(Case.id)
    )


def _in_scope(scope: LedgerScope, column: Any) -> Any:
    return column.in_(select(Case.id).where(scope.where))


def local_date(column: Any, dialect: str) -> Any:
    """The China-time calendar day of a stored UTC timestamp, computed by the database: parsing
    millions of timestamps in Python is most of an export's time. China keeps UTC+8 all year."""
    if dialect == "sqlite":
        return func.date(column, "+8 hours")
    return func.date(func.timezone("Asia/Shanghai", column))


def _events(scope: LedgerScope, dialect: str) -> Select:
    data = CaseEvent.data
    return (
        select(
            CaseEvent.case_id,
            CaseEvent.event,
            local_date(CaseEvent.occurred_at, dialect),
            # each JSON field read only on the events that carry it: parsing JSON is the query's cost
            _only(CaseEvent.event == "confirm", data["diagnosis_code"].as_string()),
            _only(CaseEvent.event == "confirm", data["diagnosed_by"].as_string()),
            _only(CaseEvent.event == "discharge", data["outcome"].as_string()),
            _only(CaseEvent.event.in_(("refer", "escalate")), data["expert_group_id"].as_string()),
            _only(CaseEvent.event.in_(("assign", "accept_referral")), data["hospital_id"].as_string()),
            CaseEvent.reason,
        )
        # screening is the case row's own; visits are read from their table
        .where(_in_scope(scope, CaseEvent.case_id), CaseEvent.event.not_in((SCREEN_EVENT, VISIT_EVENT)))
        .order_by(CaseEvent.case_id, CaseEvent.seq)
    )


def _only(condition: Any, value: Any) -> Any:
    from sqlalchemy import case

    return case((condition, value))


def _money(scope: LedgerScope) -> Select:
    sums = [func.sum(raw(getattr(Settlement, key))) for key in MONEY_KEYS]
    return (
        select(Settlement.case_id, *sums)
        .where(_in_scope(scope, Settlement.case_id))
        .group_by(Settlement.case_id)
        .order_by(Settlement.case_id)
    )


def _visits(scope: LedgerScope) -> Select:
    latest = (
        select(FollowUpVisit.case_id, func.max(FollowUpVisit.visited_at).label("visited_at"))
        .where(_in_scope(scope, FollowUpVisit.case_id))
        .group_by(FollowUpVisit.case_id)
        .subquery()
    )
    return (
        select(latest.c.case_id, latest.c.visited_at, func.max(FollowUpVisit.next_due_at))
        .join(
            FollowUpVisit,
            and_(FollowUpVisit.case_id == latest.c.case_id, FollowUpVisit.visited_at == latest.c.visited_at),
        )
        .group_by(latest.c.case_id, latest.c.visited_at)
        .order_by(latest.c.case_id)
    )


class _Follow:
    """Walks an ordered stream alongside the cases: hands over the rows of one case id at a time."""

    def __init__(self, rows: Iterator[Any]) -> None:
        self.rows = rows
        self.head = next(rows, None)

    def take(self, case_id: int) -> list[Any]:
        taken = []
        while self.head is not None and self.head[0] <= case_id:
            if self.head[0] == case_id:
                taken.append(self.head)
            self.head = next(self.rows, None)
        return taken


def _stream(session: Session, statement: Select) -> Iterator[Any]:
    """Rows of a Core statement on a server-side cursor: the ORM's per-row machinery is not needed
    for plain columns and cost a fifth of an export's time."""
    return iter(session.connection().execute(statement, execution_options={"yield_per": STREAM_ROWS}))


def ledger_rows(session: Session, scope: LedgerScope, now: datetime | None = None) -> Iterator[list[Any]]:
    """The ledger's data rows, in case order, as values (dates, Decimals, text)."""
    now = now or utcnow()
    available = packs()
    names = dict(session.execute(select(OrgUnit.code, OrgUnit.name)).all())  # org units: thousands at most
    dialect = session.get_bind().dialect.name
    events = _Follow(_stream(session, _events(scope, dialect)))
    money = _Follow(_stream(session, _money(scope)))
    visits = _Follow(_stream(session, _visits(scope)))
    for case in _stream(session, _cases(scope, dialect, now)):
        (case_id, id_number, name, sex, born, county, village, category, disease_code, policy, source, state,
         screened_on, hospital_code, overdue, lost_on) = case  # fmt: skip
        screened_on = _as_date(screened_on)
        pack = available.get(policy)
        disease = pack.disease(disease_code) if pack else None
        row = dict(_EMPTY_ROW)  # every column, in the file's order
        row.update({
            "id_number": id_number if scope.full_ids else mask_id_number(id_number),
            "name": name,
            "sex": "男" if sex == "M" else "女",
            "age": _age(born, screened_on),
            "county": names.get(county, county),
            "village_code": village,
            "village": names.get(village, ""),
            "category": category_label(category),
            "disease_code": disease_code,
            "disease": disease.name_zh if disease else "",
            "policy": policy,
            "source": SOURCE_LABELS.get(source, source),
            "state": STATE_LABELS.get(state, state),
            "screened_on": screened_on,
            "hospital_code": hospital_code,
            "hospital": names.get(hospital_code, "") if hospital_code else None,
            "eligibility_lost_on": lost_on,
            "overdue": "是" if overdue else "否",
        })  # fmt: skip
        fold_events(row, events.take(case_id), state)
        sums = money.take(case_id)
        _put_money(row, sums[0][1:] if sums else None, pack)
        visit = visits.take(case_id)
        if visit:
            row["last_visit_on"] = local_day(visit[0][1])
            row["next_visit_on"] = local_day(visit[0][2])
        yield list(row.values())


# A case that went through one of these has a history its dated columns cannot hold (the latest
# date of each step only): its steps are written out in 办理过程 so that the ledger imports back.
HISTORY_EVENTS = frozenset(("accept_referral", "consult", "decline_referral", "reopen"))
HISTORY_ARGUMENTS = {"assign": 7, "accept_referral": 7, "refer": 6, "escalate": 6, "discharge": 5}
STEP_SEPARATOR = "；"


def fold_events(row: dict[str, Any], events: list[Any], state: str) -> None:
    """The ledger's step columns from a case's events (in order, screening left out): the latest
    date of each step, the referral path, the ending, and 办理过程 when they cannot tell it all.
    ``events``: (case id, event, China-time day, diagnosis code, diagnosed by, discharge outcome,
    expert group, hospital, reason), as :func:`_events` selects them."""
    path: list[str] = []
    for _case_id, event, day, diagnosis, diagnosed_by, outcome, group, _hospital, reason in events:
        day = _as_date(day)
        if event == "confirm":
            row.update(confirmed_on=day, diagnosis_code=diagnosis, diagnosed_by=diagnosed_by)
        elif event in ("assign", "accept_referral"):
            row["assigned_on"] = day
            if event == "accept_referral":
                path.append("接收")
        elif event == "admit":
            row["admitted_on"] = day
        elif event == "discharge":
            row.update(discharged_on=day, outcome=OUTCOME_LABELS.get(outcome, outcome))
        elif event == "refer":
            row["referred_on"] = day
            path.append(group or "")
        elif event == "escalate":
            path.append(group or "")
        elif event == "consult":
            path.append("会诊")
        elif event == "decline_referral":
            path.append("不予接收")
        elif event == "start_follow_up":
            row["follow_up_on"] = day
        elif event in ENDING_EVENTS:
            row.update(ended_on=day, end_reason=reason)
    row["referral_path"] = " → ".join(path) if path else None
    if state == "follow_up":
        row["follow_up_status"] = "随访中"
    elif row.get("follow_up_on"):
        row["follow_up_status"] = "随访结束"
    elif state == "treated":
        row["follow_up_status"] = "待随访"
    if any(event[1] in HISTORY_EVENTS for event in events):
        row["history"] = history_text(events)


def history_text(events: list[Any]) -> str:
    """办理过程: each step as 'label day [hospital, expert group or outcome]', in order, e.g.
    '确诊 2024-03-05；分配定点医院 2024-03-06 H533124-01；转诊 2024-03-20 EG533100；远程会诊 2024-03-22'.
    Reasons and plans are not carried (结束原因 has the last ending's)."""
    steps = []
    for event in events:
        name = event[1]
        rule = RULES.get(name)
        words = [rule.label if rule else name, _as_date(event[2]).isoformat()]
        position = HISTORY_ARGUMENTS.get(name)
        argument = event[position] if position is not None else None
        if argument:
            words.append(OUTCOME_LABELS.get(argument, argument) if name == "discharge" else argument)
        steps.append(" ".join(words))
    return STEP_SEPARATOR.join(steps)


def _put_money(row: dict[str, Any], sums: tuple[Any, ...] | None, pack: Any) -> None:
    if sums is None:
        return
    values = [_yuan(value) for value in sums]
    row.update(zip(MONEY_KEYS, values, strict=True))
    base_key = (pack.money.get("inpatient_actual_ratio_base") if pack else None) or "in_policy"
    base = values[0] if base_key == "total" else values[1]  # MONEY_KEYS: total, in_policy, *LAYERS, …
    if base > 0:
        reimbursed = sum(values[2 : 2 + len(LAYERS)], Decimal("0"))
        row["actual_ratio"] = (reimbursed / base).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def county_totals(session: Session, scope: LedgerScope, now: datetime | None = None) -> list[list[Any]]:
    """The second sheet: per county, cases, open, ended, overdue, flagged, and money — grouped in SQL."""
    now = now or utcnow()
    names = dict(session.execute(select(OrgUnit.code, OrgUnit.name)).all())
    counts = (
        select(
            Case.county_code,
            func.count(),
            func.sum(_one(Case.state.in_(OPEN_STATES))),
            func.sum(_one(Case.state.in_(TERMINAL_STATES))),
            func.sum(_one(and_(Case.state.in_(OPEN_STATES), Case.due_at < now))),
            func.sum(_one(Case.eligibility_lost_on.is_not(None))),
        )
        .where(scope.where)
        .group_by(Case.county_code)
    )
    money = (
        select(
            Case.county_code,
            func.sum(raw(Settlement.total)),
            func.sum(raw(Settlement.own_payment)),
            func.sum(raw(Settlement.shortfall)),
        )
        .join(Case, Case.id == Settlement.case_id)
        .where(scope.where)
        .group_by(Case.county_code)
    )
    sums = {row[0]: row[1:] for row in session.execute(money)}
    out = []
    for county, total, open_, ended, overdue, flagged in session.execute(counts.order_by(Case.county_code)):
        cost, own, short = sums.get(county, (0, 0, 0))
        out.append([county, names.get(county, ""), total, open_ or 0, ended or 0, overdue or 0, flagged or 0,
                    _yuan(cost), _yuan(own), _yuan(short)])  # fmt: skip
    return out


def _one(condition: Any) -> Any:
    from sqlalchemy import case

    return case((condition, 1), else_=0)


def check_fits_xlsx(session: Session, scope: LedgerScope) -> None:
    """An .xlsx sheet holds 1,048,576 rows, the header one of them: a larger ledger is refused on
    ``format`` before anything is written (CSV has no limit)."""
    cases = session.scalar(select(func.count()).select_from(Case).where(scope.where)) or 0
    if cases >= XLSX_MAX_ROWS:
        raise ValidationFailed.field(
            "format", f"台账有 {cases:,} 行，超过 Excel 一张表的上限 {XLSX_MAX_ROWS - 1:,} 行：请导出 CSV"
        )


def write_ledger(
    session: Session,
    scope: LedgerScope,
    target: Path,
    kind: str,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the ledger to ``target`` (.xlsx: two sheets; CSV: the rows, UTF-8 with BOM). Returns
    the number of cases."""
    now = now or utcnow()
    if kind == "xlsx":
        check_fits_xlsx(session, scope)
    writer = SheetWriter(target, kind)
    count = 0
    try:
        writer.sheet("台账")
        writer.write(HEADERS)
        for row in ledger_rows(session, scope, now):
            writer.write(row)
            count += 1
            if progress is not None and count % 1000 == 0:
                progress(count)
        writer.sheet("分县汇总")
        if kind == "xlsx":
            writer.write(TOTAL_HEADERS)
            for row in county_totals(session, scope, now):
                writer.write(row)
    finally:
        writer.close()
    return count


def write_totals_csv(session: Session, scope: LedgerScope, target: Path, now: datetime | None = None) -> None:
    writer = SheetWriter(target, "csv")
    writer.write(TOTAL_HEADERS)
    for row in county_totals(session, scope, now):
        writer.write(row)
    writer.close()
