"""What one request costs the database: its SQL statements and transactions, counted with engine
listeners over HTTP (the Flask test client), on both engines.

A statement is what reaches the driver's cursor, less transaction control (SQLite's BEGIN
IMMEDIATE is how a transaction begins there; it is counted as the transaction). A transaction is a
``begin`` event; each must end in a ``commit`` when the request wrote, and nothing may stay open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event

from tests.api.helpers import iso
from tests.api.test_lifecycle import new_case


@dataclass
class Tally:
    statements: list[str] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [_kind(sql) for sql in self.statements]


def _kind(sql: str) -> str:
    """ "SELECT cases", "UPDATE cases", "INSERT access_log": the verb and the table it is about. A
    data-modifying WITH is its parts in the order they are written, joined by " + "."""
    flat = " ".join(sql.split())
    if flat.upper().startswith("WITH "):
        return " + ".join(f"{verb.split()[0].upper()} {table}" for verb, table in _WRITES.findall(flat))
    while re.search(r"\([^()]*\)", flat):  # drop subqueries and calls: the FROM sought is the outer one
        flat = re.sub(r"\([^()]*\)", "", flat)
    verb = flat.split()[0].upper()
    pattern = {"SELECT": r"\bFROM (\w+)", "INSERT": r"^INSERT INTO (\w+)", "UPDATE": r"^UPDATE (\w+)"}[verb]
    return f"{verb} {re.search(pattern, flat, re.IGNORECASE).group(1)}"


_WRITES = re.compile(r"\b(UPDATE|INSERT INTO) (\w+)", re.IGNORECASE)


@contextmanager
def counted(app) -> Iterator[Tally]:
    from api.extensions import db

    with app.app_context():
        engine = db.engine
    tally = Tally()

    def on_statement(_conn, _cursor, statement, _parameters, _context, _many) -> None:
        if statement.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            tally.statements.append(statement)

    listeners = {
        "before_cursor_execute": on_statement,
        "begin": lambda _conn: tally.transactions.append("begin"),
        "commit": lambda _conn: tally.transactions.append("commit"),
        "rollback": lambda _conn: tally.transactions.append("rollback"),
    }
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        yield tally
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)


CONFIRM_READS = [
    "SELECT users",  # authentication: token, user and org unit in one joined SELECT
    # the case locked (FOR UPDATE), with person, hospital, group, "has open alerts", and the
    # diagnosing hospital the data names, which confirm's guard looks up
    "SELECT cases",
]
CONFIRM_WRITES = {
    # state, version and deadline; the history; the read of the full ID number the coordinator is
    # shown, logged
    "sqlite": ["UPDATE cases", "INSERT case_events", "INSERT access_log"],
    # the same three writes as one statement, in one round trip
    "postgresql": ["UPDATE cases + INSERT access_log + INSERT case_events"],
}


@pytest.fixture
def confirm(client, session, logins):
    case = new_case(client, session, logins)
    data = {"diagnosis_code": "C15.9", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(1)}
    return case, data


def test_a_keyed_transition_is_seven_statements_in_one_transaction(app, confirm, logins, engine_name):
    case, data = confirm
    with counted(app) as tally:
        response = case.fire(logins["coordinator"], "confirm", data, etag='"1"', headers={"Idempotency-Key": "k"})
    assert response.status_code == 200, response.json
    # The answer stored under the key, in the work's own transaction.
    expected = [*CONFIRM_READS, *CONFIRM_WRITES[engine_name], "INSERT idempotency_records"]
    assert tally.kinds == expected, " | ".join(tally.kinds)
    assert len(tally.statements) <= 7  # the goal: seven at most
    assert tally.transactions == ["begin", "commit"]


def test_an_unkeyed_transition_is_one_transaction(app, confirm, logins, engine_name):
    case, data = confirm
    with counted(app) as tally:
        response = case.fire(logins["coordinator"], "confirm", data, etag='"1"')
    assert response.status_code == 200, response.json
    assert tally.kinds == [*CONFIRM_READS, *CONFIRM_WRITES[engine_name]]
    assert tally.transactions == ["begin", "commit"]


@pytest.mark.parametrize(
    ("named", "error"), [("H999999-99", "no such hospital"), (None, "is a hospital of another province")]
)
def test_the_guards_read_the_named_hospital_with_the_case(app, session, confirm, logins, named, error):
    """The hospital an event names comes with the locked case: a guard that refuses it (no such
    hospital; one of another province) costs no query of its own either."""
    from sqlalchemy import select

    from casework.models import Hospital

    case, data = confirm
    named = named or session.scalar(select(Hospital.code).where(~Hospital.region_code.startswith("53")).limit(1))
    with counted(app) as tally:
        response = case.fire(logins["coordinator"], "confirm", {**data, "diagnosed_by": named}, etag='"1"')
    assert response.status_code == 422 and response.json["errors"] == {"diagnosed_by": [error]}, response.json
    assert tally.kinds == CONFIRM_READS
    assert tally.transactions == ["begin", "commit"]


def test_a_refused_transition_wrote_nothing_and_ends_in_commit(app, confirm, logins):
    case, data = confirm
    with counted(app) as tally:
        response = case.fire(logins["coordinator"], "confirm", data, etag='"7"')
    assert response.status_code == 412
    assert tally.kinds == ["SELECT users", "SELECT cases"]  # the version is checked on the lock
    assert tally.transactions == ["begin", "commit"]  # as good as a rollback, and cheaper after


def test_a_read_is_one_query_after_authentication(app, confirm, logins, engine_name):
    case, _ = confirm
    with counted(app) as tally:
        assert case.get(logins["city_supervisor"]).status_code == 200
    assert tally.kinds == ["SELECT users", "SELECT cases"]  # masked: nothing to log, nothing written
    # A transaction that only read ends in COMMIT, the same as ROLLBACK for it, but keeping the
    # connection's prepared statements (test_a_read_keeps_the_prepared_statements below).
    assert tally.transactions == ["begin", "commit"]

    with counted(app) as tally:
        assert case.get(logins["coordinator"]).status_code == 200
    assert tally.kinds == ["SELECT users", "SELECT cases", "INSERT access_log"]
    # PostgreSQL continues the authentication's transaction; SQLite must end its read transaction
    # and BEGIN IMMEDIATE for the access-log row (a coordinator's GET is known to write only once
    # the token says who is asking).
    expected = ["begin", "commit"] if engine_name == "postgresql" else ["begin", "commit", "begin", "commit"]
    assert tally.transactions == expected


def test_many_clients_share_a_fixed_pool_of_connections(app, confirm, logins, engine_name):
    """More requests at once than the pool holds wait for a connection; none opens one of its own
    (an overflow connection is a new PostgreSQL backend per request, closed again after it)."""
    if engine_name != "postgresql":
        pytest.skip("SQLite connections are a file handle, not a server process")
    from api.extensions import db

    case, _ = confirm
    with app.app_context():
        engine = db.engine
    opened = []

    def on_connect(*_) -> None:
        opened.append(1)

    event.listen(engine, "connect", on_connect)
    try:
        with ThreadPoolExecutor(max_workers=24) as pool:
            statuses = list(
                pool.map(
                    lambda _: (
                        app.test_client()
                        .get(f"/api/v1/cases/{case.id}", headers=logins["city_supervisor"].headers)
                        .status_code
                    ),
                    range(96),
                )
            )
    finally:
        event.remove(engine, "connect", on_connect)
    assert statuses == [200] * 96
    assert engine.pool.size() == 10 and len(opened) <= engine.pool.size()


def test_a_read_keeps_the_prepared_statements(db_url, logins, engine_name):
    """psycopg prepares a statement on the server after its fifth run on a connection, and discards
    every prepared statement at a ROLLBACK. A request that only reads ends in COMMIT, so the reads
    between two transitions do not make the next one parse and plan each statement again."""
    if engine_name != "postgresql":
        pytest.skip("sqlite3 keeps its statement cache across a rollback")
    from sqlalchemy import text

    from api.app import create_app
    from api.extensions import db

    one_connection = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db_url,
            "TESTING": True,
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0},
        }
    )
    requests = one_connection.test_client()
    for _ in range(7):
        assert requests.get("/api/v1/cases?limit=5", headers=logins["city_supervisor"].headers).status_code == 200

    def prepared() -> int:
        with one_connection.app_context(), db.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()

    assert prepared() >= 2  # the token's query and the list's, at least
    with one_connection.app_context():
        db.engine.dispose()
