"""Transitions per second through the served API, against the raw-SQL ceiling of the same work.

Seeds screened cases (version 1, one screen event) in Longchuan, starts `python -m api.cli serve`
(gunicorn, CASEWORK_SCHEDULER=off) and has C concurrent clients fire `confirm` then `exclude` on
their own cases (POST /api/v1/cases/{id}/events with If-Match) for T seconds, as the county
coordinator. Then the same C clients run the same transactions through the driver alone (psycopg /
sqlite3): lock the row (SELECT ... FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), check the
version, UPDATE cases, INSERT case_events, COMMIT. Prints transitions/s, p50/p95/p99 latency,
API ÷ raw, the CPU split between load generator, API workers and PostgreSQL, and the API workers'
peak RSS.

The load generator is http.client keep-alive connections, one per client thread, spread over
several processes; its own CPU share is printed so it is seen not to be what is measured.

    .venv/bin/python bench/transitions.py [--engine sqlite|postgresql|both] [CLIENTS ...]
        [--seconds 5] [--workers N]

CLIENTS are the concurrency levels to run (default 8); goal: API ÷ raw >= 0.5 and p99 < 25 ms at
32 clients.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end (a stable sort) and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import databases, procfs, reporting, seeding, served_api

COUNTY = "533124"  # Longchuan
HOSPITAL = "H533124-01"
DISEASE = "esophageal_cancer"
USERNAME = "bench.coordinator"
EVENTS = (("confirm", 1), ("exclude", 2))  # event, the version it expects


@dataclass
class Target:
    kind: str  # http | sqlite | postgresql
    port: int = 0
    token: str = ""
    sqlite_path: str = ""
    pg_url: str = ""
    user_id: int = 0


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    cpu: float = 0.0  # load generator CPU seconds (processes' user + system)
    elapsed: float = 0.0
    exhausted: int = 0  # client threads that ran out of cases before the deadline

    def merge(self, other: Outcome) -> None:
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.cpu += other.cpu
        self.elapsed = max(self.elapsed, other.elapsed)
        self.exhausted += other.exhausted


# --- one client thread ----------------------------------------------------------------------------


def request_bodies() -> dict[str, bytes]:
    """The JSON body of each event's request: confirm (diagnosed yesterday at HOSPITAL), exclude."""
    diagnosed_at = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    confirm = {"diagnosis_code": "C15.9", "diagnosed_by": HOSPITAL, "diagnosed_at": diagnosed_at}
    return {
        "confirm": json.dumps({"event": "confirm", "data": confirm}).encode(),
        "exclude": json.dumps({"event": "exclude", "reason": "bench: not eligible"}).encode(),
    }


def _http_client(target: Target, ids: list[int], deadline_box: list[float], out: Outcome, gate, keep: list) -> None:
    bodies = request_bodies()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.token}"}
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
    conn.connect()
    gate.wait()  # connected: the process says ready; wait for the common start
    gate.wait()
    deadline = deadline_box[0]
    for case_id in ids:
        for event, version in EVENTS:
            if time.monotonic() >= deadline:
                keep.append(conn)  # closed once the parent has read the CPU counters
                return
            path = f"/api/v1/cases/{case_id}/events"
            started = time.perf_counter()
            for attempt in (1, 2):
                try:
                    conn.request("POST", path, bodies[event], {**headers, "If-Match": f'"{version}"'})
                    response = conn.getresponse()
                    response.read()
                    break
                except (http.client.HTTPException, ConnectionError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
                    out.statuses["reconnect"] += 1
                    if attempt == 2:
                        raise
            out.latencies.append(time.perf_counter() - started)
            out.statuses[response.status] += 1
    out.exhausted += 1
    keep.append(conn)


_SELECT = "SELECT state, version FROM cases WHERE id = {p} AND county_code = {p}"
_UPDATE = (
    "UPDATE cases SET state = {p}, version = {p}, entered_state_at = {p}, due_at = {p}, updated_at = {p} WHERE id = {p}"
)
_INSERT = (
    "INSERT INTO case_events (case_id, seq, event, from_state, to_state, actor_id, actor_username,"
    " org_unit_code, at, occurred_at, data, reason) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
_MOVES = {"confirm": ("screened", "confirmed", 7), "exclude": ("confirmed", "excluded", None)}


def _raw_client(target: Target, ids: list[int], deadline_box: list[float], out: Outcome, gate, keep: list) -> None:
    """The same transaction through the driver alone: the ceiling for the API."""
    sqlite = target.kind == "sqlite"
    if sqlite:
        conn = databases.BenchDatabase("sqlite", "", Path("."), sqlite_path=Path(target.sqlite_path)).sqlite()
    else:
        import psycopg

        conn = psycopg.connect(target.pg_url)
    move = RawMove(conn, sqlite, target.user_id)
    gate.wait()
    gate.wait()
    deadline = deadline_box[0]
    for case_id in ids:
        for event, version in EVENTS:
            if time.monotonic() >= deadline:
                keep.append(conn)  # closed once the parent has read the CPU counters
                return
            started = time.perf_counter()
            if not move(case_id, event, version):
                out.statuses["conflict"] += 1
                continue
            out.latencies.append(time.perf_counter() - started)
            out.statuses[200] += 1
    out.exhausted += 1
    keep.append(conn)


class RawMove:
    """One transition through the driver alone (psycopg or sqlite3 connection ``conn``): lock the
    row, check state and version, UPDATE cases, INSERT case_events, COMMIT. Calling it returns
    False, having rolled back, when the case is not in the state and version the event expects."""

    def __init__(self, conn, sqlite: bool, user_id: int) -> None:
        self.conn, self.sqlite, self.user_id = conn, sqlite, user_id
        p = "?" if sqlite else "%s"
        self.select = _SELECT.format(p=p) + ("" if sqlite else " FOR UPDATE")
        self.update, self.insert = _UPDATE.format(p=p), _INSERT.format(p=p)
        self.data = {
            "confirm": json.dumps({"diagnosis_code": "C15.9", "diagnosed_by": HOSPITAL, "diagnosed_at": "2026-01-01"}),
            "exclude": "{}",
        }

    def __call__(self, case_id: int, event: str, version: int) -> bool:
        conn, sqlite = self.conn, self.sqlite
        now = datetime.now(UTC)
        source, dest, days = _MOVES[event]
        due = now + timedelta(days=days) if days else None
        stamp, due = (databases.sqlite_ts(now), due and databases.sqlite_ts(due)) if sqlite else (now, due)
        if sqlite:
            conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(self.select, (case_id, COUNTY)).fetchone()
        if row is None or row[1] != version or row[0] != source:
            conn.execute("ROLLBACK") if sqlite else conn.rollback()
            return False
        conn.execute(self.update, (dest, version + 1, stamp, due, stamp, case_id))
        history = (case_id, version + 1, event, source, dest, self.user_id, USERNAME, COUNTY, stamp, stamp)
        conn.execute(self.insert, (*history, self.data[event], None))
        if sqlite:
            conn.execute("COMMIT")
        else:
            conn.commit()
        return True


# --- the load: processes of threads ---------------------------------------------------------------


def _process(target: Target, id_lists: list[list[int]], seconds: float, ready, go, results, release) -> None:
    outcomes = [Outcome() for _ in id_lists]
    box = [0.0]
    gate = threading.Barrier(len(id_lists) + 1)
    keep: list = []
    run = _http_client if target.kind == "http" else _raw_client
    threads = [
        threading.Thread(target=run, args=(target, ids, box, out, gate, keep))
        for ids, out in zip(id_lists, outcomes, strict=True)
    ]
    for t in threads:
        t.start()
    gate.wait()  # every client connected
    ready.put(os.getpid())
    go.wait()
    cpu0 = sum(os.times()[:2])
    started = time.monotonic()
    box[0] = started + seconds
    gate.wait()
    for t in threads:
        t.join()
    total = Outcome(elapsed=time.monotonic() - started)
    for out in outcomes:
        total.merge(out)
    total.cpu = sum(os.times()[:2]) - cpu0
    results.put(total)
    release.wait(120)  # keep the connections (and their PostgreSQL backends) until CPU is read
    for conn in keep:
        conn.close()


def run_load(
    target: Target, clients: int, seconds: float, ids: list[int], watch: list[int], pg_name: str | None = None
) -> tuple[Outcome, dict[int, float], float | None]:
    """C clients over ``ids`` (client k takes ids[k::C]) for ``seconds``. Returns the merged outcome,
    the CPU seconds each ``watch`` process (the server's) used meanwhile, and those of the
    PostgreSQL backends serving ``pg_name`` (None without it)."""
    ctx = mp.get_context("fork")
    processes = min(clients, max(2, clients // 8))
    slices = [ids[k::clients] for k in range(clients)]
    ready, go, results, release = ctx.Queue(), ctx.Event(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_process, args=(target, slices[n::processes], seconds, ready, go, results, release))
        for n in range(processes)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    backends = procfs.pg_backends(pg_name) if pg_name else []
    watched0 = {pid: procfs.cpu_seconds(pid) for pid in watch}
    db0 = sum(procfs.cpu_seconds(pid) for pid in backends)
    go.set()
    total = Outcome()
    for _ in procs:
        total.merge(results.get(timeout=seconds + 120))
    watched = {pid: procfs.cpu_seconds(pid) - before for pid, before in watched0.items()}
    db_cpu = sum(procfs.cpu_seconds(pid) for pid in backends) - db0 if pg_name else None
    release.set()
    for proc in procs:
        proc.join()
    return total, watched, db_cpu


# --- the bench ------------------------------------------------------------------------------------


def _row(label: str, out: Outcome, cores: int, served_cpu: float, db_cpu: float | None) -> dict:
    ok = out.statuses.get(200, 0)
    rate = ok / out.elapsed if out.elapsed else 0.0
    errors = {k: v for k, v in out.statuses.items() if k != 200}
    budget = out.elapsed * cores
    return {
        "label": label,
        "rate": rate,
        "p50": reporting.percentile(out.latencies, 50),
        "p95": reporting.percentile(out.latencies, 95),
        "p99": reporting.percentile(out.latencies, 99),
        "n": ok,
        "errors": errors,
        "client_cpu": out.cpu / budget if budget else 0.0,
        "served_cpu": served_cpu / budget if budget else 0.0,
        "db_cpu": (db_cpu / budget if budget else 0.0) if db_cpu is not None else None,
        "exhausted": out.exhausted,
    }


def _print_row(r: dict) -> None:
    db = f"{r['db_cpu'] * 100:5.1f}%" if r["db_cpu"] is not None else "    - "
    print(
        f"  {r['label']:<22} {r['rate']:8.0f}/s  p50 {reporting.ms(r['p50']):>6}  p95 {reporting.ms(r['p95']):>6}  "
        f"p99 {reporting.ms(r['p99']):>6} ms  n={r['n']:<6}  cpu: loadgen {r['client_cpu'] * 100:4.1f}%  "
        f"api {r['served_cpu'] * 100:5.1f}%  db {db}"
        + (f"  errors {r['errors']}" if r["errors"] else "")
        + (f"  ({r['exhausted']} clients ran out of cases)" if r["exhausted"] else "")
    )


class Ids:
    """Hands out blocks of fresh screened case ids; every phase gets cases nobody touched."""

    def __init__(self, stop: int) -> None:
        self.next = 1
        self.stop = stop

    def take(self, count: int) -> list[int]:
        count = min(count, self.stop - self.next)
        block = list(range(self.next, self.next + count))
        self.next += count
        return block


def bench_engine(engine: str, args) -> list[dict]:
    cores = len(os.sched_getaffinity(0))
    # Cases each phase may need: two transitions per case at the generous rates below.
    per_api = math.ceil(args.api_cap * args.seconds / 2)
    per_raw = math.ceil(args.raw_cap * args.seconds / 2)
    per_warm = math.ceil(args.api_cap * args.warmup / 2)
    total = sum(per_api + per_raw + per_warm for _ in args.clients)
    rows = []
    with databases.bench_database(engine) as db:
        token, uid = seeding.screened_for_a_coordinator(db, COUNTY, DISEASE, USERNAME, total)
        ids = Ids(total + 1)
        with served_api.Server(db, args.workers) as server:
            idle_rss = server.worker_rss_mb()[0]
            print(
                f"  server: {server.workers} gevent worker(s);"
                f" idle worker RSS {idle_rss:.0f} MiB"
            )
            target = Target("http", port=server.port, token=token)
            for clients in args.clients:
                run_load(target, clients, args.warmup, ids.take(per_warm), [])
                server.reset_peaks()
                server_pids = [server.process.pid, *server.worker_pids()]
                # The API's pooled connections were opened during the warm-up.
                out, served, db_cpu = run_load(
                    target, clients, args.seconds, ids.take(per_api), server_pids, db.pg_name
                )
                row = _row(f"API   C={clients}", out, cores, sum(served.values()), db_cpu)
                row["rss"] = server.worker_rss_mb()[1]
                row["clients"], row["kind"] = clients, "api"
                rows.append(row)
                _print_row(row)
                split = " / ".join(f"{served[p]:.1f}" for p in server_pids[1:])
                print(
                    f"  {'':<22} API worker peak RSS (VmHWM) {row['rss']:.0f} MiB; CPU s per worker {split}"
                    f" over {out.elapsed:.1f} s"
                )
        raw = Target(engine, sqlite_path=str(db.sqlite_path or ""), pg_url=db.url, user_id=uid)
        for clients in args.clients:
            out, _, db_cpu = run_load(raw, clients, args.seconds, ids.take(per_raw), [], db.pg_name)
            row = _row(f"raw   C={clients}", out, cores, 0.0, db_cpu)
            row["clients"], row["kind"] = clients, "raw"
            rows.append(row)
            _print_row(row)
    return rows


def main() -> None:
    p = reporting.parser(__doc__)
    p.add_argument("clients", nargs="*", type=int, default=[8], help="concurrency levels (default 8)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each API run")
    p.add_argument("--workers", type=int, help="API worker processes (default: serve's, 1 on SQLite, 2 on PostgreSQL)")
    p.add_argument("--api-cap", type=int, default=2500, help="transitions/s the API could reach (sizes the seed)")
    p.add_argument("--raw-cap", type=int, default=15000, help="transitions/s the driver could reach (sizes the seed)")
    args = p.parse_args()
    print(__doc__.split("\n\n")[0])
    print(reporting.machine_info())
    print(f"runs: clients {args.clients}, {args.seconds:g} s each after {args.warmup:g} s warm-up")
    summary = []
    for engine in reporting.engines(args.engine):
        print(f"\n{engine}")
        rows = bench_engine(engine, args)
        for clients in args.clients:
            api = next(r for r in rows if r["kind"] == "api" and r["clients"] == clients)
            raw = next(r for r in rows if r["kind"] == "raw" and r["clients"] == clients)
            summary.append((engine, clients, api, raw))
    print("\nsummary (goal: API ÷ raw >= 0.5, API p99 < 25 ms at 32 clients)")
    print(
        f"  {'engine':<11} {'C':>3} {'API/s':>8} {'raw/s':>8} {'API÷raw':>8} {'API p99':>9} {'raw p99':>9} {'RSS':>7}"
    )
    for engine, clients, api, raw in summary:
        ratio = api["rate"] / raw["rate"] if raw["rate"] else float("nan")
        print(
            f"  {engine:<11} {clients:>3} {api['rate']:8.0f} {raw['rate']:8.0f} {ratio:8.2f} "
            f"{reporting.ms(api['p99']):>6} ms {reporting.ms(raw['p99']):>6} ms {api['rss']:5.0f} MiB"
        )


if __name__ == "__main__":
    main()
