"""Spreadsheets in and out: .xlsx and CSV (GB18030 or UTF-8 with BOM), streamed both ways.

Reading: python-calamine for .xlsx (a Rust reader; see README for the measurement against
openpyxl read-only), the csv module for CSV. Writing: :mod:`casework.xlsx` (rows go into the zip
as written) or csv. Nothing here holds a whole file in memory.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from casework.errors import ValidationFailed

XLSX = "xlsx"
CSV = "csv"


class UnreadableFile(ValueError):
    """The file is not a spreadsheet we can read; the message is for the user, in Chinese."""


def kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return XLSX
    if suffix in (".csv", ".txt"):
        return CSV
    raise UnreadableFile(f"不支持的文件类型 {suffix or '（无扩展名）'}：请上传 .xlsx 或 .csv")


def detect_encoding(path: Path, probe: int = 1 << 20) -> str:
    """BOM → utf-8-sig; else strict UTF-8 if the first MiB decodes; else GB18030 (Excel's default
    on a Chinese Windows, a superset of GBK and GB2312)."""
    with path.open("rb") as handle:
        head = handle.read(probe)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    try:
        decoder.decode(head, final=False)  # a multi-byte character cut at the probe's end is fine
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


@dataclass
class Table:
    """A sheet opened for streaming: the header row, then data rows with their 1-based row numbers
    as the user sees them in Excel (the header is row 1)."""

    path: Path
    kind: str
    encoding: str | None
    header: list[str]
    _rows: Iterator[list[Any]]
    _handle: TextIO | None = None

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        for number, row in enumerate(self._rows, start=2):
            if any(cell not in (None, "") for cell in row):
                yield number, row

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def open_table(path: Path) -> Table:
    """Open the first sheet of an .xlsx or a CSV file; the first row is the header."""
    kind = kind_of(path)
    rows: Iterator[list[Any]]
    encoding = None
    handle: TextIO | None = None
    if kind == XLSX:
        from python_calamine import CalamineWorkbook

        try:
            workbook = CalamineWorkbook.from_path(str(path))
            sheet = workbook.get_sheet_by_index(0)
            rows = iter(sheet.iter_rows())
        except Exception as exc:  # calamine raises its own error types for broken archives
            raise UnreadableFile(f"无法读取 Excel 文件：{exc}") from None
    else:
        encoding = detect_encoding(path)
        handle = path.open("r", encoding=encoding, newline="")
        rows = csv.reader(handle)
    try:
        header = [str(cell or "").strip() for cell in next(rows)]
    except StopIteration:
        raise UnreadableFile("文件是空的：第一行应是表头") from None
    except UnicodeDecodeError:
        raise UnreadableFile("文件编码无法识别：请另存为 UTF-8 或 GB18030 编码的 CSV") from None
    return Table(path, kind, encoding, header, rows, handle if kind == CSV else None)


def cell_text(value: Any) -> str:
    """A cell as text: Excel gives numbers for codes typed without a leading apostrophe."""
    if type(value) is str:  # the common case first: CSV cells are all text
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def parse_day(value: Any) -> date:
    """A date as registries write it: an Excel date, 2024-03-01, 2024/3/1, 20240301, 2024年3月1日."""
    if type(value) is str and len(value) == 10 and value[4] == "-":
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value)
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = cell_text(value).replace("年", "-").replace("月", "-").replace("日", "").replace("/", "-").replace(".", "-")
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        year, month, day = (int(part) for part in text.split("-"))
        return date(year, month, day)
    except ValueError:
        raise ValueError(f"“{cell_text(value)}”不是日期（应如 2024-03-01）") from None


def map_header(header: Sequence[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Field name → column index, from Chinese or English headers (case and spaces ignored)."""
    wanted = {alias.replace(" ", "").lower(): name for name, names in aliases.items() for alias in names}
    columns: dict[str, int] = {}
    for index, title in enumerate(header):
        name = wanted.get(title.replace(" ", "").lower())
        if name is not None and name not in columns:
            columns[name] = index
    return columns


class SheetWriter:
    """Rows out to an .xlsx (streamed: each row goes to the zip as written, see
    :mod:`casework.xlsx`) or a CSV file."""

    def __init__(self, path: Path, kind: str, encoding: str = "utf-8-sig") -> None:
        self.kind = kind
        self._csv_handle: TextIO | None = None
        if kind == XLSX:
            from casework.xlsx import XlsxStream

            self._book = XlsxStream(path)
        else:
            self._csv_handle = path.open("w", encoding=encoding, newline="")
            self._csv = csv.writer(self._csv_handle)

    def sheet(self, name: str) -> None:
        """Start a sheet (xlsx); a CSV has one table, so later sheets are ignored there."""
        if self.kind == XLSX:
            self._book.sheet(name)

    def write(self, row: Sequence[Any]) -> None:
        if self.kind == XLSX:
            self._book.write(row)
        else:
            self._csv.writerow(row)  # None is written empty, dates as ISO, Decimals exact

    def close(self) -> None:
        if self.kind == XLSX:
            self._book.close()
        elif self._csv_handle is not None:
            self._csv_handle.close()


def csv_chunks(rows: Iterator[Sequence[Any]], encoding: str = "utf-8-sig") -> Iterator[bytes]:
    """CSV bytes in chunks of about 64 KiB, for a streamed HTTP answer."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    first = True
    for row in rows:
        writer.writerow(["" if v is None else (v.isoformat() if isinstance(v, date) else v) for v in row])
        if buffer.tell() > 65536:
            yield _encode(buffer, encoding, first)
            first = False
    yield _encode(buffer, encoding, first)


def _encode(buffer: io.StringIO, encoding: str, first: bool) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    if encoding == "utf-8-sig":
        return (codecs.BOM_UTF8 if first else b"") + text.encode("utf-8")
    return text.encode(encoding)


class Progress:
    """A one-line progress report on stderr (rows, rows/s, ETA) when stderr is a terminal; silent
    otherwise, so logs and pipes stay clean. Written here rather than pulling in tqdm: twenty lines."""

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None, every: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() and os.environ.get("CASEWORK_PROGRESS", "") != "off"
        self.total = total
        self.label = label
        self.every = every
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.enabled and now - self.last >= self.every:
            self.last = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.monotonic()) - self.start)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,} 行, {rate:,.0f} 行/秒"
        if self.total and rate > 0:
            left = max(0, self.total - self.done) / rate
            text += f", {100 * self.done / self.total:.0f}%, 剩余约 {left:,.0f} 秒"
        return text

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()


def count_rows(path: Path) -> int | None:
    """A cheap row count for the ETA: newlines in a CSV; None for .xlsx (unknown until read)."""
    if kind_of(path) != CSV:
        return None
    with path.open("rb") as handle:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) - 1)


RowCallback = Callable[[int, list[Any]], None]


def open_import(
    path: Path,
    aliases: dict[str, tuple[str, ...]],
    required: Sequence[tuple[str, str]],
    any_of: Sequence[tuple[tuple[str, ...], str]] = (),
    hint: str = "",
) -> tuple[Table, dict[str, int]]:
    """An uploaded file's table and where each known column stands. A file that cannot be read, or
    lacks a ``required`` column (key, Chinese label) or every column of an ``any_of`` group, is
    refused on the field ``file``, in Chinese, before any row is looked at."""
    try:
        table = open_table(path)
    except UnreadableFile as exc:
        raise ValidationFailed.field("file", str(exc)) from None
    columns = map_header(table.header, aliases)
    missing = [label for key, label in required if key not in columns]
    missing += [label for keys, label in any_of if not any(key in columns for key in keys)]
    if missing:
        raise ValidationFailed.field("file", f"缺少列：{'、'.join(missing)}{hint}")
    return table, columns
