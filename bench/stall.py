"""`/healthz` while stalled clients hold connections open, per gunicorn worker class.

    .venv/bin/python -m bench.stall sqlite:////tmp/hb/bench.db gthread gevent

The database must be migrated (`casework db upgrade`). The server runs with its own defaults
(worker count), started the way the gauntlet starts it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.gauntlet import clients as c
from tests.gauntlet.served import Server
from tests.gauntlet.test_stall import _stall


def main(url: str, classes: list[str]) -> None:
    for klass in classes:
        server = Server(
            url,
            Path(tempfile.mkdtemp()),
            env={"CASEWORK_WORKERS": None, "CASEWORK_WORKER_CLASS": klass},
        )
        server.start()
        try:
            for stalled in (0, 50):
                held = _stall(server.base, stalled)
                times = []
                for _ in range(50):
                    start = time.monotonic()
                    if c.call(server.base, "GET", "/healthz", timeout=5).status == 200:
                        times.append((time.monotonic() - start) * 1000)
                for sock in held:
                    sock.close()
                shown = f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms" if times else ""
                print(f"{klass:8} {stalled:2} stalled: {len(times)}/50 answered within 5 s {shown}")
        finally:
            server.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["gthread", "gevent"])
