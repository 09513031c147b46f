"""Ledger migration: rows rebuilt through the state machine; forbidden histories refused; the round trip."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.models import Case, CaseEvent, Person, User
from casework.services.cases import replay
from casework.services.demo import load_demo
from casework.services.ledger import HEADERS, ledger_scope, write_ledger
from casework.services.ledger_import import import_cases
from tests.conftest import LONGCHUAN, make_engine, migrate
from tests.data_io.county import CountyBuilder
from tests.data_io.files import read_any, write_csv, write_xlsx
from tests.databases import throwaway_database

START = date.today() - timedelta(days=200)


def export(session: Session, path):
    write_ledger(session, ledger_scope(session, Actor.system(), LONGCHUAN), path, path.suffix[1:])
    return read_any(path)


@pytest.fixture
def empty_session(engine_name, tmp_path):
    """A second database of the same engine: migrated, the demo region loaded, no persons or cases."""
    with throwaway_database(engine_name, tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        with Session(engine) as session:
            load_demo(session)
            session.query(User).delete()
            session.commit()
            yield session
        engine.dispose()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_round_trip_export_import_export_gives_the_same_ledger(session, empty_session, tmp_path, fmt):
    builder = CountyBuilder(session, START)
    builder.build()
    builder.histories()  # referrals answered and come back, accepted elsewhere; a case reopened
    first = export(session, tmp_path / f"first.{fmt}")
    history = HEADERS.index("办理过程")
    assert sum(1 for row in first[1:] if row[history]) == 4

    report = import_cases(empty_session, tmp_path / f"first.{fmt}")

    assert report.errors == {} and report.imported == len(first) - 1 == 15 and report.committed
    second = export(empty_session, tmp_path / f"second.{fmt}")
    assert second[0] == first[0] == HEADERS
    assert sorted(second[1:]) == sorted(first[1:])
    # the rebuilt histories are the original ones, step for step (reasons and plans aside)
    original = _histories(session)
    assert _histories(empty_session) == original
    assert ["screen", "confirm", "assign", "admit", "refer", "consult", "discharge"] in original.values()
    assert ["screen", "confirm", "assign", "admit", "discharge", "start_follow_up", "close", "reopen", "assign"] in (
        original.values()
    )
    # every rebuilt history replays through the machine, recorded by the import
    for case_id in empty_session.scalars(select(Case.id)):
        assert replay(empty_session, case_id).state == empty_session.get(Case, case_id).state
    authors = set(empty_session.scalars(select(CaseEvent.actor_username).distinct()))
    assert authors == {"import"}

    again = import_cases(empty_session, tmp_path / f"first.{fmt}")
    assert (again.imported, again.present, again.invalid) == (0, 15, 0)
    assert empty_session.scalar(select(func.count()).select_from(Case)) == 15
    assert sorted(export(empty_session, tmp_path / f"third.{fmt}")[1:]) == sorted(first[1:])


def _histories(session: Session) -> dict[str, list[str]]:
    """Each case's events in order, by its person's ID number (the same in both databases)."""
    rows = session.execute(
        select(Person.id_number, CaseEvent.event)
        .join(Case, Case.person_id == Person.id)
        .join(CaseEvent, CaseEvent.case_id == Case.id)
        .order_by(Case.id, CaseEvent.seq)
    )
    out: dict[str, list[str]] = {}
    for number, event in rows:
        out.setdefault(number, []).append(event)
    return out


def ledger_row(**values: str) -> list[str]:
    base = {
        "身份证号": "533124196803140113",
        "姓名": "岩温",
        "村/社区代码": "533124101201",
        "类别": "建档立卡未脱贫",
        "病种代码": "esophageal_cancer",
        "状态": "出院",
        "筛查日期": "2024-03-01",
        "确诊日期": "2024-03-05",
        "诊断编码": "C15.9",
        "确诊医院代码": "H533124-01",
        "分配日期": "2024-03-06",
        "定点医院代码": "H533124-01",
        "入院日期": "2024-03-10",
        "出院日期": "2024-03-25",
        "出院转归": "好转",
    }
    base.update(values)
    return [base.get(h, "") for h in HEADERS]


def test_rows_the_rules_forbid_are_refused_with_the_reason(session, tmp_path):
    from tests.casework.helpers import designated_hospital

    hospital = designated_hospital(session, "county")
    not_designated = "H533124-99"
    ids = iter(
        ["533124196803140113", "533124197001010016", "533124197202020027", "533124197303030038",
         "533124197404040049", "53312419750505005X", "533124197606060060"]
    )  # fmt: skip
    from casework.id_number import check_character

    def pid() -> str:
        first17 = next(ids)[:17]
        return first17 + check_character(first17)

    def row(**values: str) -> list[str]:
        return ledger_row(**{"身份证号": pid(), "确诊医院代码": hospital, "定点医院代码": hospital, **values})

    rows = [
        HEADERS,
        row(),  # fine
        row(入院日期=""),  # discharged, never admitted
        row(定点医院代码=not_designated),
        row(出院日期="2024-03-09"),  # discharged before admission
        row(状态="结案"),  # closed, with no closing date
        row(诊断编码="C16.1"),  # gastric, not oesophageal
        row(转诊日期="2024-03-20", 转诊路径="EG533100 → 接收", 状态="分配定点医院"),  # an ended referral
    ]
    path = write_csv(tmp_path / "台账.csv", rows, "gb18030")

    report = import_cases(session, path)

    assert report.invalid == 6 and not report.committed
    assert session.scalar(select(func.count()).select_from(Case)) == 0
    assert session.scalar(select(func.count()).select_from(Person)) == 0
    errors = [report.errors.get(n, "") for n in range(2, 9)]
    assert errors[0] == ""
    assert errors[1].startswith("出院日期") and "入院救治" not in errors[1] and "不能出院" in errors[1]
    assert errors[2].startswith("定点医院代码") and ("定点医院" in errors[2] or "没有这家医院" in errors[2])
    assert errors[3].startswith("出院日期") and "日期顺序不对" in errors[3]
    assert errors[4].startswith("结束日期")
    assert errors[5].startswith("诊断编码")
    assert errors[6].startswith("转诊路径")

    kept = import_cases(session, path, skip_invalid=True)
    assert kept.imported == 1 and kept.committed
    case = session.scalar(select(Case))
    assert case.state == "treated" and case.hospital_code == hospital
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)).all()
    assert [e.event for e in events] == ["screen", "confirm", "assign", "admit", "discharge"]
    assert events[3].occurred_at.astimezone().date() in (date(2024, 3, 10), date(2024, 3, 9))
    assert (
        str(events[3].occurred_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()) == "2024-03-10"
    )


def test_an_xlsx_ledger_with_a_bad_header_is_refused_naming_the_columns(session, tmp_path):
    from casework.errors import ValidationFailed

    path = write_xlsx(tmp_path / "台账.xlsx", [["身份证号", "姓名"], ["533124196803140113", "岩温"]])
    with pytest.raises(ValidationFailed) as error:
        import_cases(session, path)
    assert "病种代码" in error.value.errors["file"][0]


def test_a_history_the_columns_cannot_hold_is_rebuilt_from_its_steps_and_checked(session, tmp_path):
    from casework.id_number import check_character
    from tests.casework.helpers import designated_hospital, expert_group
    from tests.conftest import DEHONG

    hospital = designated_hospital(session, "county")
    group = expert_group(session, DEHONG)
    steps = [
        "确诊 2024-03-05",
        f"分配定点医院 2024-03-06 {hospital}",
        "入院 2024-03-10",
        f"转诊 2024-03-15 {group}",
        "远程会诊 2024-03-17",
        "出院 2024-03-25 好转",
    ]
    numbers = iter(["53312419700101001", "53312419710202002", "53312419720303003", "53312419730404004",
                    "53312419740505005"])  # fmt: skip

    def row(history: list[str], **values: str) -> list[str]:
        first17 = next(numbers)
        return ledger_row(
            **{"身份证号": first17 + check_character(first17), "确诊医院代码": hospital, "定点医院代码": hospital,
               "转诊日期": "2024-03-15", "转诊路径": f"{group} → 会诊", "办理过程": "；".join(history), **values}
        )  # fmt: skip

    rows = [
        HEADERS,
        row(steps),  # referred, answered by a consultation, back in treatment, discharged
        row(steps, 出院日期="2024-03-26"),  # the column says another day than the history
        row([*steps[:3], *steps[4:]], 转诊路径="会诊"),  # a consultation with no referral before it
        row([*steps[:3], "手术 2024-03-12", *steps[3:]]),  # not a step of the workflow
        row([steps[0], f"分配定点医院 2024-03-04 {hospital}", *steps[2:]]),  # before the confirmation
    ]
    path = write_csv(tmp_path / "台账.csv", rows, "utf-8-sig")

    report = import_cases(session, path, skip_invalid=True)

    errors = [report.errors.get(n, "") for n in range(2, 7)]
    assert errors[0] == "" and report.imported == 1 and report.invalid == 4
    assert errors[1] == "出院日期：与办理过程不符（按办理过程应为 2024-03-25）"
    assert errors[2].startswith("办理过程：第4步（远程会诊 2024-03-17）") and "不能远程会诊" in errors[2]
    assert errors[3].startswith("办理过程：第4步“手术”不是办理步骤")
    assert errors[4].startswith("办理过程：第2步 2024-03-04 早于第1步 2024-03-05")
    case = session.scalar(select(Case))
    events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)).all()
    assert [e.event for e in events] == ["screen", "confirm", "assign", "admit", "refer", "consult", "discharge"]
    assert case.state == "treated" and case.referral_group_code is None and case.hospital_code == hospital
    assert replay(session, case.id).state == "treated"
