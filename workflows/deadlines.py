"""The current step's deadline, counted from when the step happened in the world.

``due_at`` is the moment a case becomes overdue in its state; it is stored on the case in the same
transaction as the transition, so the overdue scan is one indexed range query.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from workflows.case_machine import ASSIGNED, CONFIRMED, FOLLOW_UP, IN_TREATMENT, REFERRED, SCREENED, TREATED
from workflows.policy_pack import PolicyPack

# States whose limit is a pack deadline, by the key in ``deadlines_days``.
_PACK_DEADLINE = {
    SCREENED: "screened",
    CONFIRMED: "confirmed",
    ASSIGNED: "assigned",
    REFERRED: "referred",
    TREATED: "settlement_after_discharge",
}


# The overdue rule each state's deadline raises, by name (alerts carry it).
OVERDUE_RULES = {
    SCREENED: "not_confirmed",
    CONFIRMED: "not_assigned",
    ASSIGNED: "not_admitted",
    IN_TREATMENT: "stay_exceeded",
    TREATED: "settlement_missing",
    REFERRED: "referral_waiting",
    FOLLOW_UP: "follow_up_missed",
}


def due_at(
    state: str,
    step_at: datetime,
    pack: PolicyPack,
    disease_code: str,
    follow_up_interval_days: int | None = None,
) -> datetime | None:
    """When a case that entered ``state`` at ``step_at`` becomes overdue; None for final states."""
    if state in _PACK_DEADLINE:
        return step_at + timedelta(days=pack.deadlines_days[_PACK_DEADLINE[state]])
    disease = pack.disease(disease_code)
    if disease is None:
        return None
    if state == IN_TREATMENT:
        return step_at + timedelta(days=disease.expected_stay_days)
    if state == FOLLOW_UP:
        interval = follow_up_interval_days or disease.follow_up_interval_days
        return step_at + timedelta(days=interval + pack.deadlines_days["follow_up_grace"])
    return None
