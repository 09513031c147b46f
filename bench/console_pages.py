"""Server time of every console page, as cases grow, against the JSON API's case list in the same run.

Seeds SIZE open cases across the demo counties (as bench/lists.py: a mix of open states, 1,000
overdue spread over the id range), adds one case with a real history through the services and
runs one overdue scan, then renders each page --repeat times in-process with the Flask test client
(server time: routing, services, SQL, templates; no network, no browser). Prints p50/p95 per page
and its p50 as a multiple of the baseline, GET /api/v1/cases for the same coordinator.

    .venv/bin/python bench/console_pages.py [--engine sqlite|postgresql|both] [SIZES ...] [--repeat 30]

Default: PostgreSQL, 10000 cases; the full run is `1000000`.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

# As in bench/lists.py: keep bench/transitions.py from shadowing the transitions library.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.databases import analyze, bench_database
from bench.demo_region import counties
from bench.logins import add_login
from bench.reporting import engines, machine_info, ms, parser, percentile, step
from bench.seeding import SeedPlan, seed

OVERDUE = 1000
LONGCHUAN, YUNNAN, GROUP, HOSPITAL = "533124", "530000", "EG533100", "H533124-01"
LOGINS = {
    "coordinator": ("county_coordinator", LONGCHUAN),
    "hospital": ("hospital", HOSPITAL),
    "expert": ("expert", GROUP),
    "supervisor": ("supervisor", YUNNAN),
}
BASELINE = "API GET /api/v1/cases (coordinator)"


def pages(case_id: int) -> list[tuple[str, str, str]]:
    """(label, login, path): every page a user opens in a day's work."""
    return [
        (BASELINE, "coordinator", "/api/v1/cases"),
        ("home (coordinator)", "coordinator", "/"),
        ("home (hospital)", "hospital", "/"),
        ("home (expert group)", "expert", "/"),
        ("home (supervisor)", "supervisor", "/"),
        ("case list (coordinator)", "coordinator", "/cases"),
        ("case list overdue (coordinator)", "coordinator", "/cases?overdue=1"),
        ("case list state=screened (supervisor)", "supervisor", "/cases?state=screened"),
        ("case list hospital (hospital)", "hospital", f"/cases?hospital={HOSPITAL}"),
        ("case page with history (coordinator)", "coordinator", f"/cases/{case_id}"),
        ("alerts (coordinator)", "coordinator", "/alerts"),
        ("stats (coordinator)", "coordinator", "/stats"),
        ("stats (supervisor)", "supervisor", "/stats"),
        ("register form (coordinator)", "coordinator", "/register"),
        ("state diagram", "coordinator", "/diagram"),
    ]


def walked_case(app, tokens: dict[str, str], village: str) -> int:
    """One case screened, confirmed, assigned and admitted through the services: a page with history."""
    from api.extensions import db
    from casework.actor import Actor
    from casework.id_number import make_id_number
    from casework.services.alerts import scan
    from casework.services.auth import authenticate
    from casework.services.cases import fire, screen
    from casework.services.persons import register_person

    with app.app_context():
        session = db.session()
        coordinator = authenticate(session, tokens["coordinator"])
        hospital = authenticate(session, tokens["hospital"])
        person = register_person(
            session,
            Actor.system(),
            id_number=make_id_number(LONGCHUAN, date(1931, 2, 3), 997),  # a birth date the seed never uses
            name="岩温",
            village_code=village,
            category="poor_not_exited",
            category_since=date(2016, 1, 1),
        )
        start = datetime.now(UTC) - timedelta(days=5)
        result = screen(
            session,
            coordinator,
            person_id=person["id"],
            disease_code="esophageal_cancer",
            source="health_check",
            screened_at=start,
        )
        case_id = result["id"]
        steps = [
            (coordinator, "confirm", {"diagnosis_code": "C15.9", "diagnosed_by": HOSPITAL,
                                      "diagnosed_at": (start + timedelta(days=1)).isoformat()}),
            (coordinator, "assign", {"hospital_id": HOSPITAL, "plan": "手术治疗"}),
            (hospital, "admit", {"admitted_at": (start + timedelta(days=3)).isoformat()}),
        ]  # fmt: skip
        for version, (actor, event, data) in enumerate(steps, start=1):
            fire(session, case_id, event, actor, data, version)
        scan(session)
        return case_id


def bench_size(app, tokens: dict[str, str], case_id: int, repeat: int) -> list[dict]:
    clients = {}
    for name, token in tokens.items():
        client = app.test_client()
        with client.session_transaction() as session:
            session["token"] = token  # what the login form stores
        clients[name] = client
    rows = []
    for label, login, path in pages(case_id):
        client = clients[login]
        headers = {"Authorization": f"Bearer {tokens[login]}"} if path.startswith("/api/") else {}
        times = []
        for i in range(repeat + 2):
            started = time.perf_counter()
            answer = client.get(path, headers=headers)
            elapsed = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(f"{label}: {answer.status_code} {answer.text[:300]}")
            if i >= 2:  # two warm-ups: template compilation, first connections
                times.append(elapsed)
        rows.append({"label": label, "p50": percentile(times, 50), "p95": percentile(times, 95)})
    base = rows[0]["p50"]
    for row in rows:
        row["ratio"] = row["p50"] / base
        print(f"  {row['label']:<42} p50 {ms(row['p50']):>7}  p95 {ms(row['p95']):>7} ms  x{row['ratio']:.2f}")
    return rows


def bench_engine(engine: str, sizes: list[int], repeat: int) -> list[tuple[int, list[dict]]]:
    from api.app import create_app

    step_ = max(1, sizes[-1] // OVERDUE)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    out = []
    with bench_database(engine) as db:
        tokens = {name: add_login(db, f"bench.{name}", role, unit) for name, (role, unit) in LOGINS.items()}
        plan = SeedPlan(counties(db, now.date()), now, overdue=lambda i: i % step_ == 0)
        seeded = 0
        case_id = None
        app = create_app({"SQLALCHEMY_DATABASE_URI": db.sqlalchemy_url, "SECRET_KEY": "bench"})
        for size in sizes:
            done = step(f"{engine}: seed cases {seeded + 1:,}–{size:,}")
            seed(db, plan, seeded + 1, size + 1)
            analyze(db)
            seeded = size
            done()
            if case_id is None:  # walked once; its person and case take the next ids
                village = next(county.villages[0] for county in plan.counties if county.code == LONGCHUAN)
                case_id = walked_case(app, tokens, village)
                seeded = size + 1
            print(f"  {size:,} seeded cases (+1 with history), {repeat} requests per page after 2 warm-ups")
            out.append((size, bench_size(app, tokens, case_id, repeat)))
        with app.app_context():
            from api.extensions import db as flask_db

            flask_db.engine.dispose()  # before the database is dropped
    return out


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(engine="postgresql")
    p.add_argument("sizes", nargs="*", type=int, default=[10_000], help="cases (default 10000)")
    p.add_argument("--repeat", type=int, default=30, help="timed requests per page (default 30)")
    args = p.parse_args()
    print(__doc__.split("\n\n")[0])
    print(machine_info())
    results = [(engine, bench_engine(engine, sorted(args.sizes), args.repeat)) for engine in engines(args.engine)]
    print("\nsummary at the largest size: the slowest page by p95")
    for engine, sized in results:
        size, rows = sized[-1]
        worst = max(rows[1:], key=lambda r: r["p95"])
        print(f"  {engine:<11} {size:,} cases: {worst['label']} p95 {ms(worst['p95'])} ms (x{worst['ratio']:.1f})")


if __name__ == "__main__":
    main()
