"""Descriptions built once per result shape (casework/pg_cursor.py) are still each result's own."""

from __future__ import annotations

import pytest
from sqlalchemy import text


@pytest.fixture
def pg(engine, engine_name):
    if engine_name != "postgresql":
        pytest.skip("a psycopg cursor")
    with engine.connect() as connection:
        yield connection


def _described(connection, sql: str) -> list[tuple[str, str]]:
    result = connection.exec_driver_sql(sql)
    description = result.cursor.description
    result.close()
    return [(column.name, column.type_display) for column in description]


def test_an_engine_set_up_by_configure_engine_uses_the_cursor(pg):
    from casework.pg_cursor import ShapeCachedCursor

    assert isinstance(pg.connection.driver_connection.cursor(), ShapeCachedCursor)


def test_same_names_of_other_types_are_described_as_they_are(pg):
    """Columns named alike, of other types or other lengths: each result described as it is."""
    assert _described(pg, "SELECT 'a' AS x") == [("x", "text")]
    assert _described(pg, "SELECT 1 AS x") == [("x", "int4")]
    assert _described(pg, "SELECT 'b' AS x") == [("x", "text")]
    assert _described(pg, "SELECT 'a'::varchar(3) AS x") == [("x", "varchar(3)")]
    assert _described(pg, "SELECT 'a'::varchar(9) AS x") == [("x", "varchar(9)")]


def test_rows_read_by_name_after_a_shape_was_seen(pg):
    """SQLAlchemy maps result columns by the description: the cached one names the right values."""
    for value in ("one", "two"):
        row = pg.execute(text("SELECT :v AS word, length(:v) AS letters"), {"v": value}).one()
        assert (row.word, row.letters) == (value, len(value))


def test_a_caller_changing_its_description_changes_no_other(pg):
    first = pg.exec_driver_sql("SELECT 1 AS x, 2 AS y").cursor.description
    first.clear()
    assert [c.name for c in pg.exec_driver_sql("SELECT 1 AS x, 2 AS y").cursor.description] == ["x", "y"]
