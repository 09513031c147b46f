"""Shared plumbing for the bench scripts: throwaway databases, bulk seeding, the served API, /proc.

Not a bench itself. Every script creates its own databases (a SQLite file in a temp dir, or a
PostgreSQL database named casework_bench_<random>), migrates them with ``python -m api.cli db
upgrade``, loads the demo region with ``python -m api.cli demo`` and drops them afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("CASEWORK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ("sqlite", "postgresql")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- command line and reporting -------------------------------------------------------------------


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    return p


def engines(choice: str) -> list[str]:
    wanted = list(ENGINES) if choice == "both" else [choice]
    if "postgresql" in wanted and pg_version() is None:
        print(f"PostgreSQL at {PG_ADMIN_URL} unreachable: skipping it", flush=True)
        wanted.remove("postgresql")
    return wanted


def pg_version() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.OperationalError:
        return None


def machine_info() -> str:
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cores} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}\n"
        f"software: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"PostgreSQL {pg_version() or 'unreachable'}, psycopg {psycopg.__version__}\n"
        f"load average at start: {load} (the machine may be shared: compare ratios, not absolutes)"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def step(message: str) -> Callable[[], None]:
    """Print ``message …`` now and the seconds it took when the returned function is called."""
    started = time.perf_counter()
    print(f"  {message} …", end="", flush=True)
    return lambda: print(f" {time.perf_counter() - started:.1f} s", flush=True)


# --- throwaway databases --------------------------------------------------------------------------


@dataclass
class BenchDatabase:
    engine: str  # sqlite | postgresql
    url: str  # for DATABASE_URL (the app turns postgresql:// into psycopg 3)
    workdir: Path  # instance folder and SQLite file live here
    sqlite_path: Path | None = None
    pg_name: str | None = None

    @property
    def sqlalchemy_url(self) -> str:
        return self.url.replace("postgresql://", "postgresql+psycopg://", 1)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "CASEWORK_INSTANCE": str(self.workdir / "instance"),
            "CASEWORK_SCHEDULER": "off",
            **extra,
        }

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"api.cli {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
        return done.stdout

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(self.url)

    def sqlite(self) -> sqlite3.Connection:
        """A connection set up like the app's (casework/db.py): WAL, busy timeout, explicit BEGINs."""
        conn = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=30, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        return conn


@contextmanager
def bench_database(engine: str) -> Iterator[BenchDatabase]:
    """A new migrated database with the demo region loaded; dropped (or deleted) afterwards."""
    name = f"casework_bench_{uuid.uuid4().hex[:10]}"
    workdir = Path(tempfile.mkdtemp(prefix="casework_bench_"))
    admin = None
    try:
        if engine == "sqlite":
            path = workdir / f"{name}.db"
            db = BenchDatabase(engine, f"sqlite:///{path}", workdir, sqlite_path=path)
        else:
            admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
            admin.execute(f'CREATE DATABASE "{name}"')
            base = PG_ADMIN_URL.rsplit("/", 1)[0]
            db = BenchDatabase(engine, f"{base}/{name}", workdir, pg_name=name)
        done = step(f"{engine}: migrate (api.cli db upgrade) and load the demo region (api.cli demo)")
        db.cli("db", "upgrade")
        db.cli("demo", "--no-cases")  # benches seed their own cases, with explicit ids
        done()
        yield db
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
        shutil.rmtree(workdir, ignore_errors=True)


def analyze(db: BenchDatabase) -> None:
    """PostgreSQL: VACUUM ANALYZE after bulk loading, as autovacuum would soon do. SQLite: nothing
    (the app never runs ANALYZE there, so the planner works without statistics, as in production)."""
    if db.engine == "postgresql":
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")


# --- reference data of the demo region ------------------------------------------------------------


@dataclass
class County:
    code: str
    city: str
    province: str
    policy: str
    villages: list[str]
    diseases: list[str]
    hospitals: list[str]  # designated for the case's disease: (county hospital, municipal hospital)
    group: str  # the municipal expert group of the city
    designations: set[tuple[str, str]] = field(default_factory=set)  # (hospital, disease)


def counties(db: BenchDatabase, on: date) -> list[County]:
    """Every demo county with a policy in force, its villages, catalogue, hospitals and group."""
    from workflows.policy_pack import pack_for

    rows = query(db, "SELECT code, kind, parent_code FROM org_units")
    parent = {code: p for code, _, p in rows}
    kind = {code: k for code, k, _ in rows}
    designations = query(db, "SELECT hospital_code, policy_code, disease_code FROM hospital_designations")
    hospital_level = dict(query(db, "SELECT code, level FROM hospitals"))
    groups = dict(query(db, "SELECT region_code, code FROM expert_groups WHERE level = 'municipal'"))
    out = []
    for code in sorted(c for c, k in kind.items() if k == "county"):
        city = parent[code]
        province = parent[city]
        pack = pack_for([code, city, province], on)
        if pack is None or city not in groups:
            continue
        villages = sorted(c for c, k in kind.items() if k == "village" and parent[parent[c]] == code)
        designated = {(h, d) for h, p, d in designations if p == pack.code}
        # Diseases a county or municipal hospital of the case's own region treats.
        mine = {
            h for h, _ in designated if hospital_level[h] in ("county", "municipal") and parent.get(h) in (code, city)
        }
        diseases = sorted(d for d in pack.diseases if any((h, d) in designated for h in mine))
        out.append(
            County(
                code,
                city,
                province,
                pack.code,
                villages,
                diseases,
                sorted(mine, key=lambda h: hospital_level[h] != "county"),
                groups[city],
                designated,
            )
        )
    assert out, "the demo region has no county with a policy in force"
    return out


def query(db: BenchDatabase, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    if db.engine == "sqlite":
        conn = db.sqlite()
        try:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()
    with db.pg() as conn:
        return conn.execute(sql, params).fetchall()


# --- logins ---------------------------------------------------------------------------------------


def add_login(db: BenchDatabase, username: str, role: str, org_unit: str | None) -> str:
    """A user and a live bearer token, written directly like tests/api/conftest.py add_login
    (argon2 hashing has nothing to do with what is measured). Returns the token."""
    token = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    user = (username, "$argon2id$bench-user-never-logs-in", role, org_unit, True, now)
    tok = (hashlib.sha256(token.encode()).hexdigest(), now, now + timedelta(hours=12))
    if db.engine == "sqlite":
        conn = db.sqlite()
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "INSERT INTO users (username, password_hash, role, org_unit_code, active, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*user[:4], 1, sqlite_ts(now)),
            )
            conn.execute(
                "INSERT INTO auth_tokens (token_hash, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                (tok[0], cur.lastrowid, sqlite_ts(tok[1]), sqlite_ts(tok[2])),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    else:
        with db.pg() as conn:
            user_id = conn.execute(
                "INSERT INTO users (username, password_hash, role, org_unit_code, active, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                user,
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO auth_tokens (token_hash, user_id, issued_at, expires_at) VALUES (%s, %s, %s, %s)",
                (tok[0], user_id, tok[1], tok[2]),
            )
    return token


def user_id(db: BenchDatabase, username: str) -> int:
    return query(db, "SELECT id FROM users WHERE username = %s", (username,))[0][0]


# --- bulk seeding ---------------------------------------------------------------------------------

PERSON_COLUMNS = (
    "id",
    "id_number",
    "name",
    "sex",
    "birth_date",
    "village_code",
    "category",
    "category_since",
    "created_at",
)
CASE_COLUMNS = (
    "id",
    "person_id",
    "disease_code",
    "policy_code",
    "category",
    "state",
    "version",
    "village_code",
    "county_code",
    "city_code",
    "province_code",
    "hospital_code",
    "referral_group_code",
    "referred_from",
    "source",
    "note",
    "screened_at",
    "entered_state_at",
    "due_at",
    "created_at",
    "updated_at",
)
EVENT_COLUMNS = (
    "case_id",
    "seq",
    "event",
    "from_state",
    "to_state",
    "actor_id",
    "actor_username",
    "org_unit_code",
    "at",
    "occurred_at",
    "data",
    "reason",
)
HOLDER_COLUMNS = ("case_id", "org_unit_code")

# Open states in proportions a running programme might show (per 1,000 cases); referrals are few
# because they must be answered within days.
STATE_MIX = (
    ("screened", 300),
    ("confirmed", 150),
    ("assigned", 150),
    ("in_treatment", 100),
    ("treated", 49),
    ("follow_up", 250),
    ("referred", 1),
)
_HOLDING = {"assigned", "in_treatment", "treated", "follow_up", "referred"}


def sqlite_ts(value: datetime) -> str:
    """How SQLAlchemy's DateTime stores a (UTC, naive) value on SQLite: comparisons are textual."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _state_table() -> list[str]:
    # Case i gets table[(i * 7919) % 1000], so that any run of ids holds every state.
    return [state for state, weight in STATE_MIX for _ in range(weight)]


@dataclass
class SeedPlan:
    """What the seeded cases look like. Case ids (and person ids) run from ``start`` to ``stop - 1``."""

    counties: list[County]
    now: datetime
    overdue: Callable[[int], bool]  # whether case i is past its deadline
    screened_only: bool = False  # every case screened, version 1, with its screen event (transitions)
    disease: str | None = None  # one disease for every case (else cycled through the catalogue)
    actor: tuple[int, str, str] | None = None  # (user id, username, org unit) recorded on screen events


def seed(db: BenchDatabase, plan: SeedPlan, start: int, stop: int, chunk: int = 50_000) -> None:
    """Bulk-insert persons, cases (and holders / screen events) for ids [start, stop):
    COPY on PostgreSQL, executemany in big transactions on SQLite."""
    states = _state_table()
    ts: Callable[[datetime], object]
    if db.engine == "sqlite":
        cache: dict[datetime, str] = {}

        def ts(value: datetime) -> str:
            text = cache.get(value)
            if text is None:
                text = cache[value] = sqlite_ts(value)
            return text
    else:

        def ts(value: datetime) -> datetime:
            return value

    from casework.id_number import make_id_number

    now = plan.now.replace(second=0, microsecond=0)
    born0 = date(1950, 1, 1)
    since = date(2016, 1, 1)
    screen_data = {}
    writer = _Writer(db)
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        persons, cases, holders, events = [], [], [], []
        for i in range(lo, hi):
            # A multiplicative hash picks the county, so that states and overdue cases (chosen by
            # other residues of i) spread over every county rather than lining up with one.
            county = plan.counties[((i * 2654435761) >> 12) % len(plan.counties)]
            village = county.villages[(i // 7) % len(county.villages)]
            birth = born0 + timedelta(days=(i // 1000) % 20000)
            persons.append(
                (
                    i,
                    make_id_number(county.code, birth, i % 1000),
                    f"患者{i}",
                    "M" if i % 2 else "F",
                    birth if db.engine == "postgresql" else birth.isoformat(),
                    village,
                    "poor_not_exited",
                    since if db.engine == "postgresql" else since.isoformat(),
                    ts(now),
                )
            )
            state = "screened" if plan.screened_only else states[(i * 7919) % 1000]
            disease = plan.disease or county.diseases[i % len(county.diseases)]
            hospital = group = referred_from = None
            if state in _HOLDING:
                hospital = next(h for h in county.hospitals if (h, disease) in county.designations)
                holders.append((i, hospital))
            if state == "referred":
                group, referred_from = county.group, "in_treatment"
                holders.append((i, group))
            # Deadlines on a minute grid (so a few thousand distinct values); overdue ones in the past.
            if plan.overdue(i):
                due = now - timedelta(minutes=60 + (i * 37) % (10 * 24 * 60))
            else:
                due = now + timedelta(minutes=60 + (i * 53) % (30 * 24 * 60))
            screened = now - timedelta(days=10 + i % 300)
            entered = min(due - timedelta(days=3), now - timedelta(days=1)) if state != "screened" else screened
            cases.append(
                (
                    i,
                    i,
                    disease,
                    county.policy,
                    "poor_not_exited",
                    state,
                    1 if plan.screened_only else 3,
                    village,
                    county.code,
                    county.city,
                    county.province,
                    hospital,
                    group,
                    referred_from,
                    "health_check",
                    None,
                    ts(screened),
                    ts(entered),
                    ts(due),
                    ts(screened),
                    ts(screened),
                )
            )
            if plan.screened_only and plan.actor:
                key = disease
                if key not in screen_data:
                    screen_data[key] = json.dumps({"disease_code": disease, "source": "health_check"})
                uid, username, unit = plan.actor
                events.append(
                    (
                        i,
                        1,
                        "screen",
                        None,
                        "screened",
                        uid,
                        username,
                        unit,
                        ts(screened),
                        ts(screened),
                        screen_data[key],
                        None,
                    )
                )
        writer.write("persons", PERSON_COLUMNS, persons)
        writer.write("cases", CASE_COLUMNS, cases)
        if holders:
            writer.write("case_holders", HOLDER_COLUMNS, holders)
        if events:
            writer.write("case_events", EVENT_COLUMNS, events)
        writer.commit()
    writer.close()


def mark_overdue(db: BenchDatabase, now: datetime, step: int) -> None:
    """Make exactly the open cases whose id is a multiple of ``step`` overdue (a day late), and
    every other open case due in the future."""
    past, future = now - timedelta(days=1), now + timedelta(days=20)
    if db.engine == "sqlite":
        past, future = sqlite_ts(past), sqlite_ts(future)
    p, mod = ("?", "%") if db.engine == "sqlite" else ("%s", "%%")
    sql = (
        f"UPDATE cases SET due_at = CASE WHEN id {mod} {p} = 0 THEN {p} ELSE {p} END"
        f" WHERE (id {mod} {p} = 0) <> (due_at < {p})"
    )
    params = (step, past, future, step, sqlite_ts(now) if db.engine == "sqlite" else now)
    if db.engine == "sqlite":
        conn = db.sqlite()
        try:
            conn.execute(sql, params)
        finally:
            conn.close()
    else:
        with db.pg() as conn:
            conn.execute(sql, params)


class _Writer:
    def __init__(self, db: BenchDatabase) -> None:
        self.db = db
        if db.engine == "sqlite":
            self.conn = db.sqlite()
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = psycopg.connect(db.url)

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        names = ", ".join(columns)
        if self.db.engine == "sqlite":
            marks = ", ".join("?" for _ in columns)
            self.conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            return
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def commit(self) -> None:
        if self.db.engine == "sqlite":
            self.conn.execute("COMMIT")
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.commit()

    def close(self) -> None:
        if self.db.engine == "sqlite":
            self.conn.execute("COMMIT")
        else:
            # Explicit ids went in: move the sequences past them, or the API's inserts collide.
            for table in ("persons", "cases", "case_events"):
                self.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
            self.conn.commit()
        self.conn.close()


# --- the served API -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pg_backends(dbname: str) -> list[int]:
    """PostgreSQL backend processes serving ``dbname`` (same host: their titles name the database)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    title = f.read().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {dbname} " in title:
                out.append(int(entry))
    return out


def reset_peak_rss(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
    except OSError:
        pass


class Server:
    """``python -m api.cli serve`` (gunicorn, CASEWORK_SCHEDULER=off) on a free port."""

    def __init__(self, db: BenchDatabase, workers: int, threads: int) -> None:
        self.db = db
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        env = self.db.env(CASEWORK_WORKERS=str(self.workers), CASEWORK_THREADS=str(self.threads))
        self.log = open(self.db.workdir / "server.log", "w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,  # the access log: one line a request, as in production
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                status, _ = self.request("GET", "/healthz")
                if status == 200 and len(self.worker_pids()) >= self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.__exit__()
        self.log.seek(0)
        raise RuntimeError("server did not start:\n" + self.log.read()[-3000:])

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def worker_rss_mb(self) -> tuple[float, float]:
        """(largest current RSS, largest peak RSS VmHWM) over the gunicorn workers, in MiB."""
        pids = self.worker_pids()
        return (
            max((status_kb(p, "VmRSS") for p in pids), default=0) / 1024,
            max((status_kb(p, "VmHWM") for p in pids), default=0) / 1024,
        )

    def reset_peaks(self) -> None:
        for pid in self.worker_pids():
            reset_peak_rss(pid)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in [self.process.pid, *self.worker_pids()])

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            all_headers = {**({"Content-Type": "application/json"} if payload else {}), **(headers or {})}
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
