"""The real server for the gauntlet: `python -m api.cli serve` (gunicorn, several workers) in a
process group of its own, so a test can kill -9 the whole group and start it again on the same port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPLICATION_NAME = "casework-gauntlet"  # PostgreSQL sessions of the served app carry this name
WORKERS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_url(db_url: str) -> str:
    """The database URL the server gets: on PostgreSQL its sessions are named, so a test can find them."""
    if db_url.startswith("postgresql"):
        return f"{db_url}?application_name={APPLICATION_NAME}"
    return db_url


class Server:
    def __init__(
        self, db_url: str, log_dir: Path, env: dict[str, str | None] | None = None, workers: int = WORKERS
    ) -> None:
        """``env`` overrides the gauntlet's settings; a ``None`` value leaves the server's default."""
        self.db_url = db_url
        self.env = env or {}
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 45) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": served_url(self.db_url),
            "CASEWORK_WORKERS": str(self.workers),
            "CASEWORK_SCHEDULER": "off",
            **{k: v for k, v in self.env.items() if v is not None},
        }
        for name in [k for k, v in self.env.items() if v is None]:
            env.pop(name, None)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the master and every worker
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.kill9()
        raise RuntimeError("server did not become ready:\n" + self.log_tail())

    def kill9(self) -> None:
        """SIGKILL to the whole process group: no worker finishes its request, nothing is flushed."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
        self.process = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
