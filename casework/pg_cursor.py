"""psycopg's cursor, with the description of each result shape built once.

SQLAlchemy reads ``cursor.description`` after every statement that returns rows, and psycopg builds
it anew each time: a Column object per column, each decoding its name, asking the connection for
its encoding and looking its type up. Over the API a transition read some fifty columns (the lock
query's forty, the authentication's five), and building their descriptions was a tenth of the
instructions the whole request took (docs/performance.md, fifth pass). Those statements now run on
the driver's cursor and read no description (casework/direct_sql.py); the case reads, the lists
and the ORM still do. A statement gives the same shape every time it runs, so the description is
kept per shape: the names, type OIDs and modifiers of the columns, which with the type's size is
all a Column reads from the result."""

from __future__ import annotations

from typing import Any

import psycopg

# Shapes are as many as the statements the code runs; the bound only guards against ad hoc SQL.
_MAX_SHAPES = 2048
_described: dict[tuple[Any, ...], list[psycopg.Column]] = {}


class ShapeCachedCursor(psycopg.Cursor):
    """A psycopg cursor whose ``description`` is built once per result shape."""

    @property
    def description(self) -> list[psycopg.Column] | None:
        result = self.pgresult
        if result is None or not result.nfields:
            return super().description
        # A column's size is its type's (PQfsize is the type's typlen): name, type and modifier do.
        fields = range(result.nfields)
        shape = (*map(result.fname, fields), *map(result.ftype, fields), *map(result.fmod, fields))
        columns = _described.get(shape)
        if columns is None:
            columns = super().description
            if len(_described) >= _MAX_SHAPES:
                _described.clear()
            _described[shape] = columns
        return list(columns)  # a list of its own: the caller may not change the shared one
