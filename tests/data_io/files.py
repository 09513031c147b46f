"""Real files, written the way offices write them: GB18030 CSV (Excel on a Chinese Windows),
UTF-8 CSV with a BOM, and .xlsx."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xlsxwriter
from python_calamine import CalamineWorkbook


def write_csv(path: Path, rows: Sequence[Sequence[Any]], encoding: str) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[Any]]) -> Path:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("名册")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    book.close()
    return path


def read_any(path: Path, sheet: int = 0) -> list[list[str]]:
    """Every row as text, whatever the format (for asserting on reports and exports)."""
    if path.suffix == ".xlsx":
        rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(sheet).to_python()
        return [[_text(v) for v in row] for row in rows]
    raw = path.read_bytes()
    encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "gb18030"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = raw.decode("utf-8")
    return [list(row) for row in csv.reader(text.splitlines())]


def _text(value: Any) -> str:
    from casework.tabular import cell_text

    return cell_text(value)
