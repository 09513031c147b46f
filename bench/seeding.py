"""Bulk seeding of persons, cases, holders and screen events: COPY on PostgreSQL, executemany in
big transactions on SQLite, explicit ids, sequences moved past them.

The column lists come from the models' tables, so a column added to a model is either seeded here
(the row builder names it) or, when it may be NULL, left NULL; a new NOT NULL column nobody seeds
fails loudly at the first row instead of leaving the bench a step behind the schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg
from sqlalchemy import Table

from bench.databases import BenchDatabase, sqlite_ts
from bench.demo_region import County
from casework.id_number import make_id_number
from casework.models import Case, CaseEvent, CaseHolder, Person

# Open states in proportions a running programme might show (per 1,000 cases); referrals are few
# because they must be answered within days.
STATE_MIX = (
    ("screened", 300),
    ("confirmed", 150),
    ("assigned", 150),
    ("in_treatment", 100),
    ("treated", 49),
    ("follow_up", 250),
    ("referred", 1),
)
_HOLDING = {"assigned", "in_treatment", "treated", "follow_up", "referred"}


class Columns:
    """A table's columns in model order, and a row builder that refuses to forget one."""

    def __init__(self, table: Table, skip: Sequence[str] = ()) -> None:
        self.table = table.name
        self.names = tuple(c.name for c in table.columns if c.name not in skip)
        self._nullable = {c.name for c in table.columns if c.nullable}

    def row(self, values: Mapping[str, object]) -> tuple:
        out = []
        for name in self.names:
            if name in values:
                out.append(values[name])
            elif name in self._nullable:
                out.append(None)
            else:
                raise KeyError(f"bench/seeding.py does not seed {self.table}.{name} (NOT NULL)")
        return tuple(out)


PERSONS = Columns(Person.__table__)
CASES = Columns(Case.__table__)
HOLDERS = Columns(CaseHolder.__table__)
EVENTS = Columns(CaseEvent.__table__, skip=("id",))  # events take their ids from the sequence


def _state_table() -> list[str]:
    # Case i gets table[(i * 7919) % 1000], so that any run of ids holds every state.
    return [state for state, weight in STATE_MIX for _ in range(weight)]


@dataclass
class SeedPlan:
    """What the seeded cases look like. Case ids (and person ids) run from ``start`` to ``stop - 1``."""

    counties: list[County]
    now: datetime
    overdue: Callable[[int], bool]  # whether case i is past its deadline
    screened_only: bool = False  # every case screened, version 1, with its screen event (transitions)
    disease: str | None = None  # one disease for every case (else cycled through the catalogue)
    actor: tuple[int, str, str] | None = None  # (user id, username, org unit) recorded on screen events


def seed(db: BenchDatabase, plan: SeedPlan, start: int, stop: int, chunk: int = 50_000) -> None:
    """Bulk-insert persons, cases (and holders / screen events) for ids [start, stop)."""
    states = _state_table()
    ts: Callable[[datetime], object]
    day: Callable[[date], object]
    if db.engine == "sqlite":
        cache: dict[datetime, str] = {}

        def ts(value: datetime) -> str:
            text = cache.get(value)
            if text is None:
                text = cache[value] = sqlite_ts(value)
            return text

        def day(value: date) -> str:
            return value.isoformat()
    else:

        def ts(value: datetime) -> datetime:
            return value

        def day(value: date) -> date:
            return value

    now = plan.now.replace(second=0, microsecond=0)
    born0 = date(1950, 1, 1)
    since = date(2016, 1, 1)
    screen_data: dict[str, str] = {}
    writer = _Writer(db)
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        persons, cases, holders, events = [], [], [], []
        for i in range(lo, hi):
            # A multiplicative hash picks the county, so that states and overdue cases (chosen by
            # other residues of i) spread over every county rather than lining up with one.
            county = plan.counties[((i * 2654435761) >> 12) % len(plan.counties)]
            village = county.villages[(i // 7) % len(county.villages)]
            birth = born0 + timedelta(days=(i // 1000) % 20000)
            persons.append(
                PERSONS.row(
                    {
                        "id": i,
                        "id_number": make_id_number(county.code, birth, i % 1000),
                        "name": f"患者{i}",
                        "sex": "M" if i % 2 else "F",
                        "birth_date": day(birth),
                        "village_code": village,
                        "category": "poor_not_exited",
                        "category_since": day(since),
                        "created_at": ts(now),
                    }
                )
            )
            state = "screened" if plan.screened_only else states[(i * 7919) % 1000]
            disease = plan.disease or county.diseases[i % len(county.diseases)]
            hospital = group = referred_from = None
            if state in _HOLDING:
                hospital = next(h for h in county.hospitals if (h, disease) in county.designations)
                holders.append(HOLDERS.row({"case_id": i, "org_unit_code": hospital}))
            if state == "referred":
                group, referred_from = county.group, "in_treatment"
                holders.append(HOLDERS.row({"case_id": i, "org_unit_code": group}))
            # Deadlines on a minute grid (so a few thousand distinct values); overdue ones in the past.
            if plan.overdue(i):
                due = now - timedelta(minutes=60 + (i * 37) % (10 * 24 * 60))
            else:
                due = now + timedelta(minutes=60 + (i * 53) % (30 * 24 * 60))
            screened = now - timedelta(days=10 + i % 300)
            entered = min(due - timedelta(days=3), now - timedelta(days=1)) if state != "screened" else screened
            cases.append(
                CASES.row(
                    {
                        "id": i,
                        "person_id": i,
                        "disease_code": disease,
                        "policy_code": county.policy,
                        "category": "poor_not_exited",
                        "state": state,
                        "version": 1 if plan.screened_only else 3,
                        "village_code": village,
                        "township_code": county.township_of[village],
                        "county_code": county.code,
                        "city_code": county.city,
                        "province_code": county.province,
                        "hospital_code": hospital,
                        "referral_group_code": group,
                        "referred_from": referred_from,
                        "source": "health_check",
                        "screened_at": ts(screened),
                        "entered_state_at": ts(entered),
                        "due_at": ts(due),
                        "created_at": ts(screened),
                        "updated_at": ts(screened),
                    }
                )
            )
            if plan.screened_only and plan.actor:
                if disease not in screen_data:
                    screen_data[disease] = json.dumps({"disease_code": disease, "source": "health_check"})
                uid, username, unit = plan.actor
                events.append(
                    EVENTS.row(
                        {
                            "case_id": i,
                            "seq": 1,
                            "event": "screen",
                            "to_state": "screened",
                            "actor_id": uid,
                            "actor_username": username,
                            "org_unit_code": unit,
                            "at": ts(screened),
                            "occurred_at": ts(screened),
                            "data": screen_data[disease],
                        }
                    )
                )
        writer.write(PERSONS, persons)
        writer.write(CASES, cases)
        if holders:
            writer.write(HOLDERS, holders)
        if events:
            writer.write(EVENTS, events)
        writer.commit()
    writer.close()


def screened_for_a_coordinator(
    db: BenchDatabase, county: str, disease: str, username: str, count: int
) -> tuple[str, int]:
    """A county coordinator's login, and ``count`` cases of ``disease`` in that county, ids 1 to
    ``count``, each screened by the coordinator with its screen event; the database analysed.
    Returns the login's bearer token and user id."""
    from bench import databases, demo_region, logins, reporting

    token = logins.add_login(db, username, "county_coordinator", county)
    user_id = logins.user_id(db, username)
    now = datetime.now(UTC)
    home = next(x for x in demo_region.counties(db, now.date()) if x.code == county)
    plan = SeedPlan(
        [home], now, overdue=lambda i: False, screened_only=True, disease=disease, actor=(user_id, username, county)
    )
    done = reporting.step(f"{db.engine}: seed {count:,} screened cases with their screen events")
    seed(db, plan, 1, count + 1)
    databases.analyze(db)
    done()
    return token, user_id


def mark_overdue(db: BenchDatabase, now: datetime, step: int) -> None:
    """Make exactly the open cases whose id is a multiple of ``step`` overdue (a day late), and
    every other open case due in the future."""
    past, future = now - timedelta(days=1), now + timedelta(days=20)
    if db.engine == "sqlite":
        past, future = sqlite_ts(past), sqlite_ts(future)
    p, mod = ("?", "%") if db.engine == "sqlite" else ("%s", "%%")
    sql = (
        f"UPDATE cases SET due_at = CASE WHEN id {mod} {p} = 0 THEN {p} ELSE {p} END"
        f" WHERE (id {mod} {p} = 0) <> (due_at < {p})"
    )
    params = (step, past, future, step, sqlite_ts(now) if db.engine == "sqlite" else now)
    if db.engine == "sqlite":
        conn = db.sqlite()
        try:
            conn.execute(sql, params)
        finally:
            conn.close()
    else:
        with db.pg() as conn:
            conn.execute(sql, params)


class _Writer:
    def __init__(self, db: BenchDatabase) -> None:
        self.db = db
        if db.engine == "sqlite":
            self.conn = db.sqlite()
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = psycopg.connect(db.url)

    def write(self, columns: Columns, rows: list[tuple]) -> None:
        names = ", ".join(columns.names)
        if self.db.engine == "sqlite":
            marks = ", ".join("?" for _ in columns.names)
            self.conn.executemany(f"INSERT INTO {columns.table} ({names}) VALUES ({marks})", rows)
            return
        with self.conn.cursor() as cur, cur.copy(f"COPY {columns.table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def commit(self) -> None:
        if self.db.engine == "sqlite":
            self.conn.execute("COMMIT")
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.commit()

    def close(self) -> None:
        if self.db.engine == "sqlite":
            self.conn.execute("COMMIT")
        else:
            # Explicit ids went in: move the sequences past them, or the API's inserts collide.
            for table in ("persons", "cases", "case_events"):
                self.conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
            self.conn.commit()
        self.conn.close()
