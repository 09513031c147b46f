"""Declarative base, portable column types and engine set-up for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    Insert,
    MetaData,
    Table,
    bindparam,
    event,
    insert,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

from casework.errors import Conflict

# Named constraints, or Alembic's batch mode cannot recreate SQLite tables that carry them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both engines.

    SQLite has no time zone type and would hand back naive values; storing UTC and re-attaching
    the zone keeps comparisons and ISO output identical on both engines.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")

SQLITE_IMMEDIATE = "casework_sqlite_immediate"


def _sqlite_from_hint(_compiler: SQLiteCompiler, _table: object, text: str) -> str:
    return text


# SQLAlchemy drops table hints on SQLite, whose only table hints are ``INDEXED BY <index>`` and
# ``NOT INDEXED``: render them. Only hints given for the "sqlite" dialect reach this, e.g.
# ``select(Case).with_hint(Case, "INDEXED BY ix_cases_due_open", "sqlite")`` where SQLite's planner,
# without statistics, would not pick a partial index on its own.
SQLiteCompiler.get_from_hint_text = _sqlite_from_hint  # type: ignore[method-assign]


def configure_engine(engine: Engine) -> None:
    """Note which transactions write (``end_read``); on PostgreSQL, cursors that describe a result
    shape once (casework/pg_cursor.py); on SQLite, the pragmas and transaction handling.

    pysqlite's own transaction handling issues a deferred BEGIN lazily, so two writers that both
    read first deadlock into "database is locked". We take over BEGIN: write transactions start
    with BEGIN IMMEDIATE (the SQLite equivalent of locking the row up front), reads with BEGIN.
    """
    if getattr(engine, "_casework_configured", False):
        return
    engine._casework_configured = True  # type: ignore[attr-defined]
    _note_writes(engine)
    if engine.dialect.name == "postgresql":
        from casework.pg_cursor import ShapeCachedCursor

        @event.listens_for(engine, "connect")
        def _on_pg_connect(dbapi_connection, _record) -> None:
            dbapi_connection.cursor_factory = ShapeCachedCursor

    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        immediate = connection.get_execution_options().get(SQLITE_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


HELD = "casework_held_transaction"
WROTE = "casework_wrote"
# Statements that change no data (a row lock taken by SELECT is released by either ending).
_READING = ("SELECT", "BEGIN", "SHOW", "PRAGMA")


def _note_writes(engine: Engine) -> None:
    """Keep, per connection, whether its open transaction ran anything but reads."""

    @event.listens_for(engine, "begin")
    def _begun(connection) -> None:
        connection.info[WROTE] = False

    @event.listens_for(engine, "before_cursor_execute")
    def _executing(connection, _cursor, statement, *_) -> None:
        if not statement.lstrip()[:6].upper().startswith(_READING):
            connection.info[WROTE] = True


def end_read(session: Session) -> None:
    """End the session's transaction with COMMIT if it only read; leave any other to be rolled back.

    For a transaction that wrote nothing COMMIT and ROLLBACK are the same, but psycopg discards
    every prepared statement of the connection at a ROLLBACK (the transaction might have made or
    dropped the objects they name), and sends DEALLOCATE ALL. Each read request ending in ROLLBACK
    made the next requests on its connection parse and plan every statement again: transitions
    and list reads in turn cost PostgreSQL 15-35 % less CPU with COMMIT (bench/read_endings.py).
    A transaction that wrote, or that PostgreSQL aborted, is left as it is."""
    transaction = session.get_transaction()
    if transaction is None or not transaction.is_active or _pending(session):
        return  # none open, or one a failed flush left to be rolled back, or changes not yet sent
    try:
        connection = session.connection()
        if not connection.info.get(WROTE, True) and _may_commit(connection):
            session.commit()
    except SQLAlchemyError:
        pass  # the connection was lost: the caller's rollback hands it back to the pool, which drops it


def end_transaction(session: Session) -> None:
    """End the session's transaction: COMMIT if it only read (``end_read``), else ROLLBACK."""
    end_read(session)
    session.rollback()


def _may_commit(connection: Any) -> bool:
    """False when PostgreSQL has aborted the transaction (a statement in it failed)."""
    if connection.dialect.name != "postgresql":
        return True
    from psycopg.pq import TransactionStatus

    return connection.connection.driver_connection.info.transaction_status == TransactionStatus.INTRANS


def _pending(session: Session) -> bool:
    return bool(session.new or session.dirty or session.deleted)


def _writable(session: Session) -> bool:
    """Whether the open transaction may write: any on PostgreSQL; on SQLite one begun IMMEDIATE."""
    connection = session.connection()
    return connection.dialect.name != "sqlite" or bool(connection.get_execution_options().get(SQLITE_IMMEDIATE))


def begin_write(session: Session) -> None:
    """Make sure a write transaction is open. One that can write already is continued (a request's
    authentication read and its write are then one transaction); a read-only one is ended first,
    because SQLite cannot turn a read transaction into an immediate one."""
    if session.in_transaction():
        if _writable(session):
            return
        if _pending(session):
            raise RuntimeError("a write began with uncommitted changes in the session")
        session.commit()
    session.connection(execution_options={SQLITE_IMMEDIATE: True})


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """One write transaction: commits on success, rolls back on any error.

    Inside ``held_transaction`` it joins the held transaction instead, whose holder commits or
    rolls back. Pending unflushed changes from the caller would be committed by accident, so they
    are refused.
    """
    if session.info.get(HELD):
        yield session
        return
    if session.in_transaction() and _pending(session):
        raise RuntimeError("write_transaction() entered with uncommitted changes in the session")
    begin_write(session)
    try:
        yield session
        session.commit()
    except BaseException:
        end_transaction(session)  # a refusal before any write keeps the prepared statements
        raise


@contextmanager
def held_transaction(session: Session) -> Iterator[Session]:
    """Hold one write transaction open across several steps (a request's service and the answer
    stored for its Idempotency-Key): ``write_transaction`` inside joins it rather than commit. The
    holder commits or rolls back before the block ends; the hold ends with the block."""
    begin_write(session)
    session.info[HELD] = True
    try:
        yield session
    finally:
        session.info.pop(HELD, None)


def raw(expression: Any) -> Any:
    """The stored integer (fen, 1/10,000) of a ScaledDecimal expression, for exact SQL sums."""
    return type_coerce(expression, BigInteger)


def insert_ignoring_conflicts(session: Session, model: Any) -> Any:
    """An INSERT that skips rows hitting a unique key (ON CONFLICT DO NOTHING), on either engine.

    Call ``.values(...)`` or ``.from_select(...)`` on it, then ``.on_conflict_do_nothing()``.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


def flush_or_conflict(session: Session, detail: str) -> None:
    """Flush, turning a unique-key violation (a concurrent duplicate) into a 409 the client can read."""
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(detail) from None


def bound_insert(table: Table, prefix: str) -> Insert:
    """INSERT of every column but the generated key, each from the parameter ``prefix + column``:
    statements run with one parameter dictionary (the parts of one data-modifying WITH) cannot
    share parameter names."""
    return insert(table).values(
        {
            column.key: bindparam(prefix + column.key, type_=column.type)
            for column in table.columns
            if column is not table.autoincrement_column
        }
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class ScaledDecimal(TypeDecorator[Decimal]):
    """An exact decimal stored as a scaled integer (money in fen, ratios in 1/10,000).

    SQLite has no decimal type (SQLAlchemy would pass through floats); integers are exact on both
    engines, and so are SQL sums over them.
    """

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale

    def process_bind_param(self, value: Decimal | None, dialect) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value).scaleb(self.scale)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {self.scale} decimals")
        return int(scaled)

    def process_result_value(self, value: int | None, dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-self.scale)
