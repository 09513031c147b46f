"""CPU one execution of a transition's statements costs the client: through SQLAlchemy's
``Connection.execute`` against ``DirectStatement`` (casework/direct_sql.py) on the driver's cursor,
the same compiled SQL and parameters, in one run on each engine.

Seeds screened cases in Longchuan, then, in one transaction that is rolled back, runs each read
``--runs`` times both ways (alternating blocks, so the machine's drift falls on both alike):

  authentication   token, user and org unit (casework/services/auth.py)
  locking read     the case row FOR UPDATE with all that ``fire`` reads (casework/services/cases.py)

Prints the client's CPU per execution (``time.process_time``) and direct ÷ SQLAlchemy.

    .venv/bin/python bench/statements.py [--engine both] [--runs 2000]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end (a stable sort) and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import databases, reporting, seeding
from bench.transitions import COUNTY, DISEASE, USERNAME

BLOCKS = 10  # alternating blocks per way


def main() -> None:
    parser = reporting.parser(__doc__)
    parser.add_argument("--runs", type=int, default=2000, help="executions per statement and way (default 2000)")
    args = parser.parse_args()
    print(__doc__.split("\n\n")[0])
    print(reporting.machine_info())
    results = []
    for engine in reporting.engines(args.engine):
        print(engine)
        with databases.bench_database(engine) as db:
            token, _ = seeding.screened_for_a_coordinator(db, COUNTY, DISEASE, USERNAME, 10)
            for key, value in db.env().items():
                os.environ[key] = value
            for name, sqlalchemy, direct in _statements(token, args.runs):
                results.append((engine, name, sqlalchemy, direct))
                print(f"  {name:<16} SQLAlchemy {sqlalchemy * 1e6:6.0f} µs   direct {direct * 1e6:6.0f} µs")
    print("\nsummary: client CPU per execution, direct ÷ SQLAlchemy")
    for engine, name, sqlalchemy, direct in results:
        print(f"  {engine:<11} {name:<16} {direct / sqlalchemy:5.2f}")


def _statements(token: str, runs: int) -> list[tuple[str, float, float]]:
    from api.app import create_app
    from api.extensions import db
    from casework.actor import Actor
    from casework.services.auth import _ACTOR_OF_TOKEN, _digest
    from casework.services.cases import _lock_statement

    app = create_app()
    coordinator = Actor(None, USERNAME, "county_coordinator", COUNTY, "county")
    statements = (
        ("authentication", _ACTOR_OF_TOKEN, {"digest": _digest(token), "now": datetime.now(UTC)}),
        (
            "locking read",
            _lock_statement(coordinator.role, coordinator.org_unit_code, coordinator.org_kind),
            {"case_id": 1, "named_hospital": None, "named_group": None},
        ),
    )
    measured = []
    with app.app_context():
        session = db.session()
        connection = session.connection()
        for name, direct, params in statements:
            ways = (
                lambda: connection.execute(direct.statement, params).first(),  # noqa: B023
                lambda: direct.first(connection, params),  # noqa: B023
            )
            assert tuple(ways[0]()) == ways[1](), f"{name}: the two ways read different rows"
            measured.append((name, *_alternating(ways, runs)))
        session.rollback()
        db.engine.dispose()  # the database is dropped next: no connection may hold it
    return measured


def _alternating(ways: tuple[Callable[[], object], ...], runs: int) -> list[float]:
    """Seconds of CPU per call of each way, over ``runs`` calls in alternating blocks."""
    for way in ways:  # warm-up: compiled, prepared on the server
        for _ in range(20):
            way()
    spent = [0.0] * len(ways)
    block = max(1, runs // BLOCKS)
    for _ in range(BLOCKS):
        for i, way in enumerate(ways):
            started = time.process_time()
            for _ in range(block):
                way()
            spent[i] += time.process_time() - started
    return [s / (block * BLOCKS) for s in spent]


if __name__ == "__main__":
    main()
