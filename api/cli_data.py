"""``casework import persons|cases|discharges FILE`` and ``casework ledger export``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask

from api.extensions import db
from casework.actor import Actor
from casework.errors import CaseworkError
from casework.tabular import Progress, count_rows


def _report_path(source: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    return source.with_name(f"{source.stem}.结果{source.suffix}")


def _fail(exc: CaseworkError) -> click.ClickException:
    errors = getattr(exc, "errors", None)
    if errors:
        return click.ClickException("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
    return click.ClickException(exc.detail)


def register_data_commands(app: Flask) -> None:
    @app.cli.group("import")
    def import_group() -> None:
        """Import a roster, an existing ledger or discharge records (.xlsx or .csv)."""

    @import_group.command("persons")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--county", default=None, help="county code: villages may then be given by name")
    @click.option("--dry-run", is_flag=True, help="validate and report, change nothing")
    @click.option("--skip-invalid", is_flag=True, help="import the good rows of a file that has bad ones")
    @click.option("--report", "report_to", default=None, help="where to write the file with 结果/错误 columns")
    def import_persons_command(
        file: Path, county: str | None, dry_run: bool, skip_invalid: bool, report_to: str | None
    ) -> None:
        """The roster of eligible people: new persons, and new dated categories for known ones."""
        from casework.services.roster import describe, import_persons, write_report

        progress = Progress(count_rows(file), "导入名册")
        try:
            report = import_persons(
                db.session(),
                Actor.system(),
                file,
                county=county,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                progress=progress.update,
            )
        except CaseworkError as exc:
            raise _fail(exc) from None
        progress.finish()
        target = _report_path(file, report_to)
        write_report(file, report, target)
        click.echo(describe(report))
        click.echo(f"逐行结果：{target}")
        if report.invalid and not skip_invalid:
            sys.exit(1)
