"""A worker runs a few requests at once and queues the rest in the order they came
(api/server.py ``FifoAdmission``); a body still on the wire holds no place in that queue."""

from __future__ import annotations

import io
import threading
import time

from api.server import FifoAdmission

LATE_BODY = b'{"late": "20 bytes"}'


class BlockingApp:
    """A WSGI application whose requests stay inside until released, recording who entered."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.inside = 0
        self.most_inside = 0
        self.release = threading.Semaphore(0)
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            self.entered.append(environ["PATH_INFO"])
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        body = environ["wsgi.input"].read()
        self.release.acquire()
        with self.lock:
            self.inside -= 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


def environ(path: str, body: bytes = b"", content_type: str = "application/json", stream=None) -> dict:
    return {
        "PATH_INFO": path,
        "REQUEST_METHOD": "POST" if body or stream else "GET",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)) if stream is None else str(len(LATE_BODY)),
        "wsgi.input": stream or io.BytesIO(body),
    }


def call(admission: FifoAdmission, env: dict, answers: list) -> threading.Thread:
    def run() -> None:
        answers.append(b"".join(admission(env, lambda *_: None)))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_requests_beyond_the_limit_wait_and_enter_in_the_order_they_came():
    app = BlockingApp()
    admission = FifoAdmission(app, limit=2, max_body=1024)
    answers: list[bytes] = []
    threads = []
    for n in range(6):
        threads.append(call(admission, environ(f"/r{n}", b'{"n": %d}' % n), answers))
        if n < 2:
            wait_until(lambda n=n: len(app.entered) == n + 1)
        else:
            time.sleep(0.05)  # queued: give each its turn in the queue before the next arrives
    assert app.entered == ["/r0", "/r1"]  # the other four wait
    for _ in range(6):
        app.release.release()
        time.sleep(0.05)
    for thread in threads:
        thread.join(5)
    assert app.entered == [f"/r{n}" for n in range(6)]
    assert app.most_inside == 2
    assert sorted(answers) == sorted(b'{"n": %d}' % n for n in range(6))  # each body reached the app


class TricklingBody(io.RawIOBase):
    """A body whose bytes have not arrived yet: read() blocks until ``arrive`` is set."""

    def __init__(self) -> None:
        self.arrive = threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.arrive.wait(10)
        return LATE_BODY


def test_a_body_still_on_the_wire_holds_no_place():
    app = BlockingApp()
    admission = FifoAdmission(app, limit=1, max_body=1024)
    answers: list[bytes] = []
    body = TricklingBody()
    slow = call(admission, environ("/slow", stream=body), answers)
    fast = call(admission, environ("/fast", b"{}"), answers)
    wait_until(lambda: app.entered == ["/fast"])  # the only slot went to the request that had its body
    app.release.release()
    fast.join(5)
    body.arrive.set()
    wait_until(lambda: app.entered == ["/fast", "/slow"])
    app.release.release()
    slow.join(5)
    assert answers == [b"{}", LATE_BODY]


def test_uploads_go_through_unqueued_and_read_by_the_application():
    app = BlockingApp()
    admission = FifoAdmission(app, limit=1, max_body=1024)
    answers: list[bytes] = []
    first = call(admission, environ("/api/v1/cases", b"{}"), answers)
    wait_until(lambda: app.entered == ["/api/v1/cases"])
    upload = call(admission, environ("/api/v1/imports/persons", b"--x\r\n", "multipart/form-data; boundary=x"), answers)
    wait_until(lambda: app.entered == ["/api/v1/cases", "/api/v1/imports/persons"])  # beside the full slot
    app.release.release()
    app.release.release()
    first.join(5)
    upload.join(5)
    assert app.most_inside == 2
