"""Case lists, the referral queue and deep keyset pages through the served API, as cases grow.

Seeds SIZE open cases across the demo counties (a mix of open states, 1,000 of them overdue spread
over the whole id range, ~0.1 % referred), starts `python -m api.cli serve` (gunicorn,
CASEWORK_SCHEDULER=off) and sends each request below --repeat times, one after the other, over a
keep-alive HTTP connection (the real server, not the Flask test client). Prints p50/p99 per request,
its p50 as a multiple of the plain first page (the baseline, measured in the same run), and the API
workers' peak RSS (VmHWM) while it ran.

Deep pages: the client follows next_cursor from the first page down 60 pages (each page timed),
and starts from a cursor near the end of the id range (1 % from the bottom).

    .venv/bin/python bench/lists.py [--engine sqlite|postgresql|both] [SIZES ...] [--repeat 20]
        [--pages 60] [--workers N] [--explain]

Default size 10000 (make bench); the full run is `1000000`.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end (a stable sort) and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import databases, demo_region, logins, reporting, seeding, served_api

OVERDUE = 1000
LONGCHUAN, YUNNAN, DEHONG = "533124", "530000", "533100"
TOWNSHIP = "533124101"
HOSPITAL = "H533124-01"
CLINIC = "H533124101-01"  # a township health centre: holds no case in the seeded data
GROUP = "EG533100"
LOGINS = {
    "admin": ("admin", None),
    "supervisor": ("supervisor", YUNNAN),
    "coordinator": ("county_coordinator", LONGCHUAN),
    "doctor": ("village_doctor", TOWNSHIP),
    "hospital": ("hospital", HOSPITAL),
    "clinic": ("hospital", CLINIC),
    "expert": ("expert", GROUP),
}
BASELINE = "first page (admin)"


def cursor(before: int) -> str:
    """The API's cursor format (api/cases.py encode_cursor): the id to continue below."""
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode().rstrip("=")


@dataclass
class Request:
    label: str
    login: str | None
    path: str
    follow: int = 0  # follow next_cursor this many pages instead of repeating the same request


def requests(size: int, pages: int, one_case: int) -> list[Request]:
    near_end = cursor(max(2, size // 100))
    return [
        Request("healthz (HTTP floor)", None, "/healthz"),
        Request("one case by id (supervisor)", "supervisor", f"/api/v1/cases/{one_case}"),
        Request(BASELINE, "admin", "/api/v1/cases"),
        Request("state=confirmed (supervisor)", "supervisor", "/api/v1/cases?state=confirmed"),
        Request("region=county (supervisor)", "supervisor", f"/api/v1/cases?region={LONGCHUAN}"),
        Request("region=city (admin)", "admin", f"/api/v1/cases?region={DEHONG}"),
        Request("region=township (admin)", "admin", f"/api/v1/cases?region={TOWNSHIP}"),
        Request("overdue=true (admin)", "admin", "/api/v1/cases?overdue=true"),
        Request("overdue=true (coordinator)", "coordinator", "/api/v1/cases?overdue=true"),
        Request("first page (coordinator)", "coordinator", "/api/v1/cases"),
        Request("first page (village doctor)", "doctor", "/api/v1/cases"),
        Request("first page (county hospital)", "hospital", "/api/v1/cases"),
        Request("first page (township clinic, holds none)", "clinic", "/api/v1/cases"),
        Request("first page (expert group)", "expert", "/api/v1/cases"),
        Request("referral queue (expert)", "expert", "/api/v1/queues/referrals"),
        Request("near-end cursor (admin)", "admin", f"/api/v1/cases?cursor={near_end}"),
        Request("near-end cursor, state=screened (admin)", "admin", f"/api/v1/cases?state=screened&cursor={near_end}"),
        Request("near-end cursor, overdue=true (admin)", "admin", f"/api/v1/cases?overdue=true&cursor={near_end}"),
        Request(f"{pages} pages via next_cursor (admin)", "admin", "/api/v1/cases", follow=pages),
        Request(
            f"{pages} pages via next_cursor, county+state (supervisor)",
            "supervisor",
            f"/api/v1/cases?region={LONGCHUAN}&state=follow_up",
            follow=pages,
        ),
    ]


class Client:
    def __init__(self, port: int, token: str | None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.headers = logins.bearer(token) if token else {}

    def get(self, path: str) -> tuple[float, int, bytes]:
        for attempt in (1, 2):
            try:
                started = time.perf_counter()
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
                return time.perf_counter() - started, response.status, body
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError


def _measure(client: Client, request: Request, repeat: int) -> tuple[list[float], str]:
    """Latencies and a note (items per page, pages reached)."""
    if request.follow:
        latencies, path, items = [], request.path, 0
        for _ in range(request.follow):
            seconds, status, body = client.get(path)
            assert status == 200, (request.label, status, body[:300])
            page = json.loads(body)
            latencies.append(seconds)
            items += len(page["items"])
            if not page["next_cursor"]:
                break
            sep = "&" if "?" in request.path else "?"
            path = f"{request.path}{sep}cursor={page['next_cursor']}"
        return latencies, f"{len(latencies)} pages, {items:,} items; last page {reporting.ms(latencies[-1])} ms"
    for _ in range(2):  # warm-up: plans, caches, lazy imports
        client.get(request.path)
    latencies, note = [], ""
    for _ in range(repeat):
        seconds, status, body = client.get(request.path)
        assert status == 200, (request.label, status, body[:300])
        latencies.append(seconds)
    if request.path.startswith("/api/v1/"):
        data = json.loads(body)
        items = data["items"] if isinstance(data, dict) and "items" in data else data
        note = f"{len(items)} items" if isinstance(items, list) else ""
    return latencies, note


def bench_size(db: databases.BenchDatabase, tokens: dict[str, str], size: int, args) -> list[dict]:
    one = databases.query(db, "SELECT max(id) FROM cases WHERE county_code = %s", (LONGCHUAN,))[0][0]
    rows = []
    with served_api.Server(db, args.workers) as server:
        print(
            f"  server: {server.workers} gevent worker(s);"
            f" one client, {args.repeat} requests each"
        )
        clients = {name: Client(server.port, token) for name, token in tokens.items()}
        clients[None] = Client(server.port, None)
        for request in requests(size, args.pages, one):
            server.reset_peaks()
            latencies, note = _measure(clients[request.login], request, args.repeat)
            row = {
                "label": request.label,
                "p50": reporting.percentile(latencies, 50),
                "p99": reporting.percentile(latencies, 99),
                "n": len(latencies),
                "rss": server.worker_rss_mb()[1],
                "note": note,
            }
            rows.append(row)
        base = next(r["p50"] for r in rows if r["label"] == BASELINE)
        for row in rows:
            row["ratio"] = row["p50"] / base
            print(
                f"  {row['label']:<52} p50 {reporting.ms(row['p50']):>8}  p99 {reporting.ms(row['p99']):>8} ms  "
                f"x{row['ratio']:<6.2f} RSS {row['rss']:4.0f} MiB  {row['note']}"
            )
    if args.explain:
        print("  plans (the same service calls, in this process):")
        for request in requests(size, args.pages, one):
            if request.login and "/cases/" not in request.path:
                for line in explain(db, request):
                    print(f"    {request.label:<52} {line}")
    return rows


def explain(db: databases.BenchDatabase, request: Request) -> list[str]:
    """The plan of the case query behind ``request``: the same service call the view makes
    (casework.services.queries), run in this process with its SQL captured and EXPLAINed."""
    from urllib.parse import parse_qs, urlsplit

    from sqlalchemy import create_engine, event, select
    from sqlalchemy.orm import Session

    from api.cases import decode_cursor
    from casework.db import configure_engine, utcnow
    from casework.models import User
    from casework.services.queries import CaseFilters, list_cases, referral_queue
    from casework.services.users import actor_for

    engine = create_engine(db.sqlalchemy_url)
    configure_engine(engine)
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        captured.append((statement, parameters))

    url = urlsplit(request.path)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    lines = []
    try:
        with Session(engine) as session:
            actor = actor_for(session.scalar(select(User).where(User.username == f"bench.{request.login}")))
            event.listen(engine, "before_cursor_execute", capture)
            if url.path.endswith("/referrals"):
                referral_queue(session, actor)
            else:
                filters = CaseFilters(
                    query.get("state"),
                    query.get("region"),
                    query.get("hospital"),
                    query.get("disease"),
                    {"true": True, "false": False}.get(query.get("overdue", "")),
                )
                before = decode_cursor(query["cursor"]) if "cursor" in query else None
                list_cases(session, actor, filters, 50, before, utcnow())
            event.remove(engine, "before_cursor_execute", capture)
            conn = session.connection()
            for sql, params in captured:
                if "FROM cases" not in sql:
                    continue
                # The eager loads of persons, hospitals and groups (by primary key) are left out.
                if db.engine == "sqlite":
                    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
                    lines.append(" | ".join(r[-1] for r in rows if "LEFT-JOIN" not in r[-1]))
                else:
                    rows = conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + sql, params).fetchall()
                    nodes = ("Scan", "Join", "Loop", "Sort", "Limit")
                    eager = ("persons_1", "hospitals_1", "org_units_1", "org_units_2", "expert_groups_1")
                    lines.append(
                        " | ".join(
                            r[0].strip().removeprefix("->  ")
                            for r in rows
                            if any(k in r[0] for k in nodes) and ":" not in r[0] and not any(e in r[0] for e in eager)
                        )
                    )
    finally:
        engine.dispose()
    return lines


def bench_engine(engine: str, args) -> list[tuple[int, list[dict]]]:
    sizes = sorted(args.sizes)
    step_ = max(1, sizes[-1] // OVERDUE)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    out = []
    with databases.bench_database(engine) as db:
        tokens = {name: logins.add_login(db, f"bench.{name}", role, unit) for name, (role, unit) in LOGINS.items()}
        plan = seeding.SeedPlan(demo_region.counties(db, now.date()), now, overdue=lambda i: i % step_ == 0)
        seeded = 0
        for size in sizes:
            done = reporting.step(
                f"{engine}: seed cases {seeded + 1:,}–{size:,} (open, mixed states, overdue every {step_:,})"
            )
            seeding.seed(db, plan, seeded + 1, size + 1)
            databases.analyze(db)
            seeded = size
            done()
            print(f"  {size:,} cases")
            out.append((size, bench_size(db, tokens, size, args)))
    return out


def main() -> None:
    p = reporting.parser(__doc__)
    p.add_argument("sizes", nargs="*", type=int, default=[10_000], help="cases (default 10000)")
    p.add_argument("--repeat", type=int, default=20, help="timed requests per list (default 20)")
    p.add_argument("--pages", type=int, default=60, help="pages to follow via next_cursor (default 60)")
    p.add_argument("--workers", type=int, help="API worker processes (default: serve's, 1 on SQLite, 2 on PostgreSQL)")
    p.add_argument("--explain", action="store_true", help="print the query plan behind each list")
    args = p.parse_args()
    print(__doc__.split("\n\n")[0])
    print(reporting.machine_info())
    results = [(engine, bench_engine(engine, args)) for engine in reporting.engines(args.engine)]
    print(f"\nsummary: p99 in ms at the largest size (x = p50 ÷ p50 of '{BASELINE}')")
    for engine, sized in results:
        size, rows = sized[-1]
        worst = max(rows, key=lambda r: r["p99"])
        rss = max(r["rss"] for r in rows)
        print(
            f"  {engine:<11} {size:,} cases: worst p99 {reporting.ms(worst['p99'])} ms"
            f" ({worst['label']}, x{worst['ratio']:.1f}); "
            f"API worker peak RSS {rss:.0f} MiB"
        )


if __name__ == "__main__":
    main()
