"""A streaming .xlsx writer for the one shape of workbook we write: sheets of plain values (text,
numbers, dates), no formatting beyond number formats for days, money and ratios.

Why not XlsxWriter, which wrote the ledger before: its constant-memory mode keeps memory flat, but
every cell goes through several Python calls (range checks, escaping by regex, a write to a text
stream), about 10 µs a cell, so a 44-column ledger ran at ~5,000 rows/s against ~25,000 for CSV.
Here a row is one string built from the cells' values and written to the zip member as the rows
come, compressed on the way (bench/imports.py, `writers` line, and README). The package parts are
modelled on XlsxWriter's, less its theme and document properties; cells carry their reference only
after a gap (the attribute is optional). python-calamine reads every value back, and LibreOffice
Calc opens the files with each cell in its place (tests/data_io/test_xlsx.py). Sheets are written
in order, each finished before the next begins, so memory holds one row at a time.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

_EPOCH = date(1899, 12, 30)  # Excel's day 0 (the 1900 date system, leap-year bug included)
_EPOCH_TIME = datetime(1899, 12, 30)
# Characters XML 1.0 cannot carry, markup, Excel's own _xHHHH_ escapes, and edge blanks that
# need xml:space="preserve": anything else goes out as it is.
_NEEDS_CARE = re.compile(r"[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_|^\s|\s$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_FLUSH_BYTES = 1 << 18
MAX_ROWS = 1_048_576  # Excel's limit for one sheet
_MAX_TEXT = 32_767
_BAD_SHEET_NAME = re.compile(r"[\[\]:*?/\\]")
_MAX_COLUMNS = 16_384


def column_letters(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


@lru_cache(maxsize=8192)  # labels, codes, places and dates repeat on every row; names do not
def _text_cell(value: str) -> str:
    """A text cell, inline (a shared-string table would have to be held until the end). Excel
    holds 32,767 characters in a cell: longer text is cut there, as XlsxWriter does."""
    if len(value) > _MAX_TEXT:
        value = value[:_MAX_TEXT]
    if _NEEDS_CARE.search(value) is None:
        return f'<c t="inlineStr"><is><t>{value}</t></is></c>'
    value = value.replace("_x", "_x005F_x") if "_x" in value else value
    value = _CONTROL.sub(lambda m: f"_x{ord(m.group()):04X}_", escape(value))
    return f'<c t="inlineStr"><is><t xml:space="preserve">{value}</t></is></c>'


class XlsxStream:
    """``sheet(name)`` starts a sheet, ``write(row)`` appends a row to it, ``close()`` finishes
    the file. None and "" leave a cell empty; text stays text (an ID number is never a number)."""

    def __init__(self, path: Path | str) -> None:
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=3)
        self._names: list[str] = []
        self._member: Any = None
        self._parts: list[str] = []
        self._size = 0
        self._row = 0
        self._letters = [column_letters(i) for i in range(64)]

    def sheet(self, name: str) -> None:
        if not name or len(name) > 31 or _BAD_SHEET_NAME.search(name) or name in self._names:
            raise ValueError(f"not a sheet name Excel accepts: {name!r}")
        self._end_sheet()
        self._names.append(name)
        member = f"xl/worksheets/sheet{len(self._names)}.xml"
        # No ZIP64: Excel is picky about it, and a sheet's XML stays under its 2 GiB limit (at most
        # 1,048,576 rows; a ledger row is ~1.2 kB).
        self._member = self._zip.open(member, "w")
        selected = ' tabSelected="1"' if len(self._names) == 1 else ""
        self._member.write(
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                f'<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}"><sheetViews><sheetView{selected} workbookViewId="0"/>'
                '</sheetViews><sheetFormatPr defaultRowHeight="15"/><sheetData>'
            ).encode()
        )
        self._row = 0

    def write(self, row: Sequence[Any]) -> None:
        if self._member is None:
            self.sheet("Sheet1")
        self._row += 1
        number = self._row
        if number > MAX_ROWS:
            raise ValueError(f"an .xlsx sheet holds at most {MAX_ROWS:,} rows")
        if len(row) > len(self._letters):
            if len(row) > _MAX_COLUMNS:
                raise ValueError(f"an .xlsx sheet holds at most {_MAX_COLUMNS:,} columns")
            self._letters = [column_letters(i) for i in range(len(row))]
        letters = self._letters
        cells = [f'<row r="{number}">']
        follows = 0  # a cell right after the previous one needs no reference (r is optional)
        for column, value in enumerate(row):
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                if not value:
                    continue
                cell = _text_cell(value)
            elif kind is Decimal:
                # money keeps its two places, a ratio its four, as the figures were computed
                digits = str(value)
                point = digits.find(".")
                if "E" in digits or not value.is_finite():
                    cell = f"<c><v>{_number(value)}</v></c>" if value.is_finite() else _text_cell(digits)
                else:
                    style = _DECIMAL_STYLES.get(len(digits) - point - 1, "") if point >= 0 else ""
                    cell = f"<c{style}><v>{digits}</v></c>"
            elif kind is int or kind is float:
                digits = _number(value)
                cell = f"<c><v>{digits}</v></c>" if digits else _text_cell(str(value))
            elif kind is date:
                cell = f'<c s="1"><v>{(value - _EPOCH).days}</v></c>'
            elif kind is bool:
                cell = f'<c t="b"><v>{int(value)}</v></c>'
            elif isinstance(value, datetime):
                cell = f'<c s="2"><v>{(value.replace(tzinfo=None) - _EPOCH_TIME).total_seconds() / 86400!r}</v></c>'
            elif isinstance(value, date):
                cell = f'<c s="1"><v>{(value - _EPOCH).days}</v></c>'
            else:
                text = str(value)
                if not text:
                    continue
                cell = _text_cell(text)
            if column != follows:
                cell = f'<c r="{letters[column]}{number}"{cell[2:]}'
            cells.append(cell)
            follows = column + 1
        cells.append("</row>")
        line = "".join(cells)
        self._parts.append(line)
        self._size += len(line)
        if self._size > _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._parts:
            self._member.write("".join(self._parts).encode())
            self._parts.clear()
            self._size = 0

    def _end_sheet(self) -> None:
        if self._member is None:
            return
        self._flush()
        self._member.write(
            b'</sheetData><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
            b"</worksheet>"
        )
        self._member.close()
        self._member = None

    def close(self) -> None:
        if self._zip.fp is None:
            return
        if not self._names:
            self.sheet("Sheet1")
        self._end_sheet()
        count = len(self._names)
        sheets = "".join(
            f'<sheet name="{escape(name, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>'
            for i, name in enumerate(self._names, start=1)
        )
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_WORKSHEET_TYPE}"/>'
            for i in range(1, count + 1)
        )
        relations = "".join(
            f'<Relationship Id="rId{i}" Type="{_OFFICE_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, count + 1)
        )
        parts = {
            "[Content_Types].xml": _CONTENT_TYPES.format(overrides=overrides),
            "_rels/.rels": _ROOT_RELS,
            "xl/workbook.xml": _WORKBOOK.format(sheets=sheets),
            "xl/_rels/workbook.xml.rels": _WORKBOOK_RELS.format(
                relations=relations,
                styles=f'<Relationship Id="rId{count + 1}" Type="{_OFFICE_REL}/styles" Target="styles.xml"/>',
            ),
            "xl/styles.xml": _STYLES,
        }
        for name, text in parts.items():
            self._zip.writestr(name, _DECLARATION + text)
        self._zip.close()


def _number(value: int | float | Decimal) -> str | None:
    """A number as Excel's XML writes it; None for NaN and infinities, which a cell cannot hold."""
    if type(value) is int:
        return str(value)
    if not math.isfinite(value):
        return None
    if type(value) is float:
        return repr(value)  # the shortest text that reads back as the same double
    text = str(value)
    return repr(float(value)) if "E" in text else text


_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_OFFICE_REL = _REL
_PACKAGE_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_WORKSHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_CONTENT_TYPES = (
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "{overrides}</Types>"
)
_ROOT_RELS = (
    f'<Relationships xmlns="{_PACKAGE_REL}"><Relationship Id="rId1" Type="{_OFFICE_REL}/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><workbookPr/><bookViews><workbookView/></bookViews>'
    "<sheets>{sheets}</sheets></workbook>"
)
_WORKBOOK_RELS = f'<Relationships xmlns="{_PACKAGE_REL}">{{relations}}{{styles}}</Relationships>'
# Styles: 0 general; 1 a day (yyyy-mm-dd); 2 a moment (yyyy-mm-dd hh:mm:ss); 3 money (0.00, a
# built-in format); 4 a ratio (0.0000).
_DECIMAL_STYLES = {2: ' s="3"', 4: ' s="4"'}  # by places after the point
_STYLES = (
    f'<styleSheet xmlns="{_MAIN}"><numFmts count="3"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/><numFmt numFmtId="166" formatCode="0.0000"/>'
    "</numFmts>"
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/>'
    '</fill></fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="5"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="2" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
)
