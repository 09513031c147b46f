"""Slow and stalled clients cannot take the server: `casework serve` with its own defaults (no
proxy in front) keeps answering while dozens of connections sit on half a request."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.gauntlet import clients as c
from tests.gauntlet.conftest import open_cases
from tests.gauntlet.served import Server

pytestmark = pytest.mark.slow

STALLED = 50
# A functional bound, not a benchmark: a stalled server does not answer at all (a sync
# or gthread worker waits for the rest of the request), a live one answers in milliseconds.
ANSWER_WITHIN = 1.0


@pytest.fixture
def default_server(db_url, tmp_path) -> Iterator[Server]:
    """The embedded default: the server's own worker and thread counts."""
    served = Server(db_url, tmp_path, env={"CASEWORK_WORKERS": None, "CASEWORK_THREADS": None})
    served.start()
    yield served
    served.stop()


def _stall(base: str, count: int) -> list[socket.socket]:
    """Connections that send part of a request and then wait: half the headers, or all the
    headers and half the body. Nothing more is ever sent on them."""
    host, port = c._address(base)
    head = f"POST /api/v1/auth/token HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    held = []
    for n in range(count):
        sock = socket.create_connection((host, port), timeout=10)
        if n % 2:
            sock.sendall(head.encode())  # no blank line: the headers never end
        else:
            sock.sendall((head + "Content-Length: 64\r\n\r\n" + '{"username": "a').encode())
        held.append(sock)
    return held


def test_stalled_connections_do_not_stop_answers(default_server, client, session, logins):
    [case_id] = open_cases(client, session, logins, 1)
    base = default_server.base
    held = _stall(base, STALLED)
    try:
        for _ in range(3):
            health = c.call(base, "GET", "/healthz", timeout=ANSWER_WITHIN)
            assert health.status == 200, health
            read = c.call(
                base, "GET", f"/api/v1/cases/{case_id}", headers=c._auth(logins["coordinator"].token),
                timeout=ANSWER_WITHIN,
            )
            assert read.status == 200 and read.json()["id"] == case_id, read
            login = c.call(
                base, "POST", "/api/v1/auth/token", {"username": "nobody", "password": "x"}, timeout=ANSWER_WITHIN
            )
            assert login.status == 401, login
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
