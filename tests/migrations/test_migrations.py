"""``db upgrade`` on an empty database gives exactly the models, on both engines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import api.models  # noqa: F401 - registers the API's tables
import casework.models  # noqa: F401 - registers the domain's tables
from casework.db import Base


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
