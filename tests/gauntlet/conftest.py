"""Fixtures of the reliability gauntlet: the served app (one per engine, restartable), cases made
over HTTP, separate client processes, and the check that every case agrees with its history."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.id_number import make_id_number
from casework.models import Case, CaseEvent
from casework.services.cases import replay
from tests.api.conftest import app, client, logins  # noqa: F401 (the API tests' fixtures, shared)
from tests.api.helpers import register_person, screen_case
from tests.casework.helpers import OESOPHAGEAL
from tests.conftest import LONGCHUAN, village_of
from tests.gauntlet.served import Server

_people = itertools.count()


@pytest.fixture(scope="package")
def server(db_url, tmp_path_factory) -> Iterator[Server]:
    """`casework serve` on this engine's database, shared by the gauntlet's tests. A test that
    kills it starts it again; the next test finds it running."""
    served = Server(db_url, tmp_path_factory.mktemp("served"))
    served.start()
    yield served
    served.stop()


@pytest.fixture
def running(server) -> Server:
    if not server.alive:
        server.start()
    return server


def open_cases(http, session: Session, who: dict, count: int) -> list[int]:
    """``count`` new cases in ``screened`` (version 1), each for a person of its own, made through
    the Flask test client ``http`` by the coordinator among the logins ``who``."""
    village = village_of(session, LONGCHUAN)
    ids = []
    for _ in range(count):
        n = next(_people)
        number = make_id_number(LONGCHUAN, date(1955, 1, 1) + timedelta(days=n), 7)
        person = register_person(http, who["coordinator"], number, village)
        assert person.status_code == 201, person.json
        case = screen_case(http, who["coordinator"], person.json["id"], OESOPHAGEAL)
        assert case.status_code == 201, case.json
        ids.append(case.json["id"])
    return ids


def assert_history_agrees(session: Session, case_ids: list[int]) -> None:
    """Stored state = replay(events), and the history is seq 1..version without a gap."""
    session.rollback()
    for case_id in case_ids:
        case = session.get(Case, case_id, populate_existing=True)
        seqs = list(session.scalars(select(CaseEvent.seq).where(CaseEvent.case_id == case_id).order_by(CaseEvent.seq)))
        assert seqs == list(range(1, case.version + 1)), f"case {case_id}: history {seqs}, version {case.version}"
        rebuilt = replay(session, case_id)
        stored = (case.state, case.version, case.hospital_code, case.referral_group_code, case.referred_from)
        replayed = (rebuilt.state, rebuilt.version, rebuilt.hospital_code, rebuilt.referral_group_code)
        assert stored == (*replayed, rebuilt.referred_from), f"case {case_id}: stored {stored}, replay {replayed}"


class Clients:
    """Separate client processes (spawned, not forked: no database connection of the test process
    crosses into them), each putting one result on a shared queue."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.results = self.ctx.Queue()
        self.processes: list[Any] = []

    def barrier(self, parties: int):
        return self.ctx.Barrier(parties)

    def start(self, target, *args: Any) -> None:
        process = self.ctx.Process(target=target, args=args, daemon=True)
        process.start()
        self.processes.append(process)

    def collect(self, timeout: float = 180) -> list[Any]:
        """One result from every process (read before join: a full queue would block the child)."""
        out = []
        try:
            for _ in self.processes:
                out.append(self.results.get(timeout=timeout))
        finally:
            for process in self.processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join(5)
        return out


@pytest.fixture
def clients() -> Iterator[Clients]:
    spawned = Clients()
    yield spawned
    for process in spawned.processes:
        if process.is_alive():
            process.kill()
