"""5. More than one machine: two `casework serve` nodes on their own ports against one PostgreSQL
database, each with its own scheduler scanning every second.

Client processes walk the same cases through both nodes at once (two per group of cases, one per
node) while screened cases are made overdue. No transition may be lost or doubled (stored state =
replay of the history, versions contiguous, every acknowledged answer recorded), and every overdue
condition raises exactly one alert although both schedulers scan it.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from casework.db import utcnow
from casework.models import Alert, Case, CaseEvent
from tests.gauntlet import clients as c
from tests.gauntlet.conftest import assert_history_agrees, open_cases
from tests.gauntlet.served import Server

pytestmark = pytest.mark.slow

GROUPS = 2  # groups of cases; each walked by one client per node
CASES_EACH = 2
OVERDUE = 6
TRANSITIONS = 40  # acknowledged transitions (over both nodes) before the load stops


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def nodes(db_url, tmp_path):
    if not db_url.startswith("postgresql"):
        pytest.skip("N nodes share one PostgreSQL database (SQLite is one file on one machine)")
    scheduling = {"CASEWORK_SCHEDULER": "on", "CASEWORK_SCAN_SECONDS": "1"}
    started = []
    try:
        for _ in range(2):
            node = Server(db_url, tmp_path, env=scheduling, workers=2)
            node.start(timeout=90)
            started.append(node)
        yield started
    finally:
        for node in started:
            node.stop()


def test_two_nodes_one_database(nodes, clients, client, session, logins):
    assert len(nodes) == 2
    walked = open_cases(client, session, logins, GROUPS * CASES_EACH)
    late = open_cases(client, session, logins, OVERDUE)
    tokens = {"coordinator": logins["coordinator"].token, "hospital": logins["hospital"].token}
    hospital = logins["hospital"].org_unit
    stop, progress = clients.ctx.Event(), clients.ctx.Value("i", 0)
    index = 0
    for group in range(GROUPS):
        mine = walked[group * CASES_EACH : (group + 1) * CASES_EACH]
        for node in nodes:  # the same cases through both nodes at once
            clients.start(c.load, stop, progress, clients.results, node.base, mine, tokens, hospital, index)
            index += 1
    try:
        assert wait_for(lambda: progress.value >= TRANSITIONS // 2, 120), "no load"
        # Made overdue while the transitions run: each node's scheduler finds them.
        session.execute(update(Case).where(Case.id.in_(late)).values(due_at=utcnow() - timedelta(hours=1)))
        session.commit()
        assert wait_for(lambda: progress.value >= TRANSITIONS, 120), "the load stalled"
        raised = select(func.count(func.distinct(Alert.case_id))).where(Alert.case_id.in_(late))

        def all_raised() -> bool:
            session.rollback()
            return session.scalar(raised) == OVERDUE

        assert wait_for(all_raised, 60), "the schedulers raised no alert"
        time.sleep(3)  # both schedulers scan the same conditions a few more times
    finally:
        stop.set()
    results = clients.collect()
    logs = [sent for _, log in results for sent in log]

    # Load went through both nodes (client n talks to node n % 2), and both schedulers scanned.
    acknowledged = [s for s in logs if s.method == "POST" and s.answer.status == 200]
    per_node = Counter(n % 2 for n, log in results for s in log if s.method == "POST" and s.answer.status == 200)
    assert per_node[0] > 0 and per_node[1] > 0, per_node
    for sent in logs:
        assert sent.answer.status < 500, sent
        if sent.answer.status >= 400:
            assert sent.answer.status == 412 and sent.answer.content_type == "application/problem+json", sent
    for node in nodes:
        assert "overdue scan" in node.log_tail(200_000), "a node's scheduler never scanned"

    # No transition lost or doubled.
    session.rollback()
    recorded = {
        (e.case_id, e.seq): e.event for e in session.scalars(select(CaseEvent).where(CaseEvent.case_id.in_(walked)))
    }
    for sent in acknowledged:
        version = sent.answer.json()["version"]
        assert recorded.get((sent.case_id, version)) == sent.event, f"lost: {sent.event} → v{version} of {sent.case_id}"
    answered = Counter((s.case_id, s.answer.json()["version"]) for s in acknowledged)
    assert max(answered.values()) == 1, "one version acknowledged twice"
    assert_history_agrees(session, walked + late)

    # Exactly one alert per overdue condition, whatever the number of schedulers.
    per_case = Counter(session.scalars(select(Alert.case_id).where(Alert.case_id.in_(late))))
    assert per_case == dict.fromkeys(late, 1)
    assert set(session.scalars(select(Alert.rule).where(Alert.case_id.in_(late)))) == {"not_confirmed"}
