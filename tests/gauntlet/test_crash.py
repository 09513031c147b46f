"""3. Crash: kill -9 the whole server process group while several clients fire transitions, start it
again, and carry on. Every transition a client got a 200 for is in the history; every case is what
its history replays to."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from casework.models import CaseEvent
from tests.gauntlet import clients as c
from tests.gauntlet.conftest import assert_history_agrees, open_cases

pytestmark = pytest.mark.slow

PROCESSES = 4
CASES_EACH = 2
KILLS = 2
SUCCESSES_BETWEEN_KILLS = 12


def wait_for(progress, target: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if progress.value >= target:
            return True
        time.sleep(0.05)
    return False


def test_kill_9_under_load_loses_no_acknowledged_transition(running, clients, client, session, logins):
    case_ids = open_cases(client, session, logins, PROCESSES * CASES_EACH)
    tokens = {"coordinator": logins["coordinator"].token, "hospital": logins["hospital"].token}
    stop, progress = clients.ctx.Event(), clients.ctx.Value("i", 0)
    for n in range(PROCESSES):
        mine = case_ids[n * CASES_EACH : (n + 1) * CASES_EACH]
        hospital = logins["hospital"].org_unit
        clients.start(c.load, stop, progress, clients.results, running.base, mine, tokens, hospital, n)

    restarted_at = []
    try:
        for _ in range(KILLS):
            assert wait_for(progress, progress.value + SUCCESSES_BETWEEN_KILLS, 60), "no load before the kill"
            running.kill9()
            time.sleep(0.3)  # clients meet a closed port for a while
            running.start()
            restarted_at.append(time.time())
        assert wait_for(progress, progress.value + SUCCESSES_BETWEEN_KILLS, 60), "no progress after the restart"
    finally:
        stop.set()
    logs = [sent for _, log in clients.collect() for sent in log]

    acknowledged = [s for s in logs if s.method == "POST" and s.answer.status == 200]
    assert any(s.at > restarted_at[-1] for s in acknowledged)
    assert any(s.answer.status == 0 for s in logs), "no client noticed the crash"
    for sent in logs:
        assert sent.answer.status < 500 or sent.answer.status == 503, sent
        if sent.answer.status >= 400:
            assert sent.answer.content_type == "application/problem+json", sent

    session.rollback()
    recorded = {
        (e.case_id, e.seq): e.event for e in session.scalars(select(CaseEvent).where(CaseEvent.case_id.in_(case_ids)))
    }
    for sent in acknowledged:
        version = sent.answer.json()["version"]
        assert recorded.get((sent.case_id, version)) == sent.event, f"lost: {sent.event} → v{version} of {sent.case_id}"
    assert_history_agrees(session, case_ids)
