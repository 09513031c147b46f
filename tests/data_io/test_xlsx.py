"""The streaming .xlsx writer: what goes in comes back out of a real reader, cell for cell."""

from __future__ import annotations

import csv
import shutil
import subprocess
import zipfile
from datetime import date, datetime
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from python_calamine import CalamineWorkbook

from casework.xlsx import XlsxStream, column_letters


def test_values_of_every_kind_read_back_as_written(tmp_path):
    path = tmp_path / "台账.xlsx"
    book = XlsxStream(path)
    book.sheet("台账")
    book.write(["身份证号", "a&b<c>\"'", " 前后有空格 ", "_x0041_ 不是转义", "控制\x01字符", "换行\n保留"])
    book.write(["533124196803140113", None, "", 52000, Decimal("46800.00"), Decimal("0.00"), 0.875, True])
    book.write([None, None, date(2024, 3, 1), datetime(2024, 3, 1, 12, 30), None, "最后"])
    book.write([float("nan"), Decimal("Infinity"), "长" * 40_000])
    book.sheet('分县"汇总')
    book.write(["533124", "陇川县", 11])
    book.close()

    workbook = CalamineWorkbook.from_path(str(path))
    assert workbook.sheet_names == ["台账", '分县"汇总']
    rows = workbook.get_sheet_by_index(0).to_python()
    assert rows[0][:6] == ["身份证号", "a&b<c>\"'", " 前后有空格 ", "_x0041_ 不是转义", "控制\x01字符", "换行\n保留"]
    # an ID number stays text (never 5.33E+17); gaps stay where they were
    assert rows[1][:8] == ["533124196803140113", "", "", 52000, 46800.0, 0.0, 0.875, True]
    assert rows[2][:6] == ["", "", date(2024, 3, 1), datetime(2024, 3, 1, 12, 30), "", "最后"]
    # what a cell cannot hold: NaN and infinity as text, text cut at Excel's 32,767 characters
    assert rows[3][:3] == ["nan", "Infinity", "长" * 32_767]
    assert workbook.get_sheet_by_index(1).to_python() == [["533124", "陇川县", 11]]


def test_the_package_is_well_formed_xml_with_every_sheet_declared(tmp_path):
    path = tmp_path / "x.xlsx"
    book = XlsxStream(path)
    for name in ("一", "二", "三"):
        book.sheet(name)
        book.write([name, 1])
    book.close()

    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        for member in archive.namelist():
            ElementTree.fromstring(archive.read(member))  # raises on malformed XML
        types = archive.read("[Content_Types].xml").decode()
        relations = archive.read("xl/_rels/workbook.xml.rels").decode()
        for number in (1, 2, 3):
            assert f"/xl/worksheets/sheet{number}.xml" in types
            assert f"worksheets/sheet{number}.xml" in relations
    assert CalamineWorkbook.from_path(str(path)).sheet_names == ["一", "二", "三"]


def test_sheet_names_excel_refuses_are_refused(tmp_path):
    book = XlsxStream(tmp_path / "n.xlsx")
    for name in ("", "a" * 32, "台账/2024", "a[1]", "a:b"):
        with pytest.raises(ValueError):
            book.sheet(name)
    book.sheet("台账")
    with pytest.raises(ValueError):
        book.sheet("台账")
    book.close()


def test_column_letters_follow_excel():
    assert [column_letters(i) for i in (0, 25, 26, 51, 52, 701, 702)] == ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA"]


def test_an_empty_workbook_still_opens(tmp_path):
    path = tmp_path / "empty.xlsx"
    XlsxStream(path).close()
    assert CalamineWorkbook.from_path(str(path)).sheet_names == ["Sheet1"]


def test_more_rows_than_excel_holds_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("casework.xlsx.MAX_ROWS", 2)
    book = XlsxStream(tmp_path / "big.xlsx")
    book.write(["a"])
    book.write(["b"])
    with pytest.raises(ValueError, match="at most"):
        book.write(["c"])
    book.close()


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed here")
def test_an_office_suite_opens_the_ledger_as_written(tmp_path):
    """LibreOffice Calc (when installed) reads the file: both sheets, every cell in its column
    (cells after a gap carry their reference, the others none), escapes, days and money formats."""
    path = tmp_path / "台账.xlsx"
    book = XlsxStream(path)
    book.sheet("台账")
    book.write(["身份证号", "姓名", "金额", "比例", "日期", "备注"])
    book.write(["533124196803140113", "a&b<c>", Decimal("52000.00"), Decimal("0.8750"), date(2024, 3, 1), None])
    book.write([None, "_x0041_", None, None, None, "最后"])
    book.sheet("分县汇总")
    book.write(["533124", "陇川县", 11])
    book.close()
    convert = ["soffice", "--headless", "--calc", "--convert-to",
               "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,-1", str(path)]  # fmt: skip

    subprocess.run(convert, cwd=tmp_path, check=True, capture_output=True, timeout=120)

    def rows(sheet: str) -> list[list[str]]:
        with (tmp_path / f"台账-{sheet}.csv").open(encoding="utf-8") as handle:
            return list(csv.reader(handle))

    assert rows("台账") == [
        ["身份证号", "姓名", "金额", "比例", "日期", "备注"],
        ["533124196803140113", "a&b<c>", "52000.00", "0.8750", "2024-03-01", ""],
        ["", "_x0041_", "", "", "", "最后"],
    ]
    assert rows("分县汇总") == [["533124", "陇川县", "11"]]
