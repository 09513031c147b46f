"""The ledger export: one row per case, every step's date, money summed per case, masking, logging."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from casework.actor import Actor
from casework.models import AccessLog
from casework.services.ledger import HEADERS, TOTAL_HEADERS, ledger_scope, log_export, write_ledger
from tests.conftest import DEHONG, LONGCHUAN, actor_for_unit
from tests.data_io.county import CountyBuilder
from tests.data_io.files import read_any


def build(session) -> dict[str, int]:
    return CountyBuilder(session, date.today() - timedelta(days=200)).build()


def by_state(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    header = rows[0]
    out = {}
    for row in rows[1:]:
        record = dict(zip(header, row, strict=True))
        out[record["状态"]] = record
    return out


def test_the_ledger_has_a_row_per_case_with_steps_money_and_flags(session, tmp_path):
    build(session)
    coordinator = actor_for_unit(session, "county_coordinator", LONGCHUAN)
    scope = ledger_scope(session, coordinator, LONGCHUAN)

    count = write_ledger(session, scope, tmp_path / "l.csv", "csv")

    rows = read_any(tmp_path / "l.csv")
    assert rows[0] == HEADERS and count == len(rows) - 1 == 11
    cases = by_state(rows)
    start = date.today() - timedelta(days=200)
    treated = cases["出院"]
    assert treated["入院日期"] == (start + timedelta(days=6)).isoformat()
    assert treated["出院日期"] == (start + timedelta(days=20)).isoformat()
    assert treated["出院转归"] == "好转" and treated["随访状态"] == "待随访"
    assert treated["总费用"] == "52000.00" and treated["个人自付"] == "5200.00"
    assert treated["实际报销比例"] == "1.0000"  # 46,800 reimbursed of 46,800 in policy
    assert treated["定点医院"] and treated["身份证号"][:17].isdigit()  # the county's coordinator sees full IDs
    assert cases["转诊"]["转诊路径"].count("→") == 1
    assert cases["随访"]["末次随访日期"] == (start + timedelta(days=40)).isoformat()
    assert cases["结案"]["结束原因"] == "随访期满，病情稳定" and cases["结案"]["随访状态"] == "随访结束"
    assert cases["筛查发现"]["是否超期"] == "是" and cases["结案"]["是否超期"] == "否"
    assert cases["筛查发现"]["类别"] == "建档立卡未脱贫"


def test_full_ids_are_access_logged_and_others_see_them_masked(session, tmp_path):
    build(session)
    coordinator = actor_for_unit(session, "county_coordinator", LONGCHUAN)
    scope = ledger_scope(session, coordinator, None)
    assert scope.full_ids
    assert log_export(session, coordinator, scope) == 11
    assert session.scalar(select(func.count()).select_from(AccessLog).where(AccessLog.what == "ledger_export")) == 11

    supervisor = actor_for_unit(session, "supervisor", DEHONG)
    masked = ledger_scope(session, supervisor, LONGCHUAN)
    assert not masked.full_ids and log_export(session, supervisor, masked) == 0
    write_ledger(session, masked, tmp_path / "m.xlsx", "xlsx")
    rows = read_any(tmp_path / "m.xlsx")
    assert all("********" in row[0] for row in rows[1:])
    totals = read_any(tmp_path / "m.xlsx", sheet=1)
    assert totals[0] == TOTAL_HEADERS
    assert totals[1][0] == LONGCHUAN and totals[1][2] == "11" and totals[1][7] == "156000"


def test_a_county_outside_ones_area_looks_like_no_county(session):
    import pytest

    from casework.errors import Forbidden, NotFound

    other = actor_for_unit(session, "county_coordinator", "320921")
    with pytest.raises(NotFound):
        ledger_scope(session, other, LONGCHUAN)
    with pytest.raises(NotFound):
        ledger_scope(session, Actor.system(), "999999")
    doctor = actor_for_unit(session, "village_doctor", "533124101")
    with pytest.raises(Forbidden):
        ledger_scope(session, doctor, LONGCHUAN)
