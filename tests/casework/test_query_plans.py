"""The paths that grow with the data take an index on both engines, asserted on their query plans.

Each test runs the service as a caller would, captures the SQL it sent, and asks the database for
that statement's plan. SQLite plans without statistics (the application never runs ANALYZE), so
its plans do not depend on how much data the test made. PostgreSQL plans by cost: on the few rows
of a test a sequential scan is cheapest, so its plans are taken with ``enable_seqscan = off`` —
which proves that the index can serve the query (the predicate matches it), the property that
makes the planner use it on a million cases (docs/performance.md has those plans and timings).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.models import Alert, Case
from casework.services import alerts
from casework.services.queries import CaseFilters, list_cases, referral_queue
from tests.casework.helpers import Walker
from tests.conftest import actor_for_unit

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@contextmanager
def captured(session: Session) -> Iterator[list[tuple[str, object]]]:
    statements: list[tuple[str, object]] = []
    engine = session.get_bind()

    def remember(_conn, _cursor, statement, parameters, _context, _many) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", remember)


def plan(session: Session, statement: str, parameters: object) -> str:
    """The plan of one captured statement, one line per step."""
    with session.get_bind().connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(row[3] for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        connection.rollback()
        return "\n".join(row[0] for row in rows)


def the_one(statements: list[tuple[str, object]], *words: str) -> tuple[str, object]:
    found = [(s, p) for s, p in statements if all(w in s for w in words)]
    assert len(found) == 1, [s for s, _ in statements]
    return found[0]


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


@pytest.fixture
def walker(session) -> Walker:
    return Walker(session, NOW)


def overdue_case(session: Session, walker: Walker) -> int:
    case = walker.new_case(screened_days_ago=40)  # screened 40 days ago: past the screening deadline
    case_id = case.id
    session.execute(update(Case).where(Case.id == case_id).values(due_at=NOW - timedelta(days=1)))
    session.commit()
    return case_id


def test_overdue_scan_raises_from_the_deadline_index(session, walker):
    case_id = overdue_case(session, walker)
    with captured(session) as statements:
        report = alerts.scan(session, NOW)
    assert report.raised == 1
    assert session.query(Alert).filter_by(case_id=case_id).count() == 1
    raising = plan(session, *the_one(statements, "INSERT INTO alerts", "FROM cases", "due_at <"))
    assert "ix_cases_due_open" in raising
    if is_sqlite(session):
        assert "SEARCH cases USING INDEX ix_cases_due_open (due_at<?)" in raising
        assert "ix_cases_state_id" not in raising


def test_resolving_starts_from_the_unresolved_alerts(session, walker):
    case_id = overdue_case(session, walker)
    alerts.scan(session, NOW)
    session.execute(update(Case).where(Case.id == case_id).values(due_at=NOW + timedelta(days=5)))
    session.commit()
    with captured(session) as statements:
        report = alerts.scan(session, NOW)
    assert report.resolved == 1
    resolving = plan(session, *the_one(statements, "UPDATE alerts", "resolved_at"))
    if is_sqlite(session):
        assert "SEARCH alerts USING INDEX ix_alerts_status_escalate (status=?)" in resolving
        assert "CORRELATED SCALAR SUBQUERY" in resolving
        assert "SEARCH cases USING INTEGER PRIMARY KEY (rowid=?)" in resolving
        assert "SCAN cases" not in resolving
    else:
        # A subplan run per alert, probing pk_cases: never a join over all cases.
        assert "SubPlan" in resolving and "pk_cases" in resolving
        assert "Join" not in resolving


@pytest.mark.parametrize("who", ["admin", "county_coordinator"])
def test_overdue_list_reads_the_deadline_index(session, walker, who):
    case_id = overdue_case(session, walker)
    walker.new_case(screened_days_ago=1)  # not overdue
    actor = Actor.system() if who == "admin" else walker.coordinator
    with captured(session) as statements:
        page, _ = list_cases(session, actor, CaseFilters(overdue=True), now=NOW)
    assert [c.id for c in page] == [case_id]
    listing = plan(session, *the_one(statements, "FROM cases", "due_at <", "LIMIT"))
    assert "ix_cases_due_open" in listing
    if is_sqlite(session):
        # Driven by the overdue ids: never a walk of all cases or of the county's index.
        assert "SCAN cases" not in listing and "ix_cases_county_id" not in listing
        assert "SEARCH cases USING INTEGER PRIMARY KEY (rowid=?)" in listing


def test_township_scope_is_one_index_range(session, walker):
    case = walker.new_case()
    case_id, township = case.id, case.township_code
    doctor = actor_for_unit(session, "village_doctor", township)
    with captured(session) as statements:
        page, _ = list_cases(session, doctor, CaseFilters(), now=NOW)
        by_region, _ = list_cases(session, walker.coordinator, CaseFilters(region=township), now=NOW)
    assert [c.id for c in page] == [case_id] == [c.id for c in by_region]
    for statement in [s for s in statements if "LIMIT" in s[0]]:
        listing = plan(session, *statement)
        assert "ix_cases_township_id" in listing
        if is_sqlite(session):
            assert "SEARCH cases USING INDEX ix_cases_township_id (township_code=?)" in listing
            assert "TEMP B-TREE" not in listing  # already in list order: no sort


def test_holder_scope_walks_case_holders(session, walker):
    case = walker.assign(walker.confirm(walker.new_case()))
    case_id, hospital_code = case.id, case.hospital_code
    walker.new_case()  # held by nobody
    hospital = actor_for_unit(session, "hospital", hospital_code)
    with captured(session) as statements:
        page, _ = list_cases(session, hospital, CaseFilters(), now=NOW)
    assert [c.id for c in page] == [case_id]
    listing = plan(session, *the_one(statements, "FROM cases", "case_holders", "LIMIT"))
    assert "ix_case_holders_org_unit_code" in listing
    if is_sqlite(session):
        assert "SEARCH case_holders USING COVERING INDEX ix_case_holders_org_unit_code (org_unit_code=?)" in listing
        assert "SCAN cases" not in listing
        assert "TEMP B-TREE" not in listing


def test_referral_queue_pages_oldest_first(session, walker):
    referred = []
    for days_ago in (30, 25, 20):
        case = walker.new_case(screened_days_ago=days_ago)
        case = walker.refer(walker.admit(walker.assign(walker.confirm(case))))
        referred.append(case.id)
    expert = walker.expert_actor(session.get(Case, referred[0]))
    seen, after, pages = [], None, 0
    while True:
        page, after = referral_queue(session, expert, limit=2, after=after)
        pages += 1
        seen += [c.id for c in page]
        if after is None:
            break
    everything, rest = referral_queue(session, expert, limit=50)
    assert rest is None
    assert seen == [c.id for c in everything]
    assert sorted(seen) == sorted(referred) and pages == 2
    assert [c.entered_state_at for c in everything] == sorted(c.entered_state_at for c in everything)
