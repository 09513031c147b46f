"""4. Database outage (PostgreSQL): the server's connections are killed with pg_terminate_backend
in the middle of the load, then the database refuses connections for a while. Clients hear 503
problem+json with Retry-After (never a 500, never HTML); the service recovers by itself; nothing is
half-written."""

from __future__ import annotations

import time
from contextlib import suppress

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from casework.models import CaseEvent
from tests.databases import PG_ADMIN_URL
from tests.gauntlet import clients as c
from tests.gauntlet.conftest import assert_history_agrees, open_cases
from tests.gauntlet.served import APPLICATION_NAME
from tests.gauntlet.test_crash import wait_for

PROCESSES = 4
CASES_EACH = 2
TERMINATIONS = 6
OUTAGE_SECONDS = 2.0


@pytest.fixture
def pg_admin(db_url, engine_name):
    if engine_name != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        yield admin, make_url(db_url).database


def terminate_server_sessions(admin: psycopg.Connection, database: str) -> int:
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
        (database, APPLICATION_NAME),
    ).fetchall()
    return len(rows)


@pytest.mark.slow
def test_killed_connections_and_an_outage_answer_503_and_heal(running, clients, client, session, logins, pg_admin):
    admin, database = pg_admin
    case_ids = open_cases(client, session, logins, PROCESSES * CASES_EACH)
    session.rollback()
    tokens = {"coordinator": logins["coordinator"].token, "hospital": logins["hospital"].token}
    stop, progress = clients.ctx.Event(), clients.ctx.Value("i", 0)
    for n in range(PROCESSES):
        mine = case_ids[n * CASES_EACH : (n + 1) * CASES_EACH]
        hospital = logins["hospital"].org_unit
        clients.start(c.load, stop, progress, clients.results, running.base, mine, tokens, hospital, n, True)
    master = running.process.pid
    killed = 0
    try:
        assert wait_for(progress, 10, 60), "no load before the outage"
        for _ in range(TERMINATIONS):  # connections die under requests in flight
            killed += terminate_server_sessions(admin, database)
            time.sleep(0.15)
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            killed += terminate_server_sessions(admin, database)
            time.sleep(OUTAGE_SECONDS)  # nothing reaches the database now
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        healed_at = time.time()
        assert wait_for(progress, progress.value + 10, 60), "the service did not recover by itself"
    finally:
        with suppress(psycopg.Error):
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        stop.set()
    logs = [sent for _, log in clients.collect() for sent in log]

    assert killed > 0
    assert running.alive and running.process.pid == master, "the server was restarted"
    unavailable = [s for s in logs if s.answer.status == 503]
    assert unavailable, "no client heard of the outage"
    for sent in logs:
        answer = sent.answer
        assert answer.status != 0, f"connection dropped: {sent}"
        assert answer.status < 500 or answer.status == 503, sent
        if answer.status >= 400:
            assert answer.content_type == "application/problem+json", sent
        if answer.status == 503:
            assert int(answer.headers["retry-after"]) > 0, sent
            assert answer.json()["status"] == 503
    assert any(s.method == "POST" and s.answer.status == 200 and s.at > healed_at for s in logs)
    # A client that heard 503 and retried under its key reached a final answer: no claim was left
    # behind answering "still being processed" (found: the release could not be written while the
    # database was away, and the claim blocked the key for IDEMPOTENCY_STALE_SECONDS).
    by_key: dict[str, list[c.Answer]] = {}
    for sent in logs:
        if sent.key:
            by_key.setdefault(sent.key, []).append(sent.answer)
    for answers in by_key.values():
        final = answers[-1]
        assert final.status in (200, 412), answers
    assert_history_agrees(session, case_ids)


def test_an_applied_transition_is_never_answered_412_on_retry(client, session, logins, monkeypatch):
    """Found by the outage run: clients that heard 503, retried under their key and got 412 for
    their own, applied transition. The database used to be able to go away after fire() committed,
    while the full ID read was recorded; now the work, its access-log row and the stored answer are
    one commit, and the worst moment left is that commit itself: it reaches the database, its
    acknowledgement does not. The client hears 503; its retry hears the 200 committed with the work."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    from tests.api.helpers import iso

    (case_id,) = open_cases(client, session, logins, 1)
    coordinator = logins["coordinator"]
    commit = Session.commit

    def commit_then_lose_the_connection(self):
        commit(self)
        raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(Session, "commit", commit_then_lose_the_connection)
    body = {"event": "confirm", "data": {"diagnosis_code": c.ICD, "diagnosed_by": logins["hospital"].org_unit}}
    body["data"]["diagnosed_at"] = iso(1)
    headers = {**coordinator.headers, "If-Match": '"1"', "Idempotency-Key": "applied-then-503"}
    first = client.post(f"/api/v1/cases/{case_id}/events", json=body, headers=headers)
    monkeypatch.undo()
    session.rollback()
    applied = session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case_id)) == 2
    retry = client.post(f"/api/v1/cases/{case_id}/events", json=body, headers=headers)
    assert applied
    assert (first.status_code, retry.status_code) == (503, 200), (first.json, retry.json)
    assert retry.headers["Idempotent-Replayed"] == "true" and retry.json["version"] == 2


def test_a_connection_killed_after_the_answer_keeps_the_answer(app, client, logins, pg_admin):
    """Found by the outage run: HTML 500s from gunicorn. The database killed the connection after
    the view had answered; Flask-SQLAlchemy's teardown rolled back on it, raised, and the finished
    answer was replaced by gunicorn's error page."""
    admin, _database = pg_admin

    @app.get("/api/v1/gauntlet/answered-then-killed")
    def answered_then_killed():
        from sqlalchemy import text

        from api.extensions import db

        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()  # a read transaction stays open
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return {"answered": True}

    response = client.get("/api/v1/gauntlet/answered-then-killed", headers=logins["coordinator"].headers)
    assert (response.status_code, response.json) == (200, {"answered": True})
    assert client.get("/api/v1/policies", headers=logins["coordinator"].headers).status_code == 200  # healed
