"""Fixtures: every database test runs on SQLite and on PostgreSQL, each in a database of its own.

The schema comes from the Alembic migrations (not create_all), and the demo region is loaded once
per engine; each test then starts from no persons, cases or users.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.orm import Session

from api.models import IdempotencyRecord
from casework.actor import Actor
from casework.db import configure_engine
from casework.id_number import make_id_number
from casework.models import (
    AccessLog,
    Alert,
    AlertEscalation,
    AssistanceApplication,
    AssistanceEvent,
    AuthToken,
    Case,
    CaseEvent,
    CaseHolder,
    FollowUpVisit,
    LoginFailure,
    OrgUnit,
    Person,
    PersonCategory,
    Settlement,
    User,
)
from casework.services.demo import load_demo
from tests.databases import ENGINES, throwaway_database


def migrate(url: str) -> None:
    from flask_migrate import upgrade

    from api.app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        from api.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session", params=ENGINES)
def db_url(request, tmp_path_factory) -> Iterator[str]:
    with throwaway_database(request.param, tmp_path_factory.mktemp("db")) as url:
        migrate(url)
        engine = make_engine(url)
        with Session(engine) as session:
            load_demo(session)
            session.execute(delete(User))
            session.commit()
        engine.dispose()
        yield url


def make_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    configure_engine(engine)
    return engine


@pytest.fixture(scope="session")
def engine(db_url) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session
    _wipe_cases(engine)


def _wipe_cases(engine: Engine) -> None:
    with Session(engine) as session:
        for table in (
            AssistanceEvent,
            AssistanceApplication,
            Settlement,
            AlertEscalation,
            Alert,
            FollowUpVisit,
            IdempotencyRecord,
            AccessLog,
            AuthToken,
            LoginFailure,
            CaseHolder,
            CaseEvent,
            Case,
            PersonCategory,
            Person,
            User,
        ):
            session.execute(delete(table))
        session.commit()


@pytest.fixture
def engine_name(engine) -> str:
    return engine.dialect.name


# --- realistic actors and persons in the demo region (Longchuan, Yunnan) ---------------------------

LONGCHUAN = "533124"
DEHONG = "533100"
YUNNAN = "530000"


def actor_for_unit(session: Session, role: str, code: str, username: str | None = None) -> Actor:
    unit = session.get(OrgUnit, code)
    assert unit is not None, f"demo region lacks {code}"
    return Actor(None, username or f"{role}@{code}", role, code, unit.kind)


@pytest.fixture
def coordinator(session) -> Actor:
    return actor_for_unit(session, "county_coordinator", LONGCHUAN)


_sequence = itertools.count(11)


def village_of(session: Session, county: str) -> str:
    from sqlalchemy import select

    from casework.scope import org_subtree

    return session.scalar(
        select(OrgUnit.code)
        .where(OrgUnit.kind == "village", OrgUnit.code.in_(org_subtree(county)))
        .order_by(OrgUnit.code)
    )


def new_person(
    session: Session,
    county: str = LONGCHUAN,
    *,
    born: date = date(1968, 3, 14),
    category: str = "poor_not_exited",
    name: str = "岩温",
) -> Person:
    """A resident with a valid ID number, registered directly (services are tested elsewhere)."""
    person = Person(
        id_number=make_id_number(county, born, next(_sequence) % 1000),
        name=name,
        sex="M",
        birth_date=born,
        village_code=village_of(session, county),
        category=category,
        category_since=date(2016, 1, 1),
    )
    session.add(person)
    session.commit()
    return person


def utc_now() -> datetime:
    return datetime.now(UTC)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
