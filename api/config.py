"""Settings from the environment; the default is an embedded SQLite file under ``instance/``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def database_url(instance_path: str) -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return f"sqlite:///{Path(instance_path) / 'casework.db'}"
    # Heroku-style postgres:// URLs and bare postgresql:// both mean psycopg 3 here.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_options(url: str) -> dict[str, Any]:
    # hide_parameters: SQL errors in logs must not carry names or ID numbers.
    # No pool_pre_ping: it costs every request a round trip to the server (SELECT 1 at checkout).
    # A connection that died with a restart fails its next statement instead; SQLAlchemy then
    # recognises the disconnect and discards every pooled connection older than it, so each worker
    # answers one 503 with Retry-After after an outage and heals (tests/gauntlet/test_db_outage.py).
    options: dict[str, Any] = {"hide_parameters": True}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30}
    else:
        # A fixed pool per worker process, no overflow: requests beyond it wait for a connection
        # (the pool is gevent-aware) instead of each opening and closing one of their own, which
        # costs PostgreSQL a backend process per request (at 32 clients on 2 workers: 347 answers
        # a second with the default 5 + 10 overflow; docs/performance.md).
        options["pool_size"] = int(os.environ.get("CASEWORK_DB_POOL", "10"))
        options["max_overflow"] = 0
    return options


def settings(instance_path: str) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": database_url(instance_path),
        "MAX_CONTENT_LENGTH": int(os.environ.get("CASEWORK_MAX_BODY_BYTES", 256 * 1024)),
        "JSON_AS_ASCII": False,
    }
