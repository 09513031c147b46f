"""The data commands end to end: import persons (with its report file), ledger export, import cases, discharges."""

from __future__ import annotations

import io
import json
import uuid
from datetime import date, timedelta

from sqlalchemy import func, select

from api import import_jobs
from api.cli import casework
from casework.models import Case, Person
from casework.tabular import Progress
from tests.data_io.county import CountyBuilder
from tests.data_io.files import read_any, write_csv
from tests.data_io.test_roster import good_rows


def test_import_persons_writes_the_report_and_fails_on_bad_rows(app, session, tmp_path):
    runner = app.test_cli_runner()
    bad = write_csv(tmp_path / "bad.csv", [*good_rows(), ["1", "坏行", "迭撒村", "低保对象", "2020-01-01"]], "gb18030")

    refused = runner.invoke(casework, args=["import", "persons", str(bad), "--county", "533124"])

    assert refused.exit_code == 1 and "错误 1" in refused.output
    assert read_any(tmp_path / "bad.结果.csv")[-1][-2] == "错误"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Person)) == 0

    done = runner.invoke(casework, args=["import", "persons", str(bad), "--county", "533124", "--skip-invalid"])
    assert done.exit_code == 0 and "新增 3" in done.output
    assert "行/秒" not in done.output  # no progress line when not on a terminal


def _job(app, source_rows, tmp_path) -> tuple[str, object]:
    job_id = str(uuid.uuid4())
    folder = import_jobs.jobs_dir(app.instance_path) / job_id
    folder.mkdir()
    upload = write_csv(folder / "upload.csv", source_rows, "gb18030")
    job = {"id": job_id, "kind": "persons", "status": "running", "file_name": "名册.csv", "report_kind": "csv",
           "created_at": "2026-01-01T00:00:00+00:00", "created_by": "coordinator"}  # fmt: skip
    import_jobs.write_job(folder, job)
    return job_id, upload


def test_import_persons_for_a_job_writes_its_totals_and_report_and_drops_the_upload(app, session, tmp_path):
    runner = app.test_cli_runner()
    job_id, upload = _job(app, good_rows(), tmp_path)

    done = runner.invoke(casework, args=["import", "persons", str(upload), "--job", job_id, "--county", "533124"])

    assert done.exit_code == 0, done.output
    folder = upload.parent
    job = import_jobs.read_job(folder)
    assert job["status"] == "done" and job["totals"]["new"] == 3 and job["summary"].startswith("共 3 行")
    assert job["progress"]["rows"] == 3 and job["report_url"] == f"/api/v1/imports/{job_id}/report"
    assert not upload.exists() and read_any(folder / "report.csv")[1][-2] == "新增"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Person)) == 3


def test_an_import_job_that_stops_records_an_error_keeps_nothing_and_says_no_row(app, session, tmp_path, monkeypatch):
    from casework.services import roster

    def broken(self, rows):
        raise RuntimeError("533124196803140113 is the row it was writing")

    monkeypatch.setattr(roster._Bulk, "add", broken)
    runner = app.test_cli_runner()
    job_id, upload = _job(app, good_rows(), tmp_path)

    stopped = runner.invoke(casework, args=["import", "persons", str(upload), "--job", job_id, "--county", "533124"])

    assert stopped.exit_code == 1
    job = import_jobs.read_job(upload.parent)
    assert job["status"] == "error" and "RuntimeError" in job["summary"] and "5331241968" not in json.dumps(job)
    assert "report_url" not in job and not upload.exists()
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Person)) == 0


def test_ledger_export_then_import_cases_and_discharges(app, session, tmp_path):
    CountyBuilder(session, date.today() - timedelta(days=90)).build()
    runner = app.test_cli_runner()
    target = tmp_path / "台账.csv"

    exported = runner.invoke(
        casework, args=["ledger", "export", "--county", "533124", "--format", "csv", "-o", str(target)]
    )

    assert exported.exit_code == 0, exported.output
    assert len(read_any(target)) == 12 and (tmp_path / "台账_分县汇总.csv").exists()
    again = runner.invoke(casework, args=["import", "cases", str(target)])
    assert again.exit_code == 0 and "已存在 11" in again.output
    person = session.scalars(select(Person)).first()
    records = write_csv(
        tmp_path / "出院.csv",
        [["身份证号", "主要诊断编码", "出院日期"], [person.id_number, "F20.0", "2024-05-01"]],
        "utf-8-sig",
    )
    found = runner.invoke(casework, args=["import", "discharges", str(records)])
    assert found.exit_code == 0 and "生成待筛查病例 1" in found.output
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Case).where(Case.source == "registry_match")) == 1


def test_the_progress_line_shows_rate_and_eta_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(1000, "导入名册", stream=stream, every=0)
    progress.update(500)
    progress.finish()
    text = stream.getvalue()
    assert "500 行" in text and "行/秒" in text and "50%" in text and "剩余约" in text
