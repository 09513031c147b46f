"""Sixteen clients act on one case at the same version: exactly one wins, on both engines."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.errors import VersionMismatch
from casework.models import Case, CaseEvent
from casework.services.cases import fire, replay
from tests.casework.helpers import Walker
from tests.conftest import at

NOW = at(2018, 6, 1, 9)
CLIENTS = 16


def test_sixteen_threads_one_version_one_winner(session, engine):
    walk = Walker(session, NOW)
    case = walk.confirm(walk.new_case())
    case_id, version = case.id, case.version
    session.close()
    barrier = threading.Barrier(CLIENTS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with Session(engine) as own:
            barrier.wait()
            try:
                # Half assign, half exclude: different events racing for one version.
                if n % 2:
                    fire(
                        own,
                        case_id,
                        "assign",
                        walk.coordinator,
                        {"hospital_id": walk.county_hospital, "plan": f"plan {n}"},
                        version,
                        now=NOW,
                    )
                else:
                    fire(own, case_id, "exclude", walk.coordinator, {}, version, reason=f"client {n}", now=NOW)
                result = "won"
            except VersionMismatch:
                result = "stale"
            except Exception as exc:
                result = f"error: {type(exc).__name__}: {exc}"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert Counter(outcomes) == {"won": 1, "stale": CLIENTS - 1}
    with Session(engine) as check:
        stored = check.get(Case, case_id)
        assert stored.version == version + 1
        events = check.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case_id))
        assert events == version + 1
        rebuilt = replay(check, case_id)
        assert (rebuilt.state, rebuilt.version) == (stored.state, stored.version)
