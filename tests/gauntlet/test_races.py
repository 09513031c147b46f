"""1. Races: 16 separate processes fire at one case version over HTTP against the served app.
Exactly one wins each round, the rest get 412; the history has no gap and replays to the stored case."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from tests.api.helpers import iso
from tests.gauntlet import clients as c
from tests.gauntlet.conftest import assert_history_agrees, open_cases

RACERS = 16

pytestmark = pytest.mark.slow


def test_sixteen_processes_one_version_one_winner(running, clients, client, session, logins):
    (case_id,) = open_cases(client, session, logins, 1)
    hospital = logins["hospital"].org_unit
    barrier = clients.barrier(RACERS)
    diagnosed: dict[int, str] = {}
    for n in range(RACERS):
        # Every racer's body is its own: confirm with its own diagnosis time at version 1, then
        # assign (odd racers) or withdraw (even racers) at version 2.
        first = c.event_body("confirm", hospital)
        first["data"]["diagnosed_at"] = diagnosed[n] = iso((n + 1) / 24)  # n + 1 hours ago
        second = c.event_body("assign", hospital, f"racer {n}") if n % 2 else c.event_body("withdraw", hospital, f"{n}")
        rounds = [('"1"', first), ('"2"', second)]
        clients.start(c.race, barrier, clients.results, running.base, case_id, logins["coordinator"].token, rounds, n)
    results = clients.collect()

    assert len(results) == RACERS
    winners = []
    for round_no in range(2):
        answers = [(n, per_racer[round_no]) for n, per_racer in results]
        assert Counter(a.status for _, a in answers) == {200: 1, 412: RACERS - 1}
        (winner, answer), *_ = [(n, a) for n, a in answers if a.status == 200]
        winners.append(winner)
        assert answer.headers["etag"] == f'"{round_no + 2}"'
        for _, loser in answers:
            if loser.status == 412:
                assert loser.content_type == "application/problem+json", loser
                assert loser.json()["current_version"] == round_no + 2

    history = client.get(f"/api/v1/cases/{case_id}/events", headers=logins["coordinator"].headers).json
    version = client.get(f"/api/v1/cases/{case_id}", headers=logins["coordinator"].headers).json["version"]
    assert [h["seq"] for h in history] == list(range(1, version + 1)) == [1, 2, 3]
    # The history holds the winners' own requests, nobody else's.
    recorded = datetime.fromisoformat(history[1]["data"]["diagnosed_at"])
    assert recorded == datetime.fromisoformat(diagnosed[winners[0]])
    assert history[2]["event"] == ("assign" if winners[1] % 2 else "withdraw")
    assert_history_agrees(session, [case_id])
