"""The served API under test: ``python -m api.cli serve`` on a free port."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time

from api.server import default_workers
from bench.databases import ROOT, BenchDatabase
from bench.procfs import children, cpu_seconds, reset_peak_rss, status_kb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m api.cli serve`` (gunicorn, CASEWORK_SCHEDULER=off) on a free port."""

    def __init__(self, db: BenchDatabase, workers: int | None = None) -> None:
        """``workers``: None runs serve's own default (api/server.py ``default_workers``)."""
        self.db = db
        self.workers = workers or default_workers(db.url)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        env = self.db.env(CASEWORK_WORKERS=str(self.workers))
        self.log = open(self.db.workdir / "server.log", "w+", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,  # the access log: one line a request, as in production
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                status, _ = self.request("GET", "/healthz")
                if status == 200 and len(self.worker_pids()) >= self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.__exit__()
        self.log.seek(0)
        raise RuntimeError("server did not start:\n" + self.log.read()[-3000:])

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def worker_rss_mb(self) -> tuple[float, float]:
        """(largest current RSS, largest peak RSS VmHWM) over the gunicorn workers, in MiB."""
        pids = self.worker_pids()
        return (
            max((status_kb(p, "VmRSS") for p in pids), default=0) / 1024,
            max((status_kb(p, "VmHWM") for p in pids), default=0) / 1024,
        )

    def reset_peaks(self) -> None:
        for pid in self.worker_pids():
            reset_peak_rss(pid)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in [self.process.pid, *self.worker_pids()])

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            all_headers = {**({"Content-Type": "application/json"} if payload else {}), **(headers or {})}
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
