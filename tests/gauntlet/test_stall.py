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
    defaults = {"CASEWORK_WORKERS": None}
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


def test_a_stalled_upload_holds_no_write_lock(default_server, client, session, logins):
    """A roster upload whose body stops half way: the import has not begun, so nothing it would
    write is locked. Before, the request's write transaction began with authentication, and on
    SQLite a stalled upload held the database's one write lock: every other write waited."""
    [case_id] = open_cases(client, session, logins, 1)
    base = default_server.base
    host, port = c._address(base)
    token = logins["coordinator"].token
    boundary = "casework-stall"
    part = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"roster.csv\"\r\n"
        "Content-Type: text/csv\r\n\r\n身份证号,姓名\r\n"
    ).encode()
    head = (
        f"POST /api/v1/imports/persons HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(part) + 4096}\r\n\r\n"
    ).encode()
    stalled = socket.create_connection((host, port), timeout=10)
    try:
        stalled.sendall(head + part)  # and nothing more
        body = {"event": "exclude", "reason": "not eligible after review"}
        headers = c._auth(token, **{"If-Match": '"1"'})
        moved = c.call(base, "POST", f"/api/v1/cases/{case_id}/events", body, headers=headers, timeout=ANSWER_WITHIN)
        assert moved.status == 200 and moved.json()["state"] == "excluded", moved
    finally:
        with contextlib.suppress(OSError):
            stalled.close()


@pytest.fixture(scope="module")
def one_worker(db_url, tmp_path_factory) -> Iterator[Server]:
    served = Server(db_url, tmp_path_factory.mktemp("one-worker"), workers=1)
    served.start()
    yield served
    served.stop()


# Enough that the worker cannot answer the rest between the other client's answer and the test's
# read of the busy socket: at 30, a fast worker once did (the other had been answered in between).
PIPELINED = 100


def test_a_busy_connection_lets_the_others_in(one_worker, client, session, logins):
    """One worker, one client sending request after request on its connection, another client
    with one request: the second is answered between the first one's requests, not after all of
    them. (A gevent greenlet whose next request is already read never blocks, so it never yields:
    without a yield between requests the busy connection held the worker, and at 8 clients on
    SQLite p99 was 157 ms where p50 was 1.8; docs/performance.md.) Ordering, not timing: the busy
    client's requests are pipelined, all in the server's buffer before the other one arrives."""
    [case_id] = open_cases(client, session, logins, 1)
    host, port = c._address(one_worker.base)
    token = logins["coordinator"].token
    request = (
        f"GET /api/v1/cases/{case_id} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    for _ in range(3):  # the worker has its database connection and has answered once
        assert c.call(one_worker.base, "GET", f"/api/v1/cases/{case_id}", headers=c._auth(token)).status == 200
    with socket.create_connection((host, port), timeout=10) as busy, socket.create_connection((host, port)) as other:
        busy.sendall(request * PIPELINED)
        other.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            answer += other.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        busy.setblocking(False)
        received = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := busy.recv(1 << 20):
                received += chunk
        answered_first = received.count(b"HTTP/1.1 200")
        # Read the rest before closing: the worker still answers what it has read, and a read that
        # logs the full ID writes an access-log row, which the fixture's clean-up must not race.
        busy.settimeout(10)
        while received.count(b"HTTP/1.1 ") < PIPELINED and (chunk := busy.recv(1 << 20)):
            received += chunk
    assert answered_first < PIPELINED, "the other client waited for every pipelined request"


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
