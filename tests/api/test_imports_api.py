"""The roster upload over HTTP: 202 and a job that shows its progress, then its totals and a
downloadable per-row report; the import runs in a process of its own; the template."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from api import import_jobs
from casework.models import Person
from tests.data_io.files import read_any, write_csv
from tests.data_io.test_roster import ALICE, BOB, CAROL, good_rows


def upload(client, who, path, **form):
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **form}
    return client.post("/api/v1/imports/persons", headers=who.headers, data=data, content_type="multipart/form-data")


def finished(client, who, job_id: str, seconds: float = 120) -> dict:
    """Poll the job as a client would until it is no longer running."""
    deadline = time.monotonic() + seconds
    while True:
        job = client.get(f"/api/v1/imports/{job_id}", headers=who.headers).get_json()
        if job["status"] != "running" or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_a_coordinator_uploads_a_gb18030_roster_and_downloads_the_report(client, logins, session, tmp_path):
    rows = [*good_rows(), ["12345", "坏行", "迭撒村", "建档立卡未脱贫", "2016-03-01"]]
    path = write_csv(tmp_path / "名册.csv", rows, "gb18030")
    who = logins["coordinator"]

    answer = upload(client, who, path)

    assert answer.status_code == 202, answer.get_json()
    started = answer.get_json()
    assert started["status"] == "running" and started["progress"] == {"rows": 0, "total": 4, "rows_per_second": 0}
    assert answer.headers["Location"] == f"/api/v1/imports/{started['id']}" and "report_url" not in started
    job = finished(client, who, started["id"])
    assert job["status"] == "failed" and job["totals"]["invalid"] == 1 and job["totals"]["new"] == 0
    assert job["progress"]["rows"] == 4 and job["finished_at"] >= job["created_at"]
    report = client.get(job["report_url"], headers=who.headers)
    assert report.status_code == 200
    (tmp_path / "r.csv").write_bytes(report.data)
    back = read_any(tmp_path / "r.csv")
    assert back[-1][-2] == "错误" and "身份证号" in back[-1][-1]
    # someone else's import does not exist for them
    assert client.get(f"/api/v1/imports/{job['id']}", headers=logins["other_coordinator"].headers).status_code == 404

    again = finished(client, who, upload(client, who, path, skip_invalid="true").get_json()["id"])
    assert again["status"] == "done" and again["totals"]["new"] == 3 and again["totals"]["committed"]
    session.rollback()  # a fresh snapshot: the import process committed in its own connection
    names = set(session.scalars(select(Person.name).where(Person.id_number.in_([ALICE, BOB, CAROL]))))
    assert names == {"岩温", "李春梅", "排玉香"}
    # the upload itself is not kept: the registry's personal data lives in the database only
    folder = Path(client.application.instance_path) / "imports" / again["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["job.json", "report.csv"]


def running_job(app, logins, **fields: str) -> tuple[str, Path, dict]:
    """A job as an import process writes it while running, 1,200 of 5,000 rows in (not saved yet)."""
    job_id = str(uuid.uuid4())
    folder = import_jobs.jobs_dir(app.instance_path) / job_id
    folder.mkdir()
    job = {"id": job_id, "kind": "persons", "status": "running", "file_name": "名册.csv", "report_kind": "csv",
           "created_at": "2026-01-01T00:00:00+00:00", "created_by": logins["coordinator"].username,
           "progress": import_jobs.progress(1200, 5000, 2.0), **fields}  # fmt: skip
    return job_id, folder, job


def test_the_report_of_a_running_import_is_not_there_yet(client, logins, app):
    job_id, folder, job = running_job(app, logins)
    import_jobs.write_job(folder, job)

    shown = client.get(f"/api/v1/imports/{job_id}", headers=logins["coordinator"].headers)
    report = client.get(f"/api/v1/imports/{job_id}/report", headers=logins["coordinator"].headers)

    assert shown.status_code == 200
    assert shown.get_json()["progress"] == {"rows": 1200, "total": 5000, "rows_per_second": 600, "percent": 24,
                                            "seconds_left": 6}  # fmt: skip
    assert report.status_code == 409 and report.mimetype == "application/problem+json"
    assert json.loads((folder / "job.json").read_text(encoding="utf-8"))["updated_at"]


def test_roles_that_may_not_import_get_403_and_bad_files_422(client, logins, tmp_path):
    path = write_csv(tmp_path / "名册.csv", good_rows(), "utf-8-sig")
    assert upload(client, logins["doctor"], path).status_code == 403
    answer = upload(client, logins["coordinator"], path, county="320921")
    assert answer.status_code == 422 and "county" in answer.get_json()["errors"]
    bad = tmp_path / "名册.pdf"
    bad.write_bytes(b"%PDF")
    answer = upload(client, logins["coordinator"], bad)
    assert answer.status_code == 422 and answer.headers["Content-Type"] == "application/problem+json"
    # a file without the columns is refused in the request, before any import starts, and leaves no job
    jobs = import_jobs.jobs_dir(client.application.instance_path)
    before = set(jobs.iterdir())
    headless = write_csv(tmp_path / "名单.csv", [["身份证号", "姓名"], [ALICE, "岩温"]], "gb18030")
    answer = upload(client, logins["coordinator"], headless)
    assert answer.status_code == 422 and "缺少列" in answer.get_json()["errors"]["file"][0]
    assert set(jobs.iterdir()) == before


def test_the_template_downloads_as_xlsx_and_csv(client, logins, tmp_path):
    for fmt in ("xlsx", "csv"):
        answer = client.get(f"/api/v1/imports/persons/template?format={fmt}", headers=logins["coordinator"].headers)
        assert answer.status_code == 200
        (tmp_path / f"t.{fmt}").write_bytes(answer.data)
        assert read_any(tmp_path / f"t.{fmt}")[0] == ["身份证号", "姓名", "村/社区", "类别", "认定日期"]


def test_a_job_whose_process_went_silent_shows_as_stopped(client, logins, app):
    job_id, folder, job = running_job(app, logins, updated_at="2026-01-01T00:01:00+00:00")
    (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")  # as a killed process left it

    shown = client.get(f"/api/v1/imports/{job_id}", headers=logins["coordinator"].headers).get_json()

    assert shown["status"] == "error" and "重新上传" in shown["summary"] and shown["progress"]["rows"] == 1200
    assert client.get(f"/api/v1/imports/{job_id}/report", headers=logins["coordinator"].headers).status_code == 409

