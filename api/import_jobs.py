"""Roster import jobs: a folder per job under the instance folder, holding ``job.json`` (status,
progress, totals) and, once done, the per-row report.

An upload is checked in the request (role, county, a readable file with the columns) and then
imported by a process of its own, ``python -m api.cli import persons FILE --job ID``: a large
roster is seconds to minutes of CPU, which inside a request would hold a gevent worker — and every
other client of that worker — for as long. The process writes its progress into ``job.json`` as it
goes and its totals when done; the API reads that file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from casework.db import utcnow

RUNNING, DONE, FAILED, ERROR = "running", "done", "failed", "error"
STATUSES = (RUNNING, DONE, FAILED, ERROR)
PROGRESS_EVERY = 1.0  # seconds between writes of job.json while running
# A running job that has not written for this long has lost its process (killed, machine restarted):
# reading an .xlsx sheet or writing the report are the longest silences, seconds each.
STALE_AFTER = timedelta(minutes=5)


def jobs_dir(instance_path: str) -> Path:
    path = Path(instance_path) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def job_folder(instance_path: str, job_id: str) -> Path:
    """The job's folder; ValueError for an id that is not one (no path tricks)."""
    return jobs_dir(instance_path) / str(uuid.UUID(job_id))


def read_job(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "job.json").read_text(encoding="utf-8"))


def write_job(folder: Path, job: dict[str, Any]) -> None:
    """Replace job.json whole (write aside, then rename): a reader never sees half a file."""
    job["updated_at"] = utcnow().isoformat()
    aside = folder / f"job.json.{os.getpid()}.tmp"
    aside.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    os.replace(aside, folder / "job.json")


def as_seen(job: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The job as a reader should take it: a running job whose process went silent is shown as
    stopped. Its transaction died with it unless it had just committed, hence the advice: a roster
    imported again changes nothing that is already there."""
    if job.get("status") != RUNNING or not job.get("updated_at"):
        return job
    if (now or utcnow()) - datetime.fromisoformat(job["updated_at"]) < STALE_AFTER:
        return job
    return {
        **job,
        "status": ERROR,
        "summary": "导入进程已停止（超过 5 分钟没有进展），结果不明：请重新上传（已导入的行再导入不会重复）",
    }


def start(
    database_url: str,
    instance_path: str,
    job_id: str,
    source: Path,
    *,
    county: str | None,
    dry_run: bool,
    skip_invalid: bool,
) -> None:
    """Start the import process and return at once; a thread of this process reaps it when it
    ends (under gevent, a greenlet), so no zombie is left behind."""
    command = [sys.executable, "-m", "api.cli", "import", "persons", str(source), "--job", job_id]
    if county:
        command += ["--county", county]
    if dry_run:
        command.append("--dry-run")
    if skip_invalid:
        command.append("--skip-invalid")
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CASEWORK_INSTANCE": instance_path,
        "CASEWORK_PROGRESS": "off",
    }
    process = subprocess.Popen(
        command,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a worker restarted by gunicorn does not take the import with it
    )
    threading.Thread(target=process.wait, name=f"import-{job_id[:8]}", daemon=True).start()


class ProgressWriter:
    """The import's progress callback: rows done, and when known the total and time left, written
    to job.json at most once a second."""

    def __init__(self, folder: Path, job: dict[str, Any], total: int | None) -> None:
        self.folder = folder
        self.job = job
        self.total = total
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        self.job["progress"] = progress(rows, self.total, now - self.start)
        write_job(self.folder, self.job)


def progress(rows: int, total: int | None, elapsed: float) -> dict[str, Any]:
    rate = rows / elapsed if elapsed > 0 else 0.0
    shown: dict[str, Any] = {"rows": rows, "total": total, "rows_per_second": round(rate)}
    if total and rate > 0:
        shown["percent"] = min(100, round(100 * rows / total))
        shown["seconds_left"] = round(max(0, total - rows) / rate)
    return shown


def run(folder: Path, job: dict[str, Any], work: Callable[[ProgressWriter], dict[str, Any]], total: int | None) -> int:
    """Run ``work`` (the import; it returns the job's final fields) and record how it ended.
    Nothing of the failure's text is kept or printed: a database error can quote the row it was
    writing, and job files and logs carry no personal data. Returns the process's exit status."""
    writer = ProgressWriter(folder, job, total)
    try:
        job.update(work(writer))
        job["finished_at"] = utcnow().isoformat()
        write_job(folder, job)
        return 0 if job["status"] != ERROR else 1
    except BaseException as exc:
        job.update(
            status=ERROR,
            summary=f"导入中断（{type(exc).__name__}），所有改动已回滚；请重新上传",
            finished_at=utcnow().isoformat(),
        )
        write_job(folder, job)
        print(f"import job {job.get('id')}: stopped by {type(exc).__name__}", file=sys.stderr)
        return 1
