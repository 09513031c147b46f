"""Slow and stalled clients cannot take the server: `casework serve` with its own defaults (no
proxy in front) keeps answering while dozens of connections sit on half a request."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import pytest

from tests.gauntlet import clients as c
from tests.gauntlet.conftest import open_cases
from tests.gauntlet.served import Server

pytestmark = pytest.mark.slow

STALLED = 50
# A functional bound, not a benchmark: a stalled server does not answer at all (a sync or gthread
# worker waits for the rest of the request: 0 of 50 `/healthz` calls answered within 5 s, measured
# with bench/stall.py), a live one answers in milliseconds. The bound is generous because this
# machine is shared: a loaded CPU must not pass for a stall.
ANSWER_WITHIN = 5.0


@pytest.fixture(scope="module")
def default_server(db_url, tmp_path_factory) -> Iterator[Server]:
    """The embedded default: the server's own worker and thread counts."""
    defaults = {"CASEWORK_WORKERS": None, "CASEWORK_THREADS": None}
    served = Server(db_url, tmp_path_factory.mktemp("default"), env=defaults)
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
    token = c._auth(logins["coordinator"].token)
    for _ in range(4):  # every worker has connected to the database and answered once
        assert c.call(base, "GET", f"/api/v1/cases/{case_id}", headers=token).status == 200
    held = _stall(base, STALLED)
    try:
        for _ in range(3):
            health = c.call(base, "GET", "/healthz", timeout=ANSWER_WITHIN)
            assert health.status == 200, health
            read = c.call(base, "GET", f"/api/v1/cases/{case_id}", headers=token, timeout=ANSWER_WITHIN)
            assert read.status == 200 and read.json()["id"] == case_id, read
            login = c.call(
                base, "POST", "/api/v1/auth/token", {"username": "nobody", "password": "x"}, timeout=ANSWER_WITHIN
            )
            assert login.status == 401, login
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()


def _raw(base: str, request: bytes) -> tuple[int, str, dict]:
    """Send bytes as they are (no client library would send these) and read the whole answer."""
    host, port = c._address(base)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), json.loads(body)


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(150)) + b"\r\n", 431),
    ],
)
def test_the_servers_own_refusals_are_problem_json(default_server, request_bytes, status):
    answered, content_type, body = _raw(default_server.base, request_bytes)
    assert (answered, content_type, body["status"]) == (status, "application/problem+json", status)
    assert body["type"] and body["title"]
