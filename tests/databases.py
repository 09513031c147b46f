"""Throwaway databases for a test run: a SQLite file, or a PostgreSQL database created and dropped.

In CI (CI=true) a PostgreSQL server that cannot be reached is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

PG_ADMIN_URL = os.environ.get("CASEWORK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ("sqlite", "postgresql")


def _pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def throwaway_database(engine: str, tmp_dir: Path) -> Iterator[str]:
    """Yield a SQLAlchemy URL to a new empty database of ``engine``; drop it afterwards."""
    name = f"casework_test_{uuid.uuid4().hex[:12]}"
    if engine == "sqlite":
        yield f"sqlite:///{tmp_dir / (name + '.db')}"
        return
    admin = _pg_admin()
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
