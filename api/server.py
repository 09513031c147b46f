"""Running the API under gunicorn: several worker processes, each building its own app.

The workers are gevent workers: each connection is a greenlet that waits for its request without
holding anything, so clients that send half a request and stall (or trickle) cost a socket each,
not a worker. With sync or gthread workers a handful of such clients take every worker (measured:
50 stalled sockets, `/healthz` never answers; tests/gauntlet/test_stall.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from gunicorn.app.base import BaseApplication


class _Server(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Built in each worker after fork: database connections are never shared across processes.
        _cooperative_psycopg()
        from api.app import create_app

        return create_app()


def _cooperative_psycopg() -> None:
    """psycopg chooses how to wait for the server when it is first imported, and picks its C wait
    (which blocks the whole process) unless gevent has patched ``select`` by then. The master
    imported it before the worker was patched, so choose the wait psycopg would have chosen:
    ``wait_select`` calls the patched ``select.select`` and lets other greenlets run, so a query
    waiting on a row lock cannot freeze the greenlet that holds the lock."""
    from gevent import monkey

    if not monkey.is_module_patched("select"):  # not a gevent worker
        return
    import psycopg.waiting

    psycopg.waiting.wait = psycopg.waiting.wait_select


def run(host: str, port: int, workers: int) -> None:
    """gunicorn in front, and beside it exactly one scheduler process (not one per worker; not in
    gunicorn's master, where APScheduler misbehaves after fork). CASEWORK_SCHEDULER=off leaves it
    to a separate `casework scheduler` for multi-host deployments."""
    scheduler = None
    if os.environ.get("CASEWORK_SCHEDULER", "on").lower() not in ("off", "0", "false", "no"):
        scheduler = subprocess.Popen([sys.executable, "-m", "api.cli", "scheduler"])
    try:
        _serve(host, port, workers)
    finally:
        if scheduler is not None:
            scheduler.terminate()
            scheduler.wait(timeout=10)


def _serve(host: str, port: int, workers: int) -> None:
    _Server(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            # CASEWORK_WORKER_CLASS=gthread restores the threaded workers (for comparison only).
            "worker_class": os.environ.get("CASEWORK_WORKER_CLASS", "gevent"),
            # Connections (not requests in flight) per worker; a stalled client holds only one.
            "worker_connections": int(os.environ.get("CASEWORK_CONNECTIONS", "1000")),
            "timeout": int(os.environ.get("CASEWORK_TIMEOUT", "30")),
            "accesslog": "-",
            # The access log shows paths and status only: no query strings, which may carry names.
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
        }
    ).run()
