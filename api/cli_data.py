"""``casework import persons|cases|discharges FILE`` and ``casework ledger export``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

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


def _import_on_terminal(
    file: Path,
    label: str,
    run: Callable[[Callable[[int], None]], Any],
    describe: Callable[[Any], str],
    report_to: str | None,
    refuse_invalid: bool = False,
) -> None:
    """Run one importer with a progress bar, write the user's file back with 结果/错误 columns and
    say the totals; a file with bad rows exits 1 when they were not to be skipped."""
    from casework.services.roster import write_report

    progress = Progress(count_rows(file), label)
    try:
        report = run(progress.update)
    except CaseworkError as exc:
        raise _fail(exc) from None
    progress.finish()
    target = _report_path(file, report_to)
    write_report(file, report, target)
    click.echo(describe(report))
    click.echo(f"逐行结果：{target}")
    if refuse_invalid and report.invalid:
        sys.exit(1)


def _persons_job(file: Path, job_id: str, run: Callable[[Any], Any]) -> int:
    """The import of an upload, for the API (api/import_jobs.py): progress, totals and the report
    go to the job's folder, and the upload is deleted whatever happens."""
    from flask import current_app

    from api import import_jobs
    from casework.services.roster import describe, write_report

    folder = import_jobs.job_folder(current_app.instance_path, job_id)
    job = import_jobs.read_job(folder)

    def work(progress: import_jobs.ProgressWriter) -> dict:
        try:
            report = run(progress)
        except CaseworkError as exc:  # our own words (a missing column, a county): kept for the user
            return {"status": import_jobs.FAILED, "summary": _fail(exc).message}
        write_report(file, report, folder / f"report.{job['report_kind']}")
        return {
            "status": import_jobs.DONE if report.committed or report.dry_run else import_jobs.FAILED,
            "progress": import_jobs.progress(report.rows, report.rows, time.monotonic() - progress.start),
            "totals": report.totals(),
            "summary": describe(report),
            "report_url": f"/api/v1/imports/{job_id}/report",
        }

    try:
        return import_jobs.run(folder, job, work, count_rows(file))
    finally:
        file.unlink(missing_ok=True)  # the registry's personal data is kept once, in the database


def register_data_commands(group: click.Group) -> None:
    @group.group("import")
    def import_group() -> None:
        """Import a roster, an existing ledger or discharge records (.xlsx or .csv)."""

    @import_group.command("persons")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--county", default=None, help="county code: villages may then be given by name")
    @click.option("--dry-run", is_flag=True, help="validate and report, change nothing")
    @click.option("--skip-invalid", is_flag=True, help="import the good rows of a file that has bad ones")
    @click.option("--report", "report_to", default=None, help="where to write the file with 结果/错误 columns")
    @click.option("--job", "job_id", default=None, help="an import job of the API: progress and report go to it")
    def import_persons_command(
        file: Path, county: str | None, dry_run: bool, skip_invalid: bool, report_to: str | None, job_id: str | None
    ) -> None:
        """The roster of eligible people: new persons, and new dated categories for known ones."""
        from casework.services.roster import describe, import_persons

        def run(progress: Any) -> Any:
            return import_persons(
                db.session(),
                Actor.system(),
                file,
                county=county,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                progress=progress,
            )

        if job_id:
            sys.exit(_persons_job(file, job_id, run))
        _import_on_terminal(file, "导入名册", run, describe, report_to, refuse_invalid=not skip_invalid)

    @import_group.command("cases")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--county", default=None, help="county code: every row must lie in it")
    @click.option("--dry-run", is_flag=True, help="validate and report, change nothing")
    @click.option("--skip-invalid", is_flag=True, help="import the good rows of a file that has bad ones")
    @click.option("--report", "report_to", default=None, help="where to write the file with 结果/错误 columns")
    def import_cases_command(
        file: Path, county: str | None, dry_run: bool, skip_invalid: bool, report_to: str | None
    ) -> None:
        """An existing ledger: each row's case rebuilt through the state machine, dated as the row says."""
        from casework.services.ledger_import import describe, import_cases

        _import_on_terminal(
            file,
            "导入台账",
            lambda progress: import_cases(
                db.session(), file, county=county, dry_run=dry_run, skip_invalid=skip_invalid, progress=progress
            ),
            describe,
            report_to,
            refuse_invalid=not skip_invalid,
        )

    @import_group.command("discharges")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--dry-run", is_flag=True, help="match and report, propose nothing")
    @click.option("--report", "report_to", default=None, help="where to write the file with 结果/错误 columns")
    def import_discharges_command(file: Path, dry_run: bool, report_to: str | None) -> None:
        """Discharge or settlement records: propose screened cases for eligible people (registry_match)."""
        from casework.services.discharges import describe, import_discharges

        _import_on_terminal(
            file,
            "比对出院记录",
            lambda progress: import_discharges(db.session(), file, dry_run=dry_run, progress=progress),
            describe,
            report_to,
        )

    @group.group("ledger")
    def ledger_group() -> None:
        """The ledger (台账)."""

    @ledger_group.command("export")
    @click.option("--county", default=None, help="county code (default: every county)")
    @click.option("--format", "kind", type=click.Choice(["xlsx", "csv"]), default="xlsx")
    @click.option("--output", "-o", default=None, help="file to write (default 台账_<county>_<date>.<format>)")
    @click.option("--masked", is_flag=True, help="mask ID numbers (the command otherwise shows them, logged)")
    def ledger_export_command(county: str | None, kind: str, output: str | None, masked: bool) -> None:
        """Write the ledger: one row per case; .xlsx adds the per-county totals, CSV writes them beside."""
        from dataclasses import replace

        from casework.db import utcnow
        from casework.services.ledger import ledger_scope, log_export, write_ledger, write_totals_csv

        session = db.session()
        actor = Actor.system()
        try:
            scope = ledger_scope(session, actor, county)
        except CaseworkError as exc:
            raise _fail(exc) from None
        if masked:
            scope = replace(scope, full_ids=False)
        now = utcnow()
        target = Path(output or f"台账_{county or 'all'}_{now:%Y%m%d}.{kind}")
        logged = log_export(session, actor, scope)
        progress = Progress(None, "导出台账")
        count = write_ledger(session, scope, target, kind, now, progress=progress.update)
        progress.finish()
        click.echo(f"{count} 个病例 → {target}" + (f"（完整身份证号已记录访问日志 {logged} 人）" if logged else ""))
        if kind == "csv":
            totals = target.with_name(f"{target.stem}_分县汇总.csv")
            write_totals_csv(session, scope, totals, now)
            click.echo(f"分县汇总 → {totals}")
