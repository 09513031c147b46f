"""Liveness and readiness, without auth."""

from __future__ import annotations

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, current_app

from api.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    migrate_ext = current_app.extensions["migrate"]
    head = ScriptDirectory.from_config(migrate_ext.migrate.get_config()).get_current_head()
    try:
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception:
        return {"status": "database unreachable"}, 503
    if current != head:
        return {"status": "migrations pending", "current": current, "head": head}, 503
    return {"status": "ready", "revision": current}
