"""Running the API under gunicorn: several worker processes, each building its own app with the
factory it is given (this module imports nothing of the API)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication


class _Server(BaseApplication):
    def __init__(self, options: dict[str, Any], factory: Callable[[], Any]) -> None:
        self.options = options
        self.factory = factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Built in each worker after fork: database connections are never shared across processes.
        return self.factory()


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
    _Server(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": int(os.environ.get("CASEWORK_THREADS", _default_threads())),
            "timeout": int(os.environ.get("CASEWORK_TIMEOUT", "30")),
            "accesslog": "-",
            # The access log shows paths and status only: no query strings, which may carry names.
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
        },
        factory,
    ).run()


def _default_threads() -> str:
    """SQLite has one writer at a time: extra threads per worker only queue on its lock (measured in
    docs/performance.md: p99 at 8 clients 894 ms with 4 threads, 91 ms with 1). PostgreSQL gets 4."""
    url = os.environ.get("DATABASE_URL", "")
    return "4" if url.startswith(("postgres://", "postgresql")) else "1"
