"""The `casework` command: create-admin, demo (twice), diagram, scheduler --once.

Each test asserts what the command did (who can log in, what rows exist, which alerts were raised),
not the wording of what it printed.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select, update

from api.cli import casework
from casework.db import utcnow
from casework.models import Alert, Case, ExpertGroup, Hospital, HospitalDesignation, OrgUnit, User
from tests.casework.helpers import Walker
from workflows.case_machine import MACHINE, RULES


def run(app, *args: str):
    return app.test_cli_runner().invoke(casework, args=list(args))


def test_create_admin_then_login(app, client):
    result = run(app, "create-admin", "root", "--password", "a long admin secret")
    assert result.exit_code == 0, result.output
    again = run(app, "create-admin", "root", "--password", "a long admin secret")
    assert again.exit_code != 0 and "exists" in again.output
    short = run(app, "create-admin", "root2", "--password", "short")
    assert short.exit_code != 0 and "password" in short.output
    token = client.post("/api/v1/auth/token", json={"username": "root", "password": "a long admin secret"})
    assert token.status_code == 200
    assert client.post("/api/v1/auth/token", json={"username": "root2", "password": "short"}).status_code == 401


def test_demo_is_safe_to_run_twice(app, client, session):
    def counts():
        session.rollback()
        return [
            session.scalar(select(func.count()).select_from(t))
            for t in (OrgUnit, Hospital, HospitalDesignation, ExpertGroup, User)
        ]

    first = run(app, "demo", "--password", "demo password 1")
    assert first.exit_code == 0, first.output
    before = counts()
    assert before[4] >= 5 * 4  # a login per role for each of the five seed regions
    second = run(app, "demo", "--password", "demo password 1")
    assert second.exit_code == 0, second.output
    assert counts() == before
    # Every login the command announces works with the password it was given.
    usernames = set(re.findall(r"^\s+(\S+\.\S+)\s", first.output, re.MULTILINE))
    stored = set(session.scalars(select(User.username)))
    assert usernames and usernames <= stored
    some = sorted(usernames)[0]
    token = client.post("/api/v1/auth/token", json={"username": some, "password": "demo password 1"})
    assert token.status_code == 200, token.json


def test_diagram_is_mermaid_from_the_machine(app):
    result = run(app, "diagram")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "stateDiagram-v2"
    edges = {
        (m.group(1), m.group(2), m.group(3))
        for m in (re.match(r"\s+(\w+) --> (\w+): (\w+) ", line) for line in lines)
        if m
    }
    expected = {
        (source, transition.dest, name)
        for name, event in MACHINE.events.items()
        for source, transitions in event.transitions.items()
        for transition in transitions
    }
    assert edges == expected and {name for _, _, name in edges} == set(RULES)


def test_scheduler_once_raises_the_overdue_alert(app, session):
    case = Walker(session, utcnow()).new_case(screened_days_ago=1)
    case_id = case.id
    session.execute(update(Case).where(Case.id == case_id).values(due_at=utcnow() - timedelta(hours=1)))
    session.commit()
    result = run(app, "scheduler", "--once")
    assert result.exit_code == 0, result.output
    session.rollback()
    assert session.scalars(select(Alert.rule).where(Alert.case_id == case_id)).all() == ["not_confirmed"]
    assert run(app, "scheduler", "--once").exit_code == 0
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Alert).where(Alert.case_id == case_id)) == 1
