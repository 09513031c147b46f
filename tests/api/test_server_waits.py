"""In a served worker, a query waiting on PostgreSQL lets the worker's other requests run
(api/server.py ``_hub_wait``): a request waiting on a row lock must not freeze the request that
holds it, nor the ones that need nothing from the database.

Each check runs in a process of its own, patched by gevent as a worker is, on real connections."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]

# Two greenlets on two connections, as two requests of one worker: the first holds a lock for
# 0.3 s of gevent sleep, the second asks for it meanwhile and waits on the server; a third counts
# ticks of 10 ms while a query sleeps 0.3 s on the server.
WORKER = textwrap.dedent(
    """
    import sys
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import psycopg

    from api.server import _cooperative_psycopg

    _cooperative_psycopg()
    url = sys.argv[1]
    said = []

    def holder():
        with psycopg.connect(url) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(4242)")
            said.append("holder has the lock")
            gevent.sleep(0.3)
            said.append("holder commits")

    def waiter():
        with psycopg.connect(url) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(4242)")
            said.append("waiter has the lock")

    def ticker(ticks):
        while True:
            gevent.sleep(0.01)
            ticks.append(1)

    first = gevent.spawn(holder)
    gevent.sleep(0.1)
    second = gevent.spawn(waiter)
    gevent.joinall([first, second], timeout=10, raise_error=True)
    print("; ".join(said))

    ticks = []
    counting = gevent.spawn(ticker, ticks)
    with psycopg.connect(url) as conn:
        value = conn.execute("SELECT 7 FROM pg_sleep(0.3)").fetchone()[0]
    counting.kill()
    print(f"answer {value}, ticks {len(ticks)}")
    """
)


def test_a_query_waiting_on_the_server_lets_the_other_requests_run(db_url, engine_name):
    if engine_name != "postgresql":
        pytest.skip("sqlite3 does no socket I/O: a SQLite query never waits on a server")
    url = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run([sys.executable, "-c", WORKER, url], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    order, timing = done.stdout.strip().splitlines()
    # With a wait that blocked the process, the waiter would hold the only thread while the holder
    # slept: the lock would never be released, and the run would hang until the timeout above.
    assert order == "holder has the lock; holder commits; waiter has the lock"
    answer, ticks = timing.split(", ")
    assert answer == "answer 7"
    assert int(ticks.split()[1]) >= 10, timing  # ~30 ticks of 10 ms in 0.3 s; none when blocked
