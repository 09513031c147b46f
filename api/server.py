"""Running the API under gunicorn: several worker processes, each building its own app with the
factory it is given (this module never imports the app factory: no import cycle with the CLI).

The workers are gevent workers: each connection is a greenlet that waits for its request without
holding anything, so clients that send half a request and stall (or trickle) cost a socket each,
not a worker. With sync or gthread workers a handful of such clients take every worker (measured:
50 stalled sockets, `/healthz` never answers; tests/gauntlet/test_stall.py)."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import gevent
from gevent.socket import wait_read, wait_readwrite, wait_write
from gunicorn import glogging, util
from gunicorn.app.base import BaseApplication
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from api.problems import MEDIA_TYPE, PROBLEM_TYPE_BASE
from workflows.policy_pack import packs

# gunicorn's own refusals, before the application sees the request (the rest of ParseException: 400).
_REFUSALS: tuple[tuple[type[Exception], int, str], ...] = (
    (http_errors.LimitRequestLine, 414, "URI Too Long"),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden"),
)


class ProblemWorker(GeventWorker):
    """gunicorn's gevent worker, with its own errors (a malformed request, a URI or headers too
    long) answered as problem+json like every other error, and logged without the URI, which may
    carry names. A worker killed for a timeout cannot answer at all: the connection just closes."""

    def handle_request(self, listener_name, req, sock, addr) -> None:
        super().handle_request(listener_name, req, sock, addr)
        # Let the other connections' greenlets run before reading this connection's next request.
        # A keep-alive client that sends its next request as soon as it has the answer finds the
        # greenlet still tidying up, so the read does not block and the greenlet never yields: one
        # busy connection then holds the worker while the others' requests wait (SQLite, one
        # worker, 8 clients: p50 1.8 ms but p99 157 ms; docs/performance.md).
        gevent.sleep(0)

    def handle_error(self, req, client, addr, exc) -> None:
        status, title = 500, "Internal Server Error"
        if isinstance(exc, http_errors.ParseException) and not isinstance(
            exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)
        ):
            status, title = next(((s, t) for kind, s, t in _REFUSALS if isinstance(exc, kind)), (400, "Bad Request"))
            self.log.warning("refused a malformed request: %s", type(exc).__name__)
        else:
            self.log.error("error handling a request: %s", type(exc).__name__)
        detail = f"{title.lower()}: {type(exc).__name__}" if status < 500 else "the server could not handle the request"
        body = json.dumps(
            {"type": PROBLEM_TYPE_BASE + str(status), "title": title, "status": status, "detail": detail}
        ).encode()
        head = (
            f"HTTP/1.1 {status} {title}\r\nConnection: close\r\nContent-Type: {MEDIA_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\n"
        )
        with suppress(Exception):
            util.write_nonblock(client, head.encode("latin-1") + body)
            # A lingering close: read what the client is still sending (a 9 kB URI, say) so closing
            # with unread data does not reset the connection before the client reads the answer.
            client.shutdown(socket.SHUT_WR)
            client.settimeout(0.5)
            drained = 0
            while drained < 1 << 16 and (chunk := client.recv(8192)):
                drained += len(chunk)


class AccessLog(glogging.Logger):
    """gunicorn's logger, with an access line of its own: client, method, path, status, bytes sent,
    milliseconds. The path only: a query string may carry names and ID numbers.

    gunicorn's access log builds, for every request, every atom its format language offers (each
    request and response header, each environ key, a timestamp) to fill a format that uses six of
    them: 340,000 instructions a transition, 6 % of the worker's (bench/instructions.py, served
    mode; docs/performance.md). This writes the same line from the six."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        sent = "-" if getattr(resp, "sent", None) is None else resp.sent
        ms = request_time.seconds * 1000 + request_time.microseconds // 1000
        try:
            self.access_log.info(
                '%s "%s %s" %s %s %dms',
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                status,
                sent,
                ms,
            )
        except Exception:
            self.exception("access log")


class _Server(BaseApplication):
    def __init__(self, options: dict[str, Any], factory: Callable[[], Any]) -> None:
        self.options = options
        self.factory = factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        # gunicorn 25.1+ opens a control socket in $HOME or $XDG_RUNTIME_DIR: one path for every
        # server the user runs, offering shutdown and reload to any process running as that user,
        # served by an asyncio thread in the master that every fork has to stop and restart (its
        # bugs: workers hung at boot, gunicorn #3509; threads leaked across forks, #3648). Nothing
        # here uses it, so it stays closed.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self):
        # Built in each worker after fork: database connections are never shared across processes.
        _cooperative_psycopg()
        app = self.factory()
        return FifoAdmission(app, concurrency(), app.config["MAX_CONTENT_LENGTH"])


def concurrency() -> int:
    """Requests one worker runs at once (CASEWORK_CONCURRENCY, default 4); the rest wait in turn.
    Two to four served PostgreSQL best here (docs/performance.md §1); four leaves room for a
    request that waits on a row lock or a slow query."""
    return max(1, int(os.environ.get("CASEWORK_CONCURRENCY", "4")))


class FifoAdmission:
    """At most ``limit`` requests of this worker inside the application at once; the others wait
    for a slot, first come first served.

    A gevent worker otherwise starts every request it has read: thirty-two at once share one core
    and a pool of connections, each advancing a round trip at a time, so every answer waits on all
    the others and the slowest wait longest (PostgreSQL, 32 clients: p99 120-145 ms at a mean of
    45). Queued in order behind a few running requests, each waits about as long as the next, and
    less time goes to switching (p99 50 ms, and a fifth more answers a second: docs/performance.md
    §1).

    A request's body is read before it queues: a client that trickles its body holds its own
    socket, never a slot (tests/gauntlet/test_stall.py). Uploads (multipart) and bodies of unknown
    or refused length go straight through, unqueued: they are read by the application as before.
    The slot is free as soon as the application has its answer; sending it, or streaming a ledger
    export, happens outside."""

    def __init__(self, app: Any, limit: int, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self.slots = _semaphore(limit)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self._read_body(environ):
            return self.app(environ, start_response)
        with self.slots:
            return self.app(environ, start_response)

    def _read_body(self, environ: dict[str, Any]) -> bool:
        """Read a small body now; False when the request must go through as it came."""
        if environ.get("HTTP_TRANSFER_ENCODING") or environ.get("CONTENT_TYPE", "").startswith("multipart/"):
            return False  # chunked (its length unknown until it has all come), or an upload
        declared = environ.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit() or int(declared) > self.max_body:
            return False  # the application refuses it (400, 413) without reading it
        if int(declared):
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(int(declared)))
        return True


def _semaphore(limit: int) -> Any:
    """gevent's semaphore in a gevent worker (it wakes waiters in the order they came), else a
    thread semaphore (gunicorn's gthread workers, kept for comparison, and tests)."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        from gevent.lock import BoundedSemaphore

        return BoundedSemaphore(limit)
    return threading.BoundedSemaphore(limit)


_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


def _stop_signals_reach_booting_workers(arbiter: Any, worker: Any) -> None:
    """gunicorn's post_fork hook, in the new worker. Until the worker installs its own handlers
    (after gevent's patching, well into its boot), it runs the master's: a SIGTERM is queued in the
    worker's copy of the master's signal queue, where nobody reads it, and the master then waits
    its 30-s graceful timeout before SIGKILL (gunicorn #1910). Measured here: `casework serve`
    stopped as soon as its first worker answered took 30 s, not 1. So until the worker's handlers
    take over, a stop signal ends the booting worker at once, including one that already came."""
    for stop in _STOP_SIGNALS:
        signal.signal(stop, signal.SIG_DFL)
    if _STOP_SIGNALS & set(_drain(arbiter.SIG_QUEUE)):
        os._exit(0)  # nothing of this worker's is open yet: no request, no connection


def _drain(signals: Any) -> list[int]:
    if isinstance(signals, list):  # gunicorn before 24
        drained, signals[:] = list(signals), []
        return drained
    drained = []
    with suppress(queue.Empty):
        while True:
            drained.append(signals.get_nowait())
    return drained


def _cooperative_psycopg() -> None:
    """psycopg chooses how to wait for the server when it is first imported, and picks its C wait
    (which blocks the whole process) unless gevent has patched ``select`` by then. The master
    imported it before the worker was patched, so give psycopg a wait that lets other greenlets
    run while a query waits (on the server, or on a row lock held by another greenlet)."""
    from gevent import monkey

    if not monkey.is_module_patched("select"):  # not a gevent worker
        return
    import psycopg.waiting

    psycopg.waiting.wait = _hub_wait(psycopg.waiting)


def _hub_wait(waiting: Any) -> Callable[..., Any]:
    """psycopg's wait protocol on gevent's own watchers: what ``wait_select`` does through the
    patched ``select.select``, without the select emulation's watcher set and timer on every round
    trip (measured: a quarter less worker CPU a transition; docs/performance.md). ``interval`` is for
    Ctrl-C in a blocking wait and means nothing to a greenlet; a wait with a timeout (psycopg uses
    one only for LISTEN's notifies, which nothing here uses) goes to ``wait_select``."""
    waits = {waiting.WAIT_R: (wait_read, waiting.READY_R), waiting.WAIT_W: (wait_write, waiting.READY_W)}
    either = (wait_readwrite, waiting.READY_RW)  # psycopg then tries both: reading, and flushing

    def wait(gen: Any, fileno: int, interval: float = 0.0, timeout: float | None = None) -> Any:
        if timeout is not None:
            return waiting.wait_select(gen, fileno, interval, timeout)
        try:
            state = next(gen)
            while True:
                block, ready = waits.get(state, either)
                block(fileno)
                state = gen.send(ready)
        except StopIteration as done:
            return done.value

    return wait


def default_workers(database_url: str) -> int:
    """Worker processes when CASEWORK_WORKERS does not say: one for SQLite, two otherwise.

    SQLite lets one transaction write at a time. Within one gevent worker a write transaction never
    yields (sqlite3 does no socket I/O), so its greenlets take turns without ever waiting on the
    lock; a second process can only wait, and SQLite's busy handler sleeps in the C library,
    stopping every greenlet of that process (measured in the access log at 8 clients: p99 8 ms
    with one worker, 23 ms and at most 272 ms with two; docs/performance.md). PostgreSQL locks
    rows, and two workers use both cores."""
    configured = os.environ.get("CASEWORK_WORKERS")
    if configured:
        return int(configured)
    return 1 if database_url.startswith("sqlite") else 2


def run(host: str, port: int, workers: int, factory: Callable[[], Any]) -> None:
    """gunicorn in front, and beside it exactly one scheduler process (not one per worker; not in
    gunicorn's master, where APScheduler misbehaves after fork). CASEWORK_SCHEDULER=off leaves it
    to a separate `casework scheduler` for multi-host deployments."""
    scheduler = None
    if os.environ.get("CASEWORK_SCHEDULER", "on").lower() not in ("off", "0", "false", "no"):
        scheduler = subprocess.Popen([sys.executable, "-m", "api.cli", "scheduler"])
    try:
        _serve(host, port, workers, factory)
    finally:
        if scheduler is not None:
            scheduler.terminate()
            scheduler.wait(timeout=10)


def _serve(host: str, port: int, workers: int, factory: Callable[[], Any]) -> None:
    # The policy packs are read here, in the master, once: every forked worker has them, instead of
    # each worker's first request reading and validating the YAML (0.2 s), and a broken pack stops
    # the start with its error instead of failing the requests that need it.
    packs()
    _Server(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            # CASEWORK_WORKER_CLASS=gthread restores the threaded workers (for comparison only).
            "worker_class": os.environ.get("CASEWORK_WORKER_CLASS", "api.server.ProblemWorker"),
            # Connections (not requests in flight) per worker; a stalled client holds only one.
            "worker_connections": int(os.environ.get("CASEWORK_CONNECTIONS", "1000")),
            "timeout": int(os.environ.get("CASEWORK_TIMEOUT", "30")),
            "post_fork": _stop_signals_reach_booting_workers,
            "accesslog": "-",
            "logger_class": AccessLog,
        },
        factory,
    ).run()
