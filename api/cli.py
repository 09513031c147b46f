"""The ``casework`` command: a Flask CLI group, so Flask-Migrate's ``db`` commands live under it.

Imports run one way: this entry point builds the app (``api.app``) and hands ``api.server`` the
factory to build it again in each worker; neither of those imports this module.
"""

from __future__ import annotations

import os

import click
from flask import current_app
from flask.cli import FlaskGroup
from sqlalchemy.orm import sessionmaker

from api.app import create_app
from api.cli_data import register_data_commands
from api.extensions import db
from casework.actor import Actor
from casework.errors import CaseworkError

casework = FlaskGroup(
    create_app=create_app,
    add_version_option=False,
    help="The 大病专项救治 case workflow: serve the API, run the scheduler, migrate (db), load the demo.",
)


@casework.command("create-admin")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_admin(username: str, password: str) -> None:
    """Create an administrator (who then creates the other users)."""
    from casework.services.users import create_user

    try:
        create_user(db.session(), Actor.system(), username=username, password=password, role="admin", org_unit=None)
    except CaseworkError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"admin {username} created")


@casework.command("demo")
@click.option("--password", default=None, help="password for the demo logins")
@click.option("--no-cases", is_flag=True, help="only the region and logins, without the demo cases")
def demo(password: str | None, no_cases: bool) -> None:
    """Load the demo region of every seed policy, with ~40 living cases each; safe to run twice."""
    from casework.services.demo import DEMO_PASSWORD, load_demo

    summary = load_demo(db.session(), password=password or DEMO_PASSWORD, with_cases=not no_cases)
    added = ", ".join(f"{count} {what}" for what, count in summary.created.items())
    click.echo(f"demo region loaded ({added} added)")
    click.echo(f"logins (password: {password or DEMO_PASSWORD}):")
    for username, role, unit in summary.logins:
        click.echo(f"  {username:<24} {role:<20} {unit}")


@casework.command("diagram")
def diagram() -> None:
    """Print the case state machine as a Mermaid diagram."""
    from workflows.case_machine import mermaid

    click.echo(mermaid(), nl=False)


@casework.command("scheduler")
@click.option("--once", is_flag=True, help="one scan and exit (for cron)")
@click.option("--interval", default=None, type=int, help="seconds between scans")
def scheduler_command(once: bool, interval: int | None) -> None:
    """Run the overdue scheduler alone (one per deployment)."""
    import logging

    from api.idempotency import purge_expired
    from scheduler import jobs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # The jobs run outside any request: a plain session factory on the app's engine.
    sessions = sessionmaker(db.engine)
    if once:
        report = jobs.overdue_scan(sessions)
        click.echo(
            f"{report.raised} raised, {report.resolved} resolved, {report.escalated} escalated"
            f"{' (skipped: another scheduler runs)' if report.skipped else ''}"
        )
        return
    scheduler = jobs.build(
        sessions,
        blocking=True,
        interval=interval or jobs.SCAN_SECONDS,
        extra_jobs={"purge_idempotency": lambda: purge_expired(sessions)},
    )
    click.echo("scheduler running; Ctrl-C stops it")
    scheduler.start()


register_data_commands(casework)


@casework.command("serve")
@click.option("--host", default=lambda: os.environ.get("CASEWORK_HOST", "127.0.0.1"))
@click.option("--port", default=lambda: int(os.environ.get("CASEWORK_PORT", "5000")), type=int)
@click.option("--workers", type=int, help="worker processes [CASEWORK_WORKERS; 1 on SQLite, 2 on PostgreSQL]")
def serve(host: str, port: int, workers: int | None) -> None:
    """Serve the API with gunicorn."""
    from api.server import default_workers, run

    run(host, port, workers or default_workers(current_app.config["SQLALCHEMY_DATABASE_URI"]), create_app)


def main() -> None:
    casework(prog_name="casework")


if __name__ == "__main__":
    main()
