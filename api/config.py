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
    options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": 30}
    return options


def settings(instance_path: str) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": database_url(instance_path),
        "MAX_CONTENT_LENGTH": int(os.environ.get("CASEWORK_MAX_BODY_BYTES", 256 * 1024)),
        "JSON_AS_ASCII": False,
    }
