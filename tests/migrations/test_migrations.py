"""``db upgrade`` on an empty database gives exactly the models, on both engines."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

import api.models  # noqa: F401 - registers the API's tables
import casework.models  # noqa: F401 - registers the domain's tables
from casework.db import Base
from tests.conftest import make_engine
from workflows.case_machine import OPEN_STATES, STATE_NAMES, TERMINAL_STATES


def test_upgrade_gives_exactly_the_models(db_url):
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() is not None
            tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
            assert tables == set(Base.metadata.tables)
    finally:
        engine.dispose()


def test_partial_unique_index_exists(db_url):
    """The one-open-case rule lives in the database, not only in Python."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            indexes = {ix["name"]: ix for ix in inspect(connection).get_indexes("cases")}
            assert indexes["uq_cases_open_person_disease"]["unique"]
    finally:
        engine.dispose()


def _quoted(sql: str) -> list[str]:
    """The quoted names in a piece of DDL, in order ('screened'::character varying included)."""
    return re.findall(r"'([a-z_]+)'", sql)


def _state_ddl(connection) -> tuple[str, dict[str, str]]:
    """The migrated database's own text for the CHECK on cases.state and for each partial index's
    predicate, read back from its catalogue."""
    partial = ("ix_cases_due_open", "uq_cases_open_person_disease")
    if connection.dialect.name == "sqlite":
        checks = inspect(connection).get_check_constraints("cases")
        check = next(c["sqltext"] for c in checks if c["name"] == "ck_cases_state")
        rows = connection.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cases'")
        ).all()
        predicates = {name: sql.split(" WHERE ", 1)[1] for name, sql in rows if name in partial}
    else:
        check = connection.execute(
            text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ck_cases_state'")
        ).scalar_one()
        rows = connection.execute(
            text(
                "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'cases'::regclass"
            )
        ).all()
        predicates = {name: predicate for name, predicate in rows if name in partial}
    assert set(predicates) == set(partial)
    return check, predicates


def test_state_ddl_matches_the_declared_states(db_url):
    """The states are declared once (workflows/case_machine.py STATES); the database's CHECK and
    partial indexes must list exactly those, in that order: a state added to the declaration without
    its migration fails here."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            check, predicates = _state_ddl(connection)
    finally:
        engine.dispose()
    assert _quoted(check) == list(STATE_NAMES)
    for name, predicate in predicates.items():
        assert _quoted(predicate) == list(OPEN_STATES), name
    assert set(OPEN_STATES) | set(TERMINAL_STATES) == set(STATE_NAMES)


def test_township_backfill_on_upgrade(tmp_path):
    """0005 copies each existing case's township from its village; on SQLite its batch rebuild of
    ``cases`` works with case events referencing the rows (foreign keys off during migrations)."""
    from flask_migrate import downgrade, upgrade

    from api.app import create_app
    from casework.services.demo import load_demo
    from tests.casework.helpers import Walker

    url = f"sqlite:///{tmp_path / 'backfill.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        from api.extensions import db

        db.engine.dispose()
    engine = make_engine(url)
    with Session(engine) as session:
        load_demo(session)
        Walker(session, datetime.now(UTC)).new_case()
    engine.dispose()
    read = "SELECT c.id, c.township_code, v.parent_code FROM cases c JOIN org_units v ON v.code = c.village_code"
    with create_engine(url).connect() as connection:
        case_id, township, village_parent = connection.execute(text(read)).one()
    assert township == village_parent
    with app.app_context():
        downgrade(revision="0004")
        upgrade()
        db.engine.dispose()
    with create_engine(url).connect() as connection:
        assert connection.execute(text(read)).one() == (case_id, township, village_parent)
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 0  # a plain connection
    with make_engine(url).connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
