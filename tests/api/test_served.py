"""Against the real server: `casework serve` (gunicorn, several worker processes), 16 clients racing
for one case version over HTTP. Exactly one wins; the history has no gap."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from casework.services.cases import replay
from tests.api.conftest import add_login
from tests.api.helpers import iso
from tests.api.test_lifecycle import new_case

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db_url, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CASEWORK_WORKERS": "3",
        "CASEWORK_SCHEDULER": "off",
        "HOME": str(tmp_path),
    }
    env.pop("XDG_RUNTIME_DIR", None)
    log_path = tmp_path / "server.log"
    # Files, not pipes nobody reads: the server never blocks on them.
    with log_path.open("wb") as log, (tmp_path / "access.log").open("wb") as access:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=access,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("server did not start: " + log_path.read_text(errors="replace")[-2000:])
    yield base
    process.terminate()
    try:
        # gunicorn gives requests in flight 30 s (graceful_timeout); these have none.
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("server did not stop on SIGTERM within 20 s: " + log_path.read_text(errors="replace")[-3000:])


def _post(url: str, body: dict, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        assert error.headers["Content-Type"] == "application/problem+json"
        return error.code


def test_sixteen_clients_one_etag_one_winner(server, client, session, logins):
    case = new_case(client, session, logins)
    coordinator = logins["coordinator"]
    hospital = logins["hospital"].org_unit
    barrier = threading.Barrier(CLIENTS)
    statuses: list[int] = []

    def fire(n: int) -> None:
        # Half confirm, half exclude: two different valid answers racing for one version.
        body = (
            {"event": "exclude", "reason": f"client {n}"}
            if n % 2
            else {
                "event": "confirm",
                "data": {"diagnosis_code": "C15.9", "diagnosed_by": hospital, "diagnosed_at": iso(1)},
            }
        )
        barrier.wait()
        statuses.append(
            _post(f"{server}/api/v1/cases/{case.id}/events", body, {**coordinator.headers, "If-Match": '"1"'})
        )

    threads = [threading.Thread(target=fire, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert Counter(statuses) == {200: 1, 412: CLIENTS - 1}
    session.rollback()
    rebuilt = replay(session, case.id)
    assert rebuilt.version == 2


def test_the_access_log_shows_paths_and_status_but_no_query(server, tmp_path):
    def logged() -> list[str]:
        return (tmp_path / "access.log").read_text().splitlines()

    def health_checks() -> int:
        return sum('"GET /healthz" 200' in line for line in logged())

    checks_before = health_checks()
    query = urllib.parse.urlencode({"name": "张三", "id_number": "533124198503150021"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server}/api/v1/persons?{query}", timeout=10)
    assert refused.value.code == 401
    with urllib.request.urlopen(server + "/healthz", timeout=10) as answer:
        size = len(answer.read())
    deadline = time.monotonic() + 10
    while not any("/api/v1/persons" in line for line in logged()) or health_checks() == checks_before:
        assert time.monotonic() < deadline, logged()  # each line is written once its answer is sent
        time.sleep(0.1)
    lines = logged()
    persons = next(line for line in lines if "/api/v1/persons" in line)
    assert re.fullmatch(r'127\.0\.0\.1 "GET /api/v1/persons" 401 \d+ \d+ms', persons), persons
    assert any(re.search(rf'"GET /healthz" 200 {size} \d+ms$', line) for line in lines), lines
    log = "\n".join(lines)
    assert "张三" not in log and "name=" not in log and "533124198503150021" not in log


def test_login_through_the_server(server, session):
    add_login(session, "served.clerk", "county_coordinator", "533124")
    status = _post(f"{server}/api/v1/auth/token", {"username": "served.clerk", "password": "correct horse battery"}, {})
    assert status == 200


def test_a_server_stopped_while_its_workers_boot_stops_at_once(server):
    """Stopped as soon as the first of its three workers answers (a deploy that changes its mind,
    a supervisor's quick restart): the others are still booting, and each must take the SIGTERM
    rather than lose it and be killed by the master after its 30-s graceful timeout. The fixture's
    teardown fails if the server is still running 20 s after SIGTERM."""
    with urllib.request.urlopen(server + "/healthz", timeout=5) as response:
        assert response.status == 200


def test_serve_opens_no_control_socket(server, tmp_path):
    """gunicorn would otherwise listen on ~/.gunicorn/gunicorn.ctl, where any process of the same
    user may shut the API down or reload it, and one server's stop unlinks another's socket."""
    with urllib.request.urlopen(server + "/healthz", timeout=5) as response:
        assert response.status == 200
    assert not (tmp_path / ".gunicorn").exists()


def test_serve_runs_one_worker_on_sqlite_and_two_on_postgresql(monkeypatch):
    """SQLite has one writer: a second process could only wait for the lock in SQLite's busy
    handler, which stops all of that worker's greenlets. CASEWORK_WORKERS overrides both."""
    from api.server import default_workers

    monkeypatch.delenv("CASEWORK_WORKERS", raising=False)
    assert default_workers("sqlite:////srv/casework/instance/casework.db") == 1
    assert default_workers("postgresql+psycopg://casework@db/casework") == 2
    monkeypatch.setenv("CASEWORK_WORKERS", "4")
    assert default_workers("sqlite:///x.db") == 4
