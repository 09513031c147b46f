"""Throwaway databases for the bench scripts.

Every script creates its own databases (a SQLite file in a temp dir, or a PostgreSQL database
named casework_bench_<random>), migrates them with ``python -m api.cli db upgrade``, loads the demo
region with ``python -m api.cli demo`` and drops them afterwards.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("CASEWORK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_version() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.OperationalError:
        return None


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
        done = _step(f"{engine}: migrate (api.cli db upgrade) and load the demo region (api.cli demo)")
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


def query(db: BenchDatabase, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    if db.engine == "sqlite":
        conn = db.sqlite()
        try:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()
    with db.pg() as conn:
        return conn.execute(sql, params).fetchall()


def sqlite_ts(value: datetime) -> str:
    """How SQLAlchemy's DateTime stores a (UTC, naive) value on SQLite: comparisons are textual."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")




def _step(message: str):
    started = time.perf_counter()
    print(f"  {message} …", end="", flush=True)
    return lambda: print(f" {time.perf_counter() - started:.1f} s", flush=True)
