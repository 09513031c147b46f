"""What the client processes of the gauntlet run. Standard library only: each client is a separate
process (multiprocessing, spawn), and imports nothing but this module.

Every loop here is bounded in requests and in time, and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

ICD = "C15.9"  # oesophageal cancer, the disease of every gauntlet case


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (refused, reset, timed out)
    content_type: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: str = ""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem_type(self) -> str:
        try:
            return self.json().get("type", "")
        except (ValueError, AttributeError):
            return ""


def _address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    assert parts.hostname in ("127.0.0.1", "localhost"), "the gauntlet talks to this machine only"
    return parts.hostname, parts.port or 80


def call(
    base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 60
) -> Answer:
    host, port = _address(base)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    all_headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        payload = response.read()
        return Answer(
            response.status,
            response.getheader("Content-Type", ""),
            {k.lower(): v for k, v in response.getheaders()},
            payload.decode("utf-8", "replace"),
        )
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, body=repr(exc))
    finally:
        connection.close()


def drop(base: str, path: str, body: Any, headers: dict[str, str], partial: bool = False) -> None:
    """Send a POST and hang up without reading the answer.

    ``partial``: send the headers and half the body, then reset the connection (a client that
    died mid-upload). Otherwise the whole request goes out and the socket is closed normally, so
    the server reads it, acts on it, and writes its answer to nobody.
    """
    host, port = _address(base)
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head += [f"Content-Length: {len(data)}", "Connection: close", "", ""]
    request = "\r\n".join(head).encode() + (data[: len(data) // 2] if partial else data)
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(request)
            if partial:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    except OSError:
        pass


def _auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def event_body(event: str, hospital: str, marker: str = "") -> dict[str, Any]:
    """A valid body for each event the coordinator and the assigned hospital fire in the gauntlet."""
    data: dict[str, Any] = {}
    reason = None
    if event == "confirm":
        data = {"diagnosis_code": ICD, "diagnosed_by": hospital, "diagnosed_at": _ago(3600)}
    elif event == "assign":
        data = {"hospital_id": hospital, "plan": f"plan {marker}"}
    elif event == "admit":
        data = {"admitted_at": _ago(1)}
    elif event == "discharge":
        data = {"discharged_at": _ago(1), "outcome": "improved"}
    else:
        reason = f"{event} {marker}".strip()
    body: dict[str, Any] = {"event": event, "data": data}
    if reason:
        body["reason"] = reason
    return body


# --- 1. races: every process fires at the same version, released together ---------------------


def race(barrier, results, base: str, case_id: int, token: str, rounds: list[tuple[str, dict[str, Any]]], index: int):
    """One racer: for each round, wait for all the others, then fire ``body`` with ``If-Match: etag``."""
    answers = []
    for etag, body in rounds:
        barrier.wait(timeout=120)
        answer = call(base, "POST", f"/api/v1/cases/{case_id}/events", body, _auth(token, **{"If-Match": etag}))
        answers.append(answer)
    results.put((index, answers))


# --- 2. retries: Idempotency-Key, dropped connections, retry until a final answer --------------


def storm(
    barrier,
    results,
    base: str,
    path: str,
    token: str,
    body: dict[str, Any],
    key: str,
    if_match: str | None,
    drops: tuple[str, ...],
    index: int,
):
    """Drop the request (``drops``: "full" or "partial" each), then retry it with the same key until
    a final answer, and twice more: a client that never saw its first answer."""
    headers = _auth(token, **{"Idempotency-Key": key})
    if if_match:
        headers["If-Match"] = if_match
    barrier.wait(timeout=120)
    for kind in drops:
        drop(base, path, body, headers, partial=kind == "partial")
    finals: list[Answer] = []
    waits: list[Answer] = []
    deadline = time.monotonic() + 60
    for _ in range(300):
        if len(finals) == 3 or time.monotonic() > deadline:
            break
        answer = call(base, "POST", path, body, headers)
        if answer.status == 409 and answer.problem_type.endswith("/idempotency-key-in-flight"):
            waits.append(answer)
            time.sleep(0.1)  # Retry-After says 1 s; this client is impatient on purpose
            continue
        if answer.status in (0, 503):
            waits.append(answer)
            time.sleep(0.1)
            continue
        finals.append(answer)
    results.put((index, key, finals, waits))


# --- 3 and 4. load: several clients walking their cases round the workflow ---------------------

# state → (event, who fires it): a cycle the coordinator and the assigned hospital can run forever.
NEXT = {
    "screened": ("confirm", "coordinator"),
    "confirmed": ("assign", "coordinator"),
    "assigned": ("admit", "hospital"),
    "in_treatment": ("discharge", "hospital"),
    "treated": ("close", "coordinator"),
    "closed": ("reopen", "coordinator"),
}


@dataclass(frozen=True)
class Sent:
    case_id: int
    method: str
    event: str | None
    answer: Answer
    at: float  # time.time() when the answer came
    key: str | None = None  # the Idempotency-Key sent, if any


def load(
    stop,
    progress,
    results,
    base: str,
    case_ids: list[int],
    tokens: dict[str, str],
    hospital: str,
    index: int,
    retry_with_key: bool = False,
) -> None:
    """Walk each case round NEXT until told to stop (or 2,000 requests, or 120 s): read the case,
    fire the next event with its ETag. Records every answer, and counts the 200s in ``progress``.

    ``retry_with_key``: every POST carries an Idempotency-Key, and a POST answered 503, 409 "still
    being processed" or nothing at all is sent again under the same key until it gets another
    answer (for at most 20 s). The cases are this client's alone, so a 412 then means its own
    request was applied after all."""
    log: list[Sent] = []
    deadline = time.monotonic() + 120
    sequence = 0
    while not stop.is_set() and len(log) < 2000 and time.monotonic() < deadline:
        for case_id in case_ids:
            path = f"/api/v1/cases/{case_id}"
            got = call(base, "GET", path, headers=_auth(tokens["coordinator"]), timeout=30)
            log.append(Sent(case_id, "GET", None, got, time.time()))
            if got.status != 200:
                time.sleep(0.05)
                continue
            state = got.json()["state"]
            if state not in NEXT:
                continue
            event, who = NEXT[state]
            body = event_body(event, hospital, marker=f"{index}")
            headers = _auth(tokens[who], **{"If-Match": got.headers["etag"]})
            if retry_with_key:
                sequence += 1
                headers["Idempotency-Key"] = f"load-{index}-{case_id}-{sequence}-{time.time_ns()}"
            give_up = time.monotonic() + 20
            while True:
                fired = call(base, "POST", path + "/events", body, headers, timeout=30)
                log.append(Sent(case_id, "POST", event, fired, time.time(), headers.get("Idempotency-Key")))
                if fired.status == 200:
                    with progress.get_lock():
                        progress.value += 1
                in_flight = fired.status == 409 and fired.problem_type.endswith("/idempotency-key-in-flight")
                if fired.status not in (0, 503) and not in_flight:
                    break
                time.sleep(0.1)
                if not retry_with_key or time.monotonic() > give_up:
                    break
    results.put((index, log))
