"""The current step's deadline, counted from when the step happened in the world.

``due_at`` is the moment a case becomes overdue in its state; it is stored on the case in the same
transaction as the transition, so the overdue scan is one indexed range query.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from workflows.case_machine import EXPECTED_STAY, FOLLOW_UP_INTERVAL, OVERDUE_RULES, STATE_BY_NAME
from workflows.policy_pack import PolicyPack

__all__ = ["OVERDUE_RULES", "due_at"]


def due_at(
    state: str,
    step_at: datetime,
    pack: PolicyPack,
    disease_code: str,
    follow_up_interval_days: int | None = None,
) -> datetime | None:
    """When a case that entered ``state`` at ``step_at`` becomes overdue; None for final states.

    Which clock applies is declared on the state (``workflows.case_machine.STATES``)."""
    declared = STATE_BY_NAME[state].deadline
    if declared is None:
        return None
    if declared not in (EXPECTED_STAY, FOLLOW_UP_INTERVAL):
        return step_at + timedelta(days=pack.deadlines_days[declared])
    disease = pack.disease(disease_code)
    if disease is None:
        return None
    if declared == EXPECTED_STAY:
        return step_at + timedelta(days=disease.expected_stay_days)
    interval = follow_up_interval_days or disease.follow_up_interval_days
    return step_at + timedelta(days=interval + pack.deadlines_days["follow_up_grace"])
