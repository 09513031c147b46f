"""The scheduled jobs and the APScheduler 3 that runs them, exactly once per deployment.

Static jobs in a MemoryJobStore: nothing to persist, and two schedulers never share a job store.
Running two by mistake is still safe: the scan takes a database lock and raises each alert once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session

from casework.services.alerts import ScanReport, scan

log = logging.getLogger("casework.scheduler")

SCAN_SECONDS = int(os.environ.get("CASEWORK_SCAN_SECONDS", "300"))


def overdue_scan(session_factory: Callable[[], Session]) -> ScanReport:
    session = session_factory()
    try:
        return scan(session)
    finally:
        session.close()


def build(
    session_factory: Callable[[], Session],
    *,
    blocking: bool,
    interval: int = SCAN_SECONDS,
    extra_jobs: dict[str, Callable[[], object]] | None = None,
) -> BaseScheduler:
    scheduler: BaseScheduler = BlockingScheduler() if blocking else BackgroundScheduler()
    common = {
        "trigger": "interval",
        "seconds": interval,
        "replace_existing": True,
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": interval,
    }
    # The first scan runs at start: a service restarted on Monday reports what went overdue meanwhile.
    scheduler.add_job(
        overdue_scan, id="overdue_scan", args=[session_factory], next_run_time=datetime.now(UTC), **common
    )
    for job_id, job in (extra_jobs or {}).items():
        scheduler.add_job(job, id=job_id, **common)
    return scheduler
