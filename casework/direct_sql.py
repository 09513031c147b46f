"""Core statements of a transition's hot path, run on the driver's cursor.

SQLAlchemy spends more CPU around the driver's execution of a compiled statement than the driver
spends sending it and reading its answer: a cache key and a cache lookup, an execution context, a
result object with its metadata. A transition runs three such statements; running them on the
driver's cursor took a fifth of the instructions of the whole request away (docs/performance.md,
issue 12's seventh pass). A ``DirectStatement`` keeps the statement written in
Core, compiles it once per dialect, and runs it on the DBAPI cursor of the caller's connection,
inside its transaction. What SQLAlchemy does there that matters is kept:

- each bind parameter and each result column goes through its type's processors (UTC datetimes,
  JSON, SQLite's dates and booleans);
- the engine's ``before_cursor_execute`` and ``after_cursor_execute`` listeners hear the statement
  (the note of which transactions wrote, the tests that count statements);
- an error goes through SQLAlchemy's own handling: raised as its exception (``IntegrityError``,
  ``OperationalError``), and a lost connection invalidated with the pooled ones opened before it,
  so each worker answers one 503 after a database restart and heals.

Only statements without Python-side column defaults qualify: SQLAlchemy computes those per
execution, and this path would not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Executable, Select


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order, for a positional paramstyle
    constants: dict[str, Any]  # the statement's own values (literals), already processed
    binds: dict[str, Callable[[Any], Any]]  # the processor of each parameter that has one
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column, processor) for those that have one


class DirectStatement:
    """A Core statement compiled once per dialect, run with ``rows`` or ``run`` on a connection."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows a SELECT returns, each column as its type reads it."""
        compiled = self._for(connection.dialect)
        rows = self._execute(connection, compiled, params, fetch=True)
        if not compiled.results:
            return rows
        read = []
        for row in rows:
            values = list(row)
            for i, process in compiled.results:
                values[i] = process(values[i])
            read.append(tuple(values))
        return read

    def first(self, connection: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        found = self.rows(connection, params)
        return found[0] if found else None

    def run(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the rows it changed."""
        return self._execute(connection, self._for(connection.dialect), params, fetch=False)

    def _execute(self, connection: Connection, compiled: _Compiled, params: Mapping[str, Any], fetch: bool) -> Any:
        values = dict(compiled.constants)
        binds = compiled.binds
        for name, value in params.items():
            process = binds.get(name)
            values[name] = process(value) if process is not None else value
        parameters: Any = values if compiled.positions is None else tuple(values[n] for n in compiled.positions)
        cursor = connection.connection.cursor()
        try:
            connection.dispatch.before_cursor_execute(connection, cursor, compiled.sql, parameters, None, False)
            cursor.execute(compiled.sql, parameters)
            connection.dispatch.after_cursor_execute(connection, cursor, compiled.sql, parameters, None, False)
            answer = cursor.fetchall() if fetch else cursor.rowcount
        except BaseException as error:
            # SQLAlchemy's own handling, as for a statement it runs: its exception classes, the
            # cursor closed, and for a lost connection (or a statement interrupted: a timeout, a
            # greenlet killed) the connection invalidated, with every pooled one opened before it.
            # The one private call here.
            connection._handle_dbapi_exception(error, compiled.sql, parameters, cursor, None)
        cursor.close()
        return answer

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _compile(self.statement, dialect)
        return compiled


def _compile(statement: Executable, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    if compiled.insert_prefetch or compiled.update_prefetch:  # type: ignore[attr-defined]
        raise ValueError("a statement with Python-side column defaults cannot run directly")
    if "POSTCOMPILE" in compiled.string:  # an expanding IN, which SQLAlchemy renders per execution
        raise ValueError("a statement with an expanding parameter cannot run directly")
    if compiled.escaped_bind_names:  # type: ignore[attr-defined]
        raise ValueError("a statement whose parameter names need escaping cannot run directly")
    binds = {}
    for name, bind in compiled.binds.items():  # type: ignore[attr-defined]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds[name] = process
    # Values the statement carries itself (the scope's codes, IN lists), with every parameter the
    # caller must give left out, so a missing one fails instead of binding NULL.
    constants = {
        name: binds[name](bind.value) if name in binds else bind.value
        for bind, name in compiled.bind_names.items()  # type: ignore[attr-defined]
        if not bind.required
    }
    results: list[tuple[int, Callable[[Any], Any]]] = []
    if isinstance(statement, Select):
        for i, column in enumerate(statement.selected_columns):
            process = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if process is not None:
                results.append((i, process))
    positions = tuple(compiled.positiontup) if compiled.positional else None  # type: ignore[attr-defined]
    return _Compiled(compiled.string, positions, constants, binds, tuple(results))
