"""Overdue scan time and alerts/s as open cases grow while the overdue ones stay the same.

Seeds SIZES open cases (a mix of open states across the demo counties, bulk inserts: COPY on
PostgreSQL, executemany on SQLite) of which a fixed number (--overdue, default 1,000) are past their
deadline, growing one database from the smallest size to the largest. At each size it calls
casework.services.alerts.scan directly with a Session on the bench database:

  first scan   raises every overdue alert (alerts are deleted before each repetition);
  steady scan  the next scans, which find the same cases and raise nothing new (on PostgreSQL
               measured before and after ANALYZE alerts, as autovacuum soon does).

Prints the median and max of each, alerts/s, the time (inside the scan) and plan of each statement
of a steady scan that touches cases, the scanning process's peak RSS, and the largest ÷ smallest size ratio
(goal <= 1.5: a scan's cost should follow the overdue cases, not all open ones).

    .venv/bin/python bench/overdue_scan.py [--engine sqlite|postgresql|both] [SIZES ...]
        [--overdue 1000] [--repeat 5] [--no-prepare]

Default sizes 10000 100000 (make bench); the full run is `100000 1000000`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end (a stable sort) and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, delete, event, func, select
from sqlalchemy.orm import Session

from bench import databases, demo_region, procfs, reporting, seeding
from casework.db import configure_engine
from casework.models import Alert, AlertEscalation, Case
from casework.services.alerts import scan
from workflows.case_machine import OPEN_STATES


def _profile(engine, statements: list[tuple[str, object, float]]) -> list[str]:
    """Each statement of a scan that reads cases: the time it took inside that scan, and its plan
    (as EXPLAIN gives it now, without parameters fixed in advance), condensed to one line."""
    lines = []
    with engine.connect() as conn:
        for sql, params, took in statements:
            if "cases" not in sql:
                continue
            head = " ".join(sql.split())[:34]
            if engine.dialect.name == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
                plan = [r[-1] for r in rows]
            else:
                rows = conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + sql, params).fetchall()
                plan = [
                    r[0].strip().removeprefix("->  ")
                    for r in rows
                    if any(node in r[0] for node in ("Scan", "Join", "Loop", "Sort")) and ":" not in r[0]
                ]
            lines.append(f"{reporting.ms(took):>7} ms  {head} …: {' | '.join(plan)}")
        conn.rollback()
    return lines


def _wipe_alerts(engine) -> None:
    with Session(engine) as session:
        session.execute(delete(AlertEscalation))
        session.execute(delete(Alert))
        session.commit()


def _steady(engine, now: datetime, repeat: int) -> tuple[list[float], list[tuple[str, object, float]]]:
    """Scans that find the same overdue cases and raise nothing: their times, and the statements
    of the last one with the time each took."""
    times: list[float] = []
    captured: list[tuple[str, object, float]] = []
    started_at: list[float] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        started_at.append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany) -> None:
        captured.append((statement, parameters, time.perf_counter() - started_at.pop()))

    for n in range(repeat):
        if n == repeat - 1:
            event.listen(engine, "before_cursor_execute", before)
            event.listen(engine, "after_cursor_execute", after)
        with Session(engine) as session:
            started = time.perf_counter()
            report = scan(session, now)
            times.append(time.perf_counter() - started)
        assert report.raised == 0
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)
    return times, captured


def bench_engine(engine_name: str, args) -> list[dict]:
    sizes = sorted(args.sizes)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = []
    with databases.bench_database(engine_name) as db:
        plan = seeding.SeedPlan(demo_region.counties(db, now.date()), now, overdue=lambda i: False)
        # psycopg prepares a statement on the server after prepare_threshold (5) executions.
        connect_args = {"prepare_threshold": None} if args.no_prepare and engine_name == "postgresql" else {}
        engine = create_engine(db.sqlalchemy_url, connect_args=connect_args)
        configure_engine(engine)
        seeded = 0
        for size in sizes:
            done = reporting.step(f"{engine_name}: seed cases {seeded + 1:,}–{size:,} (open, mixed states)")
            seeding.seed(db, plan, seeded + 1, size + 1)
            # The same number overdue at every size, spread over all ids (old and new cases alike).
            seeding.mark_overdue(db, now, size // args.overdue)
            databases.analyze(db)
            seeded = size
            done()
            with Session(engine) as session:
                open_cases = session.scalar(select(func.count()).where(Case.state.in_(OPEN_STATES)))
                overdue = session.scalar(select(func.count()).where(Case.state.in_(OPEN_STATES), Case.due_at < now))
            procfs.reset_peak_rss(os.getpid())
            first, raised = [], 0
            for _ in range(args.repeat):
                _wipe_alerts(engine)
                with Session(engine) as session:
                    started = time.perf_counter()
                    report = scan(session, now)
                    first.append(time.perf_counter() - started)
                raised = report.raised
                assert not report.skipped
            steady = _steady(engine, now, args.repeat)
            cold = None
            if engine_name == "postgresql":
                # Right after a burst of alerts PostgreSQL has no statistics on them until
                # autovacuum analyzes the table (within a minute or so): measure both states.
                cold = (steady[0], _profile(engine, steady[1]))
                with engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE alerts")
                    conn.commit()
                steady = _steady(engine, now, args.repeat)
            rss = procfs.status_kb(os.getpid(), "VmHWM") / 1024
            row = {
                "size": size,
                "open": open_cases,
                "overdue": overdue,
                "raised": raised,
                "first": statistics.median(first),
                "first_max": max(first),
                "steady": statistics.median(steady[0]),
                "steady_max": max(steady[0]),
                "rss": rss,
            }
            rows.append(row)
            print(
                f"  {size:>9,} open cases, {overdue:,} overdue: first scan {reporting.ms(row['first'])} ms "
                f"(max {reporting.ms(row['first_max'])}), {raised / row['first']:,.0f} alerts/s; steady scan "
                f"{reporting.ms(row['steady'])} ms (max {reporting.ms(row['steady_max'])}); "
                f"scanning process peak RSS {rss:.0f} MiB"
            )
            if cold is not None:
                print(
                    f"      before ANALYZE alerts: steady scan {reporting.ms(statistics.median(cold[0]))} ms;"
                    " its statements:"
                )
                for line in cold[1]:
                    print(f"      {line}")
                print("      after ANALYZE alerts, the statements of a steady scan:")
            else:
                print("      the statements of a steady scan:")
            for line in _profile(engine, steady[1]):
                print(f"      {line}")
        engine.dispose()
    return rows


def main() -> None:
    p = reporting.parser(__doc__)
    p.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000], help="open cases (default 10000 100000)")
    p.add_argument("--overdue", type=int, default=1000, help="overdue cases at every size (default 1000)")
    p.add_argument("--repeat", type=int, default=5, help="scans of each kind per size (default 5)")
    p.add_argument(
        "--no-prepare",
        action="store_true",
        help="PostgreSQL: never prepare statements (psycopg prepare_threshold=None)",
    )
    args = p.parse_args()
    if min(args.sizes) < args.overdue:
        p.error("the smallest size must hold the overdue cases")
    print(__doc__.split("\n\n")[0])
    print(reporting.machine_info())
    print(f"sizes {[f'{s:,}' for s in sorted(args.sizes)]}, {args.overdue:,} overdue, {args.repeat} scans of each kind")
    summary = []
    for engine in reporting.engines(args.engine):
        print(f"\n{engine}")
        rows = bench_engine(engine, args)
        summary.append((engine, rows[0], rows[-1]))
    print("\nsummary (goal: largest ÷ smallest <= 1.5)")
    for engine, small, large in summary:
        print(
            f"  {engine:<11} first scan {reporting.ms(small['first'])} → {reporting.ms(large['first'])} ms "
            f"(x{large['first'] / small['first']:.2f}, {large['size'] // small['size']}x the cases); "
            f"steady {reporting.ms(small['steady'])} → {reporting.ms(large['steady'])} ms "
            f"(x{large['steady'] / small['steady']:.2f}); "
            f"alerts/s at {large['size']:,}: {large['raised'] / large['first']:,.0f}"
        )


if __name__ == "__main__":
    main()
