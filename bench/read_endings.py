"""What a read request's ending costs PostgreSQL: COMMIT (casework/db.py ``end_read``) against the
ROLLBACK every read ended with before, measured in one run on one database.

psycopg prepares a statement on the server after its fifth run on a connection, and discards every
prepared statement of that connection at a ROLLBACK. A read that ends in ROLLBACK therefore never
runs prepared, and makes the next requests on its connection parse and plan every statement again.
``bench/transitions.py`` fires transitions only, whose transactions commit, and cannot show this.

Seeds screened cases in Longchuan, then runs the app in-process (Flask test client, a pool of one
connection, as a busy worker's connection sees one request after another) as the county
coordinator, three phases per ending:

  transitions   confirm then exclude on a case (POST /api/v1/cases/{id}/events)
  list reads    GET /api/v1/cases?limit=5
  mixed         each transition followed by a list read

The baseline ending is the old one: ``end_read`` told that no transaction may commit, so every
transaction that wrote nothing rolls back. Prints PostgreSQL CPU (the backend's, from /proc) and
client CPU per request, and COMMIT ÷ ROLLBACK for each.

    .venv/bin/python bench/read_endings.py [--requests 600]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end (a stable sort) and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import databases, procfs, reporting, seeding
from bench.transitions import COUNTY, DISEASE, USERNAME, request_bodies  # the same county, disease, login, bodies

LIST = "/api/v1/cases?limit=5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="cases per timed phase (default 600)")
    args = parser.parse_args()
    if databases.pg_version() is None:
        print(f"PostgreSQL at {databases.PG_ADMIN_URL} unreachable: nothing to measure (its prepared statements)")
        return
    print(__doc__.split("\n\n")[0])
    print(reporting.machine_info())
    rows = []
    with databases.bench_database("postgresql") as db:
        cases = 4 * args.requests + 100  # two endings, two phases that move cases, with warm-ups
        token, _ = seeding.screened_for_a_coordinator(db, COUNTY, DISEASE, USERNAME, cases)
        requests = _Requests(db, token, iter(range(1, cases + 1)))
        # The endings alternate phase by phase, so that the machine's drift falls on both alike.
        for phase, run in (
            ("transitions", requests.transitions),
            ("list reads", requests.reads),
            ("mixed", requests.mixed),
        ):
            for ending, patch in (("ROLLBACK", _never_commit), ("COMMIT", nullcontext)):
                with patch():
                    run(25)  # warm-up: statements prepared, as far as the ending lets them be
                    db_cpu, client_cpu, count = requests.measure(run, args.requests)
                    rows.append((phase, ending, db_cpu / count, client_cpu / count))
                    print(
                        f"  {phase:<12} ends in {ending:<8}  PostgreSQL {reporting.ms(db_cpu / count):>6} ms"
                        f"  client {reporting.ms(client_cpu / count):>6} ms  per request ({count})"
                    )
    print("\nsummary: CPU per request, COMMIT ÷ ROLLBACK (below 1: cheaper with COMMIT)")
    for phase in ("transitions", "list reads", "mixed"):
        old = next(r for r in rows if r[0] == phase and r[1] == "ROLLBACK")
        new = next(r for r in rows if r[0] == phase and r[1] == "COMMIT")
        print(f"  {phase:<12} PostgreSQL {new[2] / old[2]:5.2f}   client {new[3] / old[3]:5.2f}")


class _Requests:
    def __init__(self, db: databases.BenchDatabase, token: str, case_ids: Iterator[int]) -> None:
        for key, value in db.env().items():
            os.environ[key] = value
        from api.app import create_app

        self.app = create_app({"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}})
        self.client = self.app.test_client()
        self.db = db
        self.case_ids = case_ids
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        bodies = request_bodies()
        self.events = ((bodies["confirm"], '"1"'), (bodies["exclude"], '"2"'))

    def transitions(self, count: int) -> int:
        """``count`` cases moved twice; returns the requests made."""
        for _ in range(count):
            self._transition()
        return 2 * count

    def reads(self, count: int) -> int:
        for _ in range(count):
            self._read()
        return count

    def mixed(self, count: int) -> int:
        """``count`` cases moved twice, a list read after each move."""
        for _ in range(count):
            self._transition(self._read)
        return 4 * count

    def measure(self, run: Callable[[int], int], count: int) -> tuple[float, float, int]:
        """PostgreSQL and client CPU seconds over ``run(count)``, and the requests it made."""
        backends = procfs.pg_backends(self.db.pg_name)
        db0, client0 = sum(map(procfs.cpu_seconds, backends)), time.process_time()
        made = run(count)
        db1, client1 = sum(map(procfs.cpu_seconds, backends)), time.process_time()
        return db1 - db0, client1 - client0, made

    def _transition(self, between: Callable[[], None] | None = None) -> None:
        case_id = next(self.case_ids)
        for body, version in self.events:
            answer = self.client.post(
                f"/api/v1/cases/{case_id}/events", data=body, headers={**self.headers, "If-Match": version}
            )
            assert answer.status_code == 200, answer.get_data(as_text=True)
            if between is not None:
                between()

    def _read(self) -> None:
        answer = self.client.get(LIST, headers=self.headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)


def _never_commit():
    """The ending before ``end_read``: no transaction counts as one that may commit."""
    return mock.patch("casework.db._may_commit", return_value=False)


if __name__ == "__main__":
    main()
