"""Two scheduler processes scanning one database at once raise each alert exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from casework.models import Alert
from tests.casework.helpers import Walker
from tests.conftest import utc_now

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3


def test_two_scheduler_processes_raise_each_alert_once(session, db_url):
    walk = Walker(session, utc_now())
    overdue = [walk.new_case(screened_days_ago=20).id for _ in range(25)]
    for _ in range(10):
        walk.new_case(screened_days_ago=1)
    session.close()

    env = {**os.environ, "DATABASE_URL": db_url}
    for _ in range(ROUNDS):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "api.cli", "scheduler", "--once"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), outputs

    session.rollback()
    per_case = dict(session.execute(select(Alert.case_id, func.count()).group_by(Alert.case_id)).all())
    assert per_case == {case_id: 1 for case_id in overdue}
