"""The `casework` command: create-admin, demo (twice), diagram, scheduler --once."""

from __future__ import annotations

from sqlalchemy import func, select

from casework.models import ExpertGroup, Hospital, HospitalDesignation, OrgUnit, User


def test_create_admin_then_login(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "root", "--password", "a long admin secret"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(args=["create-admin", "root", "--password", "a long admin secret"])
    assert again.exit_code != 0 and "exists" in again.output
    short = runner.invoke(args=["create-admin", "root2", "--password", "short"])
    assert short.exit_code != 0 and "password" in short.output
    token = client.post("/api/v1/auth/token", json={"username": "root", "password": "a long admin secret"})
    assert token.status_code == 200


def test_demo_is_safe_to_run_twice(app, session):
    def counts():
        session.rollback()
        return [
            session.scalar(select(func.count()).select_from(t))
            for t in (OrgUnit, Hospital, HospitalDesignation, ExpertGroup, User)
        ]

    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0 and "longchuan.coordinator" in first.output
    before = counts()
    second = runner.invoke(args=["demo"])
    assert (
        second.exit_code == 0 and "0 org_units, 0 hospitals, 0 designations, 0 expert_groups, 0 users" in second.output
    )
    assert counts() == before
    assert before[4] >= 5 * 4  # a login per role for each of the five seed regions


def test_diagram_is_mermaid_from_the_machine(app):
    result = app.test_cli_runner().invoke(args=["diagram"])
    assert result.exit_code == 0
    assert result.output.startswith("stateDiagram-v2") and "referred --> assigned: accept_referral" in result.output


def test_scheduler_once(app):
    result = app.test_cli_runner().invoke(args=["scheduler", "--once"])
    assert result.exit_code == 0 and "raised" in result.output
