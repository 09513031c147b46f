"""Roster import and ledger export at scale, against the engine's own bulk load in the same run.

For each engine and size N, in a fresh database (migrated, the demo region loaded):

  roster import   ``import_persons`` on a generated N-row UTF-8 CSV roster of one county (every row
                  validated: GB 11643, village by name in the county, category, date), then the same
                  file re-imported (every row unchanged). Baseline: the same rows read with the csv
                  module and bulk-loaded with no validation — COPY on PostgreSQL, executemany on
                  SQLite — into an emptied persons table. Goal: >= 20,000 rows/s on PostgreSQL and
                  >= 0.3 x the baseline.
  ledger export   N cases (5 events each, a bill for every other one) seeded with COPY/executemany,
                  then ``write_ledger`` to CSV and to .xlsx, each in a child process whose peak RSS
                  is printed (goal: export >= 20,000 rows/s, RSS < 200 MB).
  libraries       (once) iterating a generated 100,000-row .xlsx with python-calamine and, when
                  installed, openpyxl read-only; writing 100,000 ledger-shaped rows with XlsxWriter in
                  constant-memory mode and with casework.xlsx: the measurements behind the choices.

The roster import and each export run in a child process of their own, whose peak RSS is printed.

    .venv/bin/python bench/imports.py [--engine sqlite|postgresql|both] [SIZES ...]
        [--skip-export] [--formats csv,xlsx] [--no-libraries]

Default sizes: 100000. The figures in docs/performance.md come from `100000 1000000`.
It makes its own databases and rows rather than using bench/databases.py and bench/seeding.py:
its rows are rosters and ledgers, not the open cases those seed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import os
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

PG_ADMIN_URL = os.environ.get("CASEWORK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
COUNTY = "533124"  # Longchuan: four villages in the demo region
VILLAGES = ["迭撒村", "芒弄村", "芒东村", "腊撒村"]
VILLAGE_CODES = ["533124101201", "533124101202", "533124201201", "533124201202"]
CATEGORIES = ["建档立卡未脱贫", "建档立卡新识别", "脱贫继续扶持期内", "poor_exited_2014_2015"]
CATEGORY_CODES = ["poor_not_exited", "poor_newly_identified", "poor_exited_supported", "poor_exited_2014_2015"]


def peak_rss_mb() -> float:
    """This process's own high-water mark (VmHWM): getrusage's ru_maxrss survives exec, so a child
    spawned from a big parent would report the parent's peak."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def database(engine: str, folder: Path) -> Iterator[str]:
    name = f"casework_bench_{uuid.uuid4().hex[:10]}"
    if engine == "sqlite":
        yield f"sqlite:///{folder / (name + '.db')}"
        return
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(url: str) -> None:
    from flask_migrate import upgrade
    from sqlalchemy.orm import Session

    from api.app import create_app
    from casework.services.demo import load_demo

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        from api.extensions import db

        db.engine.dispose()
    engine = make_engine(url)
    with Session(engine) as session:
        load_demo(session)
    engine.dispose()


def make_engine(url: str):
    from sqlalchemy import create_engine

    from casework.db import configure_engine

    engine = create_engine(url)
    configure_engine(engine)
    return engine


def person_row(i: int) -> tuple[str, str, int, int, str]:
    from casework.id_number import make_id_number

    born = date(1940, 1, 1) + timedelta(days=i // 1000)
    return make_id_number(COUNTY, born, i % 1000), f"居民{i}", i % 4, i % 4, f"2016-{1 + i % 12:02d}-01"


def write_roster(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["身份证号", "姓名", "村/社区", "类别", "认定日期"])
        for i in range(n):
            number, name, village, category, since = person_row(i)
            out.writerow([number, name, VILLAGES[village], CATEGORIES[category], since])


def wipe_persons(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in ("access_log", "settlements", "follow_up_visits", "case_holders", "case_events", "alerts"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
        for table in ("cases", "person_categories", "persons"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


def baseline_load(url: str, path: Path) -> float:
    """Read the same CSV and bulk-load its rows as they are: no validation, no history."""
    from casework.id_number import parse_id_number

    now = datetime.now(UTC)
    start = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        next(rows)
        villages = dict(zip(VILLAGES, VILLAGE_CODES, strict=True))
        categories = dict(zip(CATEGORIES, CATEGORY_CODES, strict=True))

        def records():
            for number, name, village, category, since in rows:
                born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
                sex = "M" if int(number[16]) % 2 else "F"
                yield number, name, sex, born, villages[village], categories[category], since, now

        if url.startswith("sqlite"):
            conn = sqlite3.connect(url.removeprefix("sqlite:///"))
            conn.executemany(
                "INSERT INTO persons (id_number, name, sex, birth_date, village_code, category, category_since,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (n, m, s, b.isoformat(), v, c, d, now.replace(tzinfo=None).isoformat(" "))
                    for n, m, s, b, v, c, d, _ in records()
                ),
            )
            conn.commit()
            conn.close()
        else:
            pg_url = url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
                columns = "id_number, name, sex, birth_date, village_code, category, category_since, created_at"
                with cur.copy(f"COPY persons ({columns}) FROM STDIN") as copy:
                    for record in records():
                        copy.write_row(record)
    del parse_id_number
    return time.perf_counter() - start


def _import_child(url: str, path: Path, queue) -> None:
    from sqlalchemy.orm import Session

    from casework.actor import Actor
    from casework.services.roster import import_persons

    engine = make_engine(url)
    with Session(engine) as session:
        start = time.perf_counter()
        report = import_persons(session, Actor.system(), path, county=COUNTY)
        took = time.perf_counter() - start
    engine.dispose()
    assert report.committed and report.invalid == 0, report.totals()
    queue.put((took, report.totals(), peak_rss_mb()))


def roster_import(url: str, path: Path) -> tuple[float, dict, float]:
    """``import_persons`` in a child process of its own: its peak RSS is the import's alone."""
    return in_child(_import_child, url, path)


def in_child(target, *args):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def seed_cases(url: str, n: int) -> float:
    """N cases over the imported persons: confirmed → assigned → admitted → discharged, every other
    one with a bill; written with COPY (PostgreSQL) or executemany (SQLite)."""
    start = time.perf_counter()
    engine = make_engine(url)
    with engine.connect() as conn:
        person_ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM persons ORDER BY id")]
        hospital = conn.exec_driver_sql(
            "SELECT hospital_code FROM hospital_designations WHERE policy_code = 'longchuan-2017' "
            "AND disease_code = 'esophageal_cancer' ORDER BY hospital_code"
        ).scalar()
    engine.dispose()
    base = datetime(2024, 1, 1, tzinfo=UTC)
    sqlite = url.startswith("sqlite")

    def ts(value: datetime):
        return value.replace(tzinfo=None).isoformat(" ") if sqlite else value

    case_columns = (
        "id, person_id, disease_code, policy_code, category, state, version, village_code, township_code, county_code, "
        "city_code, province_code, hospital_code, source, screened_at, entered_state_at, due_at, created_at, updated_at"
    )
    event_columns = "case_id, seq, event, from_state, to_state, actor_username, at, occurred_at, data"
    money_columns = (
        "case_id, person_id, hospital_code, kind, admitted_at, discharged_at, year, referral_compliant, "
        "special_treatment, total, in_policy, basic_insurance, critical_illness_insurance, medical_assistance, "
        "government_backstop, charity, other, own_payment, ratio_on_total, ratio_on_in_policy, below_floor, "
        "shortfall, recorded_by, recorded_at"
    )
    import json

    def rows(i: int):
        pid = person_ids[i % len(person_ids)]
        at = base + timedelta(minutes=i % 100_000)
        case = (i + 1, pid, "esophageal_cancer", "longchuan-2017", "poor_not_exited", "treated", 5,
                VILLAGE_CODES[i % 4], VILLAGE_CODES[i % 4][:9], COUNTY, "533100", "530000", hospital, "health_check",
                ts(at), ts(at + timedelta(days=20)), None, ts(at), ts(at))  # fmt: skip
        steps = [
            ("screen", None, "screened", {"disease_code": "esophageal_cancer", "source": "health_check"}, 0),
            ("confirm", "screened", "confirmed", {"diagnosis_code": "C15.9", "diagnosed_by": hospital,
                                                  "diagnosed_at": (at + timedelta(days=2)).isoformat()}, 2),
            ("assign", "confirmed", "assigned", {"hospital_id": hospital, "plan": "手术"}, 4),
            ("admit", "assigned", "in_treatment", {"admitted_at": (at + timedelta(days=6)).isoformat()}, 6),
            ("discharge", "in_treatment", "treated", {"discharged_at": (at + timedelta(days=20)).isoformat(),
                                                      "outcome": "improved"}, 20),
        ]  # fmt: skip
        events = [
            (
                i + 1,
                seq,
                name,
                src,
                dst,
                "bench",
                ts(at),
                ts(at + timedelta(days=d)),
                json.dumps(data, ensure_ascii=False),
            )
            for seq, (name, src, dst, data, d) in enumerate(steps, start=1)
        ]
        money = None
        if i % 2 == 0:
            money = (i + 1, pid, hospital, "inpatient", ts(at + timedelta(days=6)), ts(at + timedelta(days=20)), 2024,
                     True, False, 5_200_000, 4_680_000, 3_120_000, 780_000, 520_000, 260_000, 0, 0, 520_000,
                     9000, 10000, False, 0, "bench", ts(at + timedelta(days=21)))  # fmt: skip
        return case, events, money

    if sqlite:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        for start_i in range(0, n, 50_000):
            chunk = [rows(i) for i in range(start_i, min(n, start_i + 50_000))]
            conn.executemany(
                f"INSERT INTO cases ({case_columns}) VALUES ({', '.join('?' * 19)})", [c for c, _, _ in chunk]
            )
            conn.executemany(
                f"INSERT INTO case_events ({event_columns}) VALUES ({', '.join('?' * 9)})",
                [e for _, events, _ in chunk for e in events],
            )
            conn.executemany(
                f"INSERT INTO settlements ({money_columns}) VALUES ({', '.join('?' * 24)})",
                [m for _, _, m in chunk if m],
            )
            conn.commit()
        conn.close()
    else:
        pg_url = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY cases ({case_columns}) FROM STDIN") as copy:
                for i in range(n):
                    copy.write_row(rows(i)[0])
            with cur.copy(f"COPY case_events ({event_columns}) FROM STDIN") as copy:
                for i in range(n):
                    for event in rows(i)[1]:
                        copy.write_row(event)
            with cur.copy(f"COPY settlements ({money_columns}) FROM STDIN") as copy:
                for i in range(0, n, 2):
                    copy.write_row(rows(i)[2])
            cur.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), %s)", (n,))
            cur.execute("ANALYZE")
    return time.perf_counter() - start


def _export_child(url: str, kind: str, queue) -> None:
    from sqlalchemy.orm import Session

    from casework.actor import Actor
    from casework.services.ledger import ledger_scope, write_ledger

    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as folder, Session(engine) as session:
        target = Path(folder) / f"ledger.{kind}"
        start = time.perf_counter()
        count = write_ledger(session, ledger_scope(session, Actor.system(), COUNTY), target, kind)
        took = time.perf_counter() - start
        size = target.stat().st_size
    queue.put((count, took, peak_rss_mb(), size))


def export(url: str, kind: str) -> tuple[int, float, float, int]:
    return in_child(_export_child, url, kind)


def readers(folder: Path, n: int = 100_000) -> None:
    import xlsxwriter
    from python_calamine import CalamineWorkbook

    path = folder / "readers.xlsx"
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = book.add_worksheet()
    for i in range(n):
        for c, value in enumerate(person_row(i)):
            sheet.write(i, c, value)
    book.close()
    start = time.perf_counter()
    count = sum(1 for _ in CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).iter_rows())
    took = time.perf_counter() - start
    print(f"  readers: python-calamine {count:,} rows in {took:.2f} s ({count / took:,.0f} rows/s)")
    try:
        import openpyxl
    except ImportError:
        print("  readers: openpyxl not installed (pip install openpyxl to compare)")
        return
    start = time.perf_counter()
    workbook = openpyxl.load_workbook(str(path), read_only=True)
    count = sum(1 for _ in workbook.active.iter_rows(values_only=True))
    took = time.perf_counter() - start
    print(f"  readers: openpyxl read-only {count:,} rows in {took:.2f} s ({count / took:,.0f} rows/s)")


def ledger_like_row(i: int) -> list:
    """44 cells shaped like a ledger row: text, codes, dates, money, gaps."""
    from decimal import Decimal

    number, name, village, category, _since = person_row(i)
    day = date(2024, 1, 1) + timedelta(days=i % 300)
    money = [Decimal(52_000_00 + i % 1000).scaleb(-2)] * 9 if i % 2 else [None] * 9
    return [number, name, "男", 50 + i % 30, "陇川县", VILLAGE_CODES[village], VILLAGES[village], CATEGORIES[category],
            "esophageal_cancer", "食管癌", "longchuan-2017", "健康体检", "出院", day, day + timedelta(days=2), "C15.9",
            "H533124-01", day + timedelta(days=4), "H533124-01", "陇川县人民医院", day + timedelta(days=6),
            day + timedelta(days=20), "好转", None, None, None, "待随访", None, None, None, None, None, None, *money,
            Decimal("0.9000") if i % 2 else None, "否"][:44]  # fmt: skip


def writers(folder: Path, n: int = 100_000) -> None:
    """The same n ledger-shaped rows through XlsxWriter (constant-memory mode) and casework.xlsx."""
    import xlsxwriter

    from casework.xlsx import XlsxStream

    rows = [ledger_like_row(i) for i in range(n)]
    start = time.perf_counter()
    book = xlsxwriter.Workbook(str(folder / "xlsxwriter.xlsx"), {"constant_memory": True, "strings_to_numbers": False})
    sheet = book.add_worksheet("台账")
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, date):
                sheet.write_datetime(r, c, value, dates)
            elif isinstance(value, str):
                sheet.write_string(r, c, value)
            else:
                sheet.write_number(r, c, float(value))
    book.close()
    took = time.perf_counter() - start
    print(f"  writers: XlsxWriter constant_memory {n:,} x 44 in {took:.2f} s ({n / took:,.0f} rows/s)")
    start = time.perf_counter()
    book = XlsxStream(folder / "stream.xlsx")
    book.sheet("台账")
    for row in rows:
        book.write(row)
    book.close()
    took = time.perf_counter() - start
    print(f"  writers: casework.xlsx {n:,} x 44 in {took:.2f} s ({n / took:,.0f} rows/s)")


def run(engine: str, n: int, folder: Path, skip_export: bool, formats: list[str]) -> None:
    print(f"\n== {engine}, {n:,} rows")
    roster = folder / f"roster_{n}.csv"
    if not roster.exists():
        write_roster(roster, n)
    with database(engine, folder) as url:
        prepare(url)
        took = baseline_load(url, roster)
        print(f"  baseline bulk load ({'COPY' if engine == 'postgresql' else 'executemany'}, no validation): "
              f"{took:.1f} s, {n / took:,.0f} rows/s")  # fmt: skip
        baseline = n / took
        wipe_persons(url)
        took, _, rss = roster_import(url, roster)
        rate = n / took
        print(f"  roster import (validated, new):   {took:.1f} s, {rate:,.0f} rows/s = {rate / baseline:.2f} x "
              f"baseline, peak RSS {rss:.0f} MB")  # fmt: skip
        took, _, rss = roster_import(url, roster)
        print(f"  roster re-import (all unchanged):    {took:.1f} s, {n / took:,.0f} rows/s, peak RSS {rss:.0f} MB")
        if skip_export:
            return
        took = seed_cases(url, n)
        print(f"  seeded {n:,} cases, {5 * n:,} events, {n // 2:,} bills in {took:.1f} s")
        for kind in formats:
            count, took, rss, size = export(url, kind)
            print(f"  ledger export {kind:4}: {count:,} rows in {took:.1f} s, {count / took:,.0f} rows/s, "
                  f"peak RSS {rss:.0f} MB, file {size / 1e6:.0f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--formats", default="csv,xlsx", help="ledger formats to export (csv,xlsx)")
    parser.add_argument("--no-libraries", "--no-readers", action="store_true", help="skip the reader/writer lines")
    args = parser.parse_args()
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    os.environ.setdefault("CASEWORK_PROGRESS", "off")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        if not args.no_libraries:
            readers(folder)
            writers(folder)
        for n in args.sizes:
            for engine in engines:
                run(engine, n, folder, args.skip_export, args.formats.split(","))


if __name__ == "__main__":
    main()
