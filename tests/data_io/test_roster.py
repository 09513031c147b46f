"""Roster import: real files in every encoding, bad rows of every kind, eligibility changes, re-imports."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from casework.actor import Actor
from casework.errors import ValidationFailed
from casework.id_number import make_id_number
from casework.models import Case, Person, PersonCategory
from casework.services.cases import screen
from casework.services.eligibility import category_on, record_category
from casework.services.roster import import_persons, write_report
from tests.casework.helpers import OESOPHAGEAL
from tests.conftest import LONGCHUAN, actor_for_unit
from tests.data_io.files import read_any, write_csv, write_xlsx

HEADER = ["身份证号", "姓名", "村/社区", "类别", "认定日期"]
ALICE = make_id_number("533124", date(1968, 3, 14), 113)
BOB = make_id_number("533124", date(1975, 7, 2), 224)
CAROL = make_id_number("533124", date(2012, 1, 30), 331)


def good_rows() -> list[list[str]]:
    return [
        HEADER,
        [ALICE, "岩温", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
        [BOB, "李春梅", "533124201201", "poor_newly_identified", "2017/5/8"],
        [CAROL, "排玉香", "芒弄村", "脱贫继续扶持期内", "2018年9月1日"],
    ]


def coordinator(session) -> Actor:
    return actor_for_unit(session, "county_coordinator", LONGCHUAN)


def persons(session) -> dict[str, Person]:
    session.expire_all()
    return {p.id_number: p for p in session.scalars(select(Person))}


@pytest.mark.parametrize("fmt", ["gb18030", "utf-8-sig", "xlsx"])
def test_a_roster_in_every_format_registers_persons_with_their_history(session, tmp_path, fmt):
    rows = good_rows()
    path = write_xlsx(tmp_path / "名册.xlsx", rows) if fmt == "xlsx" else write_csv(tmp_path / "名册.csv", rows, fmt)

    report = import_persons(session, coordinator(session), path)

    assert report.committed and (report.new, report.invalid) == (3, 0)
    found = persons(session)
    assert found[ALICE].name == "岩温" and found[ALICE].village_code == "533124101201"
    assert found[BOB].category == "poor_newly_identified" and found[BOB].category_since == date(2017, 5, 8)
    assert found[CAROL].sex == "M" and found[CAROL].birth_date == date(2012, 1, 30)
    assert session.scalar(select(func.count()).select_from(PersonCategory)) == 3
    out = tmp_path / f"report.{path.suffix[1:]}"
    write_report(path, report, out)
    back = read_any(out)
    assert back[0][-2:] == ["结果", "错误"] and back[1][1] == "岩温"
    assert [row[-2] for row in back[1:]] == ["新增"] * 3


def test_bad_rows_of_every_kind_are_reported_in_chinese_and_nothing_is_written(session, tmp_path):
    wrong_check = ALICE[:-1] + ("0" if ALICE[-1] != "0" else "1")
    rows = [
        *good_rows(),
        [wrong_check, "张三", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
        ["53312419680314", "李四", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
        [make_id_number("533124", date(1980, 1, 1), 5), "", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
        [make_id_number("533124", date(1980, 1, 1), 7), "王五", "小尖村", "建档立卡未脱贫", "2016-03-01"],
        [make_id_number("533124", date(1980, 1, 1), 9), "赵六", "迭撒村", "富裕户", "2016-03-01"],
        [make_id_number("533124", date(1980, 1, 1), 11), "钱七", "迭撒村", "低保对象", "2999-01-01"],
        [make_id_number("533124", date(1980, 1, 1), 13), "孙八", "迭撒村", "低保对象", "去年"],
        [ALICE, "岩温", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
    ]
    path = write_csv(tmp_path / "名册.csv", rows, "gb18030")

    report = import_persons(session, coordinator(session), path)

    assert not report.committed and report.invalid == 8
    assert persons(session) == {}
    out = tmp_path / "report.csv"
    write_report(path, report, out)
    back = read_any(out)
    errors = [row[-1] for row in back[1:]]
    assert back[1][-2].startswith("未导入")
    assert "校验码不符" in errors[3]
    assert "应为18位" in errors[4]
    assert "姓名：不能为空" in errors[5]
    assert "没有村/社区“小尖村”" in errors[6]  # a village of another county
    assert "未知类别“富裕户”" in errors[7]
    assert "认定日期：晚于今天" in errors[8]
    assert "不是日期" in errors[9]
    assert "重复" in errors[10]


def test_names_are_kept_as_written_and_control_characters_refused(session, tmp_path):
    dave = make_id_number("533124", date(1990, 2, 2), 441)
    rows = [
        HEADER,
        [ALICE, "买买提·艾力", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
        [BOB, "张　三\\李", "迭撒村", "建档立卡未脱贫", "2016-03-01"],  # an ideographic space, a backslash
        [CAROL, "排\t玉香", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
        [dave, "岩\n温", "迭撒村", "建档立卡未脱贫", "2016-03-01"],
    ]
    path = write_csv(tmp_path / "名册.csv", rows, "utf-8-sig")

    # one row per batch: every batch goes through the writer while the next row is read
    refused = import_persons(session, coordinator(session), path, batch_size=1)

    assert not refused.committed and refused.invalid == 2 and persons(session) == {}
    assert [refused.outcome(n)[0] for n in (2, 3)] == ["未导入（文件有错误行，整份文件未导入）"] * 2
    assert refused.errors[4] == refused.errors[5] == "姓名：含有换行、制表符等控制字符"

    kept = import_persons(session, coordinator(session), path, batch_size=1, skip_invalid=True)

    assert kept.committed and (kept.new, kept.invalid) == (2, 2)
    found = persons(session)
    assert set(found) == {ALICE, BOB}
    assert found[ALICE].name == "买买提·艾力" and found[BOB].name == "张　三\\李"
    assert session.scalar(select(func.count()).select_from(PersonCategory)) == 2


def test_a_failure_while_writing_rolls_the_whole_file_back(session, tmp_path, monkeypatch):
    from casework.services import roster

    written = []
    add = roster._Bulk.add

    def fail_on_the_second_batch(self, rows):
        if written:
            raise RuntimeError("the database went away")
        written.append(len(rows))
        add(self, rows)

    monkeypatch.setattr(roster._Bulk, "add", fail_on_the_second_batch)
    path = write_csv(tmp_path / "名册.csv", good_rows(), "utf-8-sig")

    with pytest.raises(RuntimeError, match="went away"):
        import_persons(session, coordinator(session), path, batch_size=1)

    assert written == [1] and persons(session) == {}
    assert session.scalar(select(func.count()).select_from(PersonCategory)) == 0


def test_skip_invalid_imports_the_good_rows_only(session, tmp_path):
    rows = [*good_rows(), ["123", "坏行", "迭撒村", "建档立卡未脱贫", "2016-03-01"]]
    path = write_csv(tmp_path / "名册.csv", rows, "utf-8-sig")

    report = import_persons(session, coordinator(session), path, skip_invalid=True)

    assert report.committed and (report.new, report.invalid) == (3, 1)
    assert set(persons(session)) == {ALICE, BOB, CAROL}


def test_dry_run_changes_nothing_but_reports_what_would_happen(session, tmp_path):
    path = write_csv(tmp_path / "名册.csv", good_rows(), "gb18030")

    report = import_persons(session, coordinator(session), path, dry_run=True)

    assert report.new == 3 and not report.committed
    assert persons(session) == {}


def test_reimporting_the_same_file_changes_nothing(session, tmp_path):
    path = write_xlsx(tmp_path / "名册.xlsx", good_rows())
    import_persons(session, coordinator(session), path)
    before = session.scalar(select(func.count()).select_from(PersonCategory))

    again = import_persons(session, coordinator(session), path)

    assert (again.new, again.changed, again.unchanged) == (0, 0, 3)
    assert session.scalar(select(func.count()).select_from(PersonCategory)) == before == 3


def test_a_category_change_adds_a_dated_entry_and_flags_open_cases(session, tmp_path):
    import_persons(session, coordinator(session), write_csv(tmp_path / "a.csv", good_rows(), "gb18030"))
    alice = persons(session)[ALICE]
    case = screen(
        session,
        coordinator(session),
        person_id=alice.id,
        disease_code=OESOPHAGEAL,
        source="health_check",
        screened_at=datetime(2020, 6, 1, tzinfo=UTC),
    )
    # Alice left the poverty registry and is now 低保边缘, not a Longchuan 2017 category.
    changed = [HEADER, [ALICE, "岩温", "迭撒村", "低保边缘", "2024-01-15"]]

    report = import_persons(session, coordinator(session), write_csv(tmp_path / "b.csv", changed, "gb18030"))

    assert (report.changed, report.flagged_cases) == (1, 1)
    alice = persons(session)[ALICE]
    assert (alice.category, alice.category_since) == ("marginal", date(2024, 1, 15))
    history = session.scalars(
        select(PersonCategory.category).where(PersonCategory.person_id == alice.id).order_by(PersonCategory.since)
    ).all()
    assert history == ["poor_not_exited", "marginal"]
    assert category_on(session, alice.id, date(2023, 12, 31)) == "poor_not_exited"
    assert category_on(session, alice.id, date(2024, 1, 15)) == "marginal"
    flagged = session.get(Case, case["id"])
    session.refresh(flagged)
    assert flagged.category == "poor_not_exited"  # eligibility at screening stays a fact
    assert flagged.eligibility_lost_on == date(2024, 1, 15)
    assert flagged.state == "screened"  # flagged, not dropped


def test_record_category_never_overwrites_and_an_older_entry_keeps_the_current(session, tmp_path):
    import_persons(session, coordinator(session), write_csv(tmp_path / "a.csv", good_rows(), "gb18030"))
    bob = persons(session)[BOB]

    assert record_category(session, bob, "poor_not_exited", date(2015, 1, 1), "test") is True
    assert record_category(session, bob, "poor_not_exited", date(2015, 1, 1), "test") is False
    session.commit()

    bob = persons(session)[BOB]
    assert bob.category == "poor_newly_identified"  # the 2015 entry is history, not the newest
    assert category_on(session, bob.id, date(2016, 6, 1)) == "poor_not_exited"


def test_a_coordinator_imports_only_into_their_own_county(session, tmp_path):
    path = write_csv(tmp_path / "a.csv", good_rows(), "gb18030")
    with pytest.raises(ValidationFailed):
        import_persons(session, coordinator(session), path, county="320921")


def test_a_file_without_the_required_columns_is_refused_naming_them(session, tmp_path):
    path = write_csv(tmp_path / "a.csv", [["身份证号", "姓名"], [ALICE, "岩温"]], "utf-8-sig")
    with pytest.raises(ValidationFailed) as error:
        import_persons(session, coordinator(session), path)
    assert "村/社区" in error.value.errors["file"][0]


def test_english_headers_are_accepted(session, tmp_path):
    rows = [["id_number", "name", "village_code", "category", "category_since"], *good_rows()[1:]]
    report = import_persons(session, coordinator(session), write_csv(tmp_path / "a.csv", rows, "utf-8"))
    assert report.new == 3
