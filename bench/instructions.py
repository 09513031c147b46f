"""Instructions one transition costs its client: the API against the driver alone, counted by
valgrind's callgrind, which gives the same count for the same work however busy the machine is.

The served bench's figures (bench/transitions.py) move by a fifth between runs on a shared machine;
a change of a few per cent in the worker's CPU cannot be seen there. This bench counts instructions
instead. Seeds screened cases in Longchuan on PostgreSQL, then runs under callgrind:

  api     the WSGI app in-process (no server, no load generator), as the county coordinator:
          POST /api/v1/cases/{id}/events, confirm then exclude, with If-Match
  served  the same requests to `python -m api.cli serve` (one gevent worker), sent one at a time
          on one keep-alive connection by a client outside valgrind: what the worker process
          counts, gunicorn's parsing, access log and gevent's switches included
  raw     the same transactions through psycopg alone (bench/transitions.py ``RawMove``)

each twice, with a few cases and with ``--count`` more: the difference, divided by the transitions
it adds, is what one transition costs (start-up, imports and warm-up cancel out). The count is the
client's own instructions: PostgreSQL's work and the kernel's are not in it. served ÷ api is what
the server around the app costs.

    .venv/bin/python bench/instructions.py [--count 200]
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end (a stable sort) and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import databases, procfs, reporting, seeding, served_api
from bench.databases import ROOT
from bench.transitions import COUNTY, DISEASE, EVENTS, USERNAME, RawMove, request_bodies

WARM_UP = 5  # cases moved before the counted ones in every run
BASE = 20  # cases of the shorter run
MODES = ("api", "served", "raw")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="cases the longer run adds (default 200)")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"which to count, of {','.join(MODES)} (default all)"
    )
    parser.add_argument("--child", choices=("api", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cases", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.first, args.cases)
        return
    print(__doc__.split("\n\n")[0])
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing to count")
        return
    if databases.pg_version() is None:
        print(f"PostgreSQL at {databases.PG_ADMIN_URL} unreachable: nothing to count")
        return
    print(reporting.machine_info())
    modes = [m for m in MODES if m in args.modes.split(",")]
    if not modes:
        parser.error(f"--modes: name some of {','.join(MODES)}")
    runs = [(mode, cases) for mode in modes for cases in (BASE, BASE + args.count)]
    with databases.bench_database("postgresql") as db:
        needed = sum(WARM_UP + cases for _, cases in runs)
        token, user_id = seeding.screened_for_a_coordinator(db, COUNTY, DISEASE, USERNAME, needed)
        firsts, first = [], 1
        for _, cases in runs:
            firsts.append(first)
            first += WARM_UP + cases
        env = db.env(PYTHONHASHSEED="0", CASEWORK_BENCH_TOKEN=token, CASEWORK_BENCH_USER=str(user_id))
        done = reporting.step(f"callgrind: {len(runs)} runs, two at a time (a minute or two each)")
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = list(pool.map(lambda run: _counted(env, *run[0], run[1]), zip(runs, firsts, strict=True)))
        done()
    per = {}
    for mode in modes:
        short, long = (count for (m, _), count in zip(runs, counts, strict=True) if m == mode)
        per[mode] = (long - short) / (2 * args.count)  # two transitions a case
    print("\nclient instructions per transition (PostgreSQL)")
    labels = {"api": "API, WSGI app in-process", "served": "API, served (gunicorn worker)", "raw": "raw, psycopg alone"}
    for mode in modes:
        print(f"  {labels[mode]:<30} {per[mode]:>12,.0f}")
    for top, bottom in (("served", "api"), ("raw", "api"), ("raw", "served")):
        if top in per and bottom in per:
            print(f"  {top + ' ÷ ' + bottom:<30} {per[top] / per[bottom]:>12.2f}")


def _counted(env: dict[str, str], mode: str, cases: int, first: int) -> int:
    """Instructions callgrind counts for one child run (for ``served``, in the server's worker)."""
    if mode == "served":
        return _served_counted(env, cases, first)
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        mode,
        "--first",
        str(first),
        "--cases",
        str(cases),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or collected is None:
        raise RuntimeError(f"{mode} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return int(collected.group(1))


def _served_counted(env: dict[str, str], cases: int, first: int) -> int:
    """The server under callgrind (which follows gunicorn's fork of its worker, each process with
    its own count), sent the run's requests by this process; the worker's count once it has exited."""
    logs = Path(tempfile.mkdtemp(prefix="casework_callgrind_"))
    port = served_api.free_port()
    # One worker; no timeout kills it while valgrind slows its boot.
    env = {**env, "CASEWORK_WORKERS": "1", "CASEWORK_TIMEOUT": "3600"}
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        f"--log-file={logs}/%p.log",
        sys.executable,
        "-m",
        "api.cli",
        "serve",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = _connected(server, port)
        worker = procfs.children(server.pid)
        move = _http_move(conn, env["CASEWORK_BENCH_TOKEN"])
        _child_moves("served", move, first, cases)
        conn.close()
    finally:
        server.terminate()
        server.wait(timeout=600)
    try:
        (log,) = [logs / f"{pid}.log" for pid in worker]
        collected = re.search(r"Collected : (\d+)", log.read_text())
        if collected is None:
            raise RuntimeError(f"served run: no count in the worker's log:\n{log.read_text()[-3000:]}")
        return int(collected.group(1))
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def _connected(server: subprocess.Popen, port: int) -> http.client.HTTPConnection:
    """A keep-alive connection to the server once its worker answers /healthz (a minute or more
    under valgrind). The worker sees exactly one /healthz: refused connects never reach it."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and server.poll() is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return conn
        except OSError:
            pass
        conn.close()
        time.sleep(0.5)
    raise RuntimeError("the server under valgrind did not answer /healthz")


def _child(mode: str, first: int, cases: int) -> None:
    _child_moves(mode, _api_move() if mode == "api" else _raw_move(), first, cases)


def _child_moves(mode: str, move: Callable[[int, str, int], bool], first: int, cases: int) -> None:
    for case_id in range(first, first + WARM_UP + cases):
        for event, version in EVENTS:
            if not move(case_id, event, version):
                raise SystemExit(f"{mode}: case {case_id} refused {event}")


def _raw_move():
    import psycopg

    return RawMove(psycopg.connect(os.environ["DATABASE_URL"]), False, int(os.environ["CASEWORK_BENCH_USER"]))


def _http_move(conn: http.client.HTTPConnection, token: str) -> Callable[[int, str, int], bool]:
    """A transition as an HTTP request on ``conn``, the headers the served bench's clients send."""
    bodies = request_bodies()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def move(case_id: int, event: str, version: int) -> bool:
        conn.request("POST", f"/api/v1/cases/{case_id}/events", bodies[event], {**headers, "If-Match": f'"{version}"'})
        response = conn.getresponse()
        response.read()
        return response.status == 200

    return move


def _api_move() -> Callable[[int, str, int], bool]:
    """A transition as a WSGI call, with the environ a server would build for the request."""
    from api.app import create_app

    app = create_app()
    bodies = request_bodies()
    authorization = f"Bearer {os.environ['CASEWORK_BENCH_TOKEN']}"

    def move(case_id: int, event: str, version: int) -> bool:
        body = bodies[event]
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": f"/api/v1/cases/{case_id}/events",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "5000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:5000",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": authorization,
            "HTTP_IF_MATCH": f'"{version}"',
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        statuses: list[str] = []
        b"".join(app(environ, lambda status, _headers, _exc=None: statuses.append(status)))
        return statuses[0].startswith("200")

    return move


if __name__ == "__main__":
    main()
