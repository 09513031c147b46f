"""Case finding from discharge records: matched, proposed, already open, not eligible, unknown diagnosis."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from casework.id_number import make_id_number
from casework.models import Case
from casework.services.cases import screen
from casework.services.discharges import import_discharges
from casework.services.eligibility import record_category
from tests.casework.helpers import OESOPHAGEAL
from tests.conftest import LONGCHUAN, actor_for_unit, new_person
from tests.data_io.files import read_any, write_csv, write_xlsx

HEADER = ["身份证号", "主要诊断编码", "医院", "入院日期", "出院日期"]


def test_discharge_records_propose_cases_for_eligible_people_only(session, tmp_path):
    eligible = new_person(session, name="岩温")
    open_already = new_person(session, name="李春梅", born=date(1970, 1, 1))
    exited = new_person(session, name="排玉香", born=date(1972, 2, 2))
    record_category(session, exited, "marginal", date(2023, 1, 1), "test")  # out of Longchuan's categories
    session.commit()
    screen(
        session,
        actor_for_unit(session, "county_coordinator", LONGCHUAN),
        person_id=open_already.id,
        disease_code=OESOPHAGEAL,
        source="health_check",
        screened_at=datetime(2024, 1, 5, tzinfo=UTC),
    )
    stranger = make_id_number("533124", date(1980, 5, 5), 77)
    rows = [
        HEADER,
        [eligible.id_number, "C15.9", "H533124-01", "2024-03-01", "2024-03-20"],  # proposed
        [eligible.id_number, "C15.3", "H533124-01", "2024-04-01", "2024-04-10"],  # now already open
        [open_already.id_number, "C15.9", "H533124-01", "2024-03-01", "2024-03-20"],  # already open
        [exited.id_number, "C15.9", "H533124-01", "2024-03-01", "2024-03-20"],  # exited in 2023
        [exited.id_number, "C15.9", "H533124-01", "2022-03-01", "2022-03-20"],  # eligible back then
        [eligible.id_number, "J18.9", "H533124-01", "2024-03-01", "2024-03-20"],  # pneumonia: not in catalogue
        [stranger, "C15.9", "H533124-01", "2024-03-01", "2024-03-20"],  # not in the roster
        ["533124", "C15.9", "H533124-01", "2024-03-01", "2024-03-20"],  # broken ID
    ]
    path = write_xlsx(tmp_path / "出院.xlsx", rows)

    report = import_discharges(session, path)

    assert report.totals() == {
        "rows": 8,
        "matched": 6,
        "proposed": 2,
        "already_open": 2,
        "not_registered": 1,
        "not_eligible": 1,
        "unknown_diagnosis": 1,
        "invalid": 1,
    }
    proposed = session.scalars(select(Case).where(Case.source == "registry_match").order_by(Case.id)).all()
    assert [(c.person_id, c.state) for c in proposed] == [(eligible.id, "screened"), (exited.id, "screened")]
    assert proposed[1].category == "poor_not_exited"  # the category on the discharge day
    assert "C15.9" in proposed[0].note

    from casework.services.roster import write_report

    write_report(path, report, tmp_path / "r.xlsx")
    back = read_any(tmp_path / "r.xlsx")
    assert [row[-2] for row in back[1:4]] == ["已生成待筛查病例", "已有在办病例", "已有在办病例"]
    assert back[-1][-2] == "错误" and "身份证号" in back[-1][-1]


def test_dry_run_proposes_nothing(session, tmp_path):
    person = new_person(session)
    path = write_csv(tmp_path / "出院.csv", [HEADER, [person.id_number, "C15.9", "", "", "2024-03-20"]], "gb18030")
    report = import_discharges(session, path, dry_run=True)
    assert report.counts["proposed"] == 1
    assert session.scalars(select(Case)).all() == []
