"""Statements run on the driver's cursor (casework/direct_sql.py) read, write and fail as the same
statements run by SQLAlchemy do, on both engines."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, event, exc, insert, select, text, update
from sqlalchemy.orm import Session

from api.config import engine_options
from casework.db import configure_engine, utcnow
from casework.direct_sql import DirectStatement
from casework.models import Case, CaseEvent, Person
from casework.services.cases import _lock_statement
from tests.casework.helpers import Walker
from tests.conftest import at

NOW = at(2025, 6, 2, 9)


@pytest.fixture
def walker(session) -> Walker:
    return Walker(session, NOW)


def test_the_locking_read_gives_the_values_sqlalchemy_gives(session, walker):
    """Every column of the transition's locking read, datetimes (UTC, aware), the birth date and
    the IN list of alert rules included, equal to SQLAlchemy's own execution of the statement."""
    case = walker.confirm(walker.new_case())
    actor = walker.coordinator
    direct = _lock_statement(actor.role, actor.org_unit_code, actor.org_kind)
    params = {"case_id": case.id, "named_hospital": walker.county_hospital, "named_group": None}
    session.rollback()

    with session.begin():
        ours = direct.first(session.connection(), params)
    with session.begin():
        theirs = session.connection().execute(direct.statement, params).first()
    assert ours == tuple(theirs)
    values = dict(zip(direct.statement.selected_columns.keys(), ours, strict=True))
    assert values["entered_state_at"].tzinfo is not None and values["entered_state_at"] == case.entered_state_at
    assert isinstance(values["birth_date"], date)
    assert values["state"] == "confirmed"


def test_a_scope_keeps_other_counties_cases_out(session, walker):
    """The scope's county code is a value the statement carries itself, bound on every run."""
    params = {"case_id": walker.new_case().id, "named_hospital": None, "named_group": None}
    session.rollback()
    own = _lock_statement("county_coordinator", "533124", "county")  # Longchuan, where the case is
    stranger = _lock_statement("county_coordinator", "533103", "county")  # Ruili, the next county
    with session.begin():
        assert own.first(session.connection(), params) is not None
        assert stranger.first(session.connection(), params) is None


@pytest.fixture
def app_engine(db_url):
    """An engine with the app's options (api/config.py): parameters hidden, no pre-ping."""
    engine = create_engine(db_url, **engine_options(db_url))
    configure_engine(engine)
    yield engine
    engine.dispose()


def _event_insert(seq: int, at: Any, data: Any) -> DirectStatement:
    """An INSERT of a history row of the case ``id``, numbered ``seq``."""
    return DirectStatement(
        insert(CaseEvent).values(
            case_id=bindparam("id"),
            seq=seq,
            event="note",
            to_state="screened",
            actor_username="tester",
            at=at,
            occurred_at=at,
            data=data,
        )
    )


def test_writes_bind_values_through_their_types(session, walker):
    """An aware datetime and a JSON document written directly read back through the ORM as written."""
    case = walker.new_case()
    session.rollback()
    moved_at = datetime(2025, 6, 3, 1, 2, 3, 456789, tzinfo=NOW.tzinfo)
    move = DirectStatement(update(Case).where(Case.id == bindparam("id")).values(updated_at=bindparam("at")))
    record = _event_insert(seq=2, at=bindparam("at"), data=bindparam("data"))
    with session.begin():
        assert move.run(session.connection(), {"id": case.id, "at": moved_at}) == 1
        record.run(session.connection(), {"id": case.id, "at": moved_at, "data": {"说明": "补充材料", "n": 2}})
    session.expire_all()
    assert session.get(Case, case.id).updated_at == moved_at
    written = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id, CaseEvent.seq == 2)).one()
    assert written.data == {"说明": "补充材料", "n": 2}
    assert written.at == moved_at


def test_listeners_hear_each_statement(session, engine, walker):
    """Statement counts (tests/api/test_statements.py) and the note of which transactions wrote
    rely on the engine's cursor events."""
    case_id = walker.new_case().id
    session.rollback()
    heard = []
    listener = lambda _c, _cur, statement, *_: heard.append(statement.split()[0])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with session.begin():
            read = DirectStatement(select(Case.state).where(Case.id == bindparam("id")))
            read.rows(session.connection(), {"id": case_id})
            write = DirectStatement(update(Case).where(Case.id == bindparam("id")).values(note="x"))
            write.run(session.connection(), {"id": case_id})
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [verb for verb in heard if verb != "BEGIN"] == ["SELECT", "UPDATE"]


def test_a_unique_violation_is_sqlalchemys_integrity_error_and_rolls_back(session, walker, app_engine):
    """``fire`` turns it into a 409 (reopening beside an open case): it must arrive as SQLAlchemy's
    IntegrityError, without the parameters (the app's engine hides them: they may hold personal
    data), and the transaction must end cleanly."""
    case_id = walker.new_case().id
    session.rollback()
    copy = _event_insert(seq=1, at=utcnow(), data={})
    with Session(app_engine) as other:
        with pytest.raises(exc.IntegrityError) as raised, other.begin():
            copy.run(other.connection(), {"id": case_id})  # seq 1 is the screen event already there
        assert "parameters hidden" in str(raised.value)
        assert other.scalar(select(Case.state).where(Case.id == case_id)) == "screened"


def test_a_missing_parameter_fails_instead_of_binding_null(session, walker):
    case_id = walker.new_case().id
    session.rollback()
    statement = DirectStatement(update(Case).where(Case.id == bindparam("id")).values(note=bindparam("note")))
    with pytest.raises((exc.StatementError, KeyError)), session.begin():
        statement.run(session.connection(), {"id": case_id})
    assert session.get(Case, case_id).note is None


def test_statements_with_python_side_defaults_are_refused(session):
    """SQLAlchemy computes those per execution; run directly they would be left out."""
    statement = DirectStatement(insert(Person).values(name="岩温"))  # created_at: utcnow() by default
    with pytest.raises(ValueError, match="Python-side column defaults"):
        statement.run(session.connection(), {})
    session.rollback()


def test_a_lost_connection_is_invalidated_and_the_next_transaction_gets_a_new_one(engine, engine_name, walker, session):
    if engine_name != "postgresql":
        pytest.skip("SQLite has no connection to lose")
    case_id = walker.new_case().id
    session.rollback()
    read = DirectStatement(select(Case.state).where(Case.id == bindparam("id")))
    with Session(engine) as doomed:
        connection = doomed.connection()
        pid = doomed.scalar(text("SELECT pg_backend_pid()"))
        with Session(engine) as killer, killer.begin():
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(exc.OperationalError) as raised:
            read.rows(connection, {"id": case_id})
        assert raised.value.connection_invalidated and connection.invalidated
        doomed.rollback()
        with doomed.begin():
            assert read.rows(doomed.connection(), {"id": case_id}) == [("screened",)]
            assert doomed.scalar(text("SELECT pg_backend_pid()")) != pid


def test_a_database_restart_costs_one_failed_statement_not_one_per_pooled_connection(app_engine, engine_name, engine):
    """After a restart every pooled connection is dead. The first statement that finds out must
    retire them all, as SQLAlchemy does for its own statements: each worker answers one 503, not
    one per connection in its pool (config.engine_options runs without pre-ping)."""
    if engine_name != "postgresql":
        pytest.skip("SQLite has no connections to lose")
    read = DirectStatement(select(text("1")))
    first, second = app_engine.connect(), app_engine.connect()
    pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar() for c in (first, second)]
    first.close()  # both back in the pool, both still open
    second.close()
    with engine.connect() as admin:
        for pid in pids:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with Session(app_engine) as doomed, pytest.raises(exc.OperationalError):
        read.rows(doomed.connection(), {})
    with Session(app_engine) as healed:
        assert read.rows(healed.connection(), {}) == [(1,)]


def test_a_statement_interrupted_by_a_timeout_leaves_no_connection_half_used(app_engine):
    """gevent's Timeout and a killed greenlet's GreenletExit are BaseExceptions raised mid-protocol:
    the connection cannot go back to the pool in an unknown state."""
    import gevent

    connection = app_engine.connect()
    interrupt = lambda *_: (_ for _ in ()).throw(gevent.Timeout())  # noqa: E731
    event.listen(app_engine, "before_cursor_execute", interrupt)
    try:
        with pytest.raises(gevent.Timeout):
            DirectStatement(select(text("1"))).rows(connection, {})
    finally:
        event.remove(app_engine, "before_cursor_execute", interrupt)
    assert connection.invalidated
    connection.close()
