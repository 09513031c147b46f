"""Who is acting: passed explicitly into every service, never read from a global."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    username: str
    role: str
    org_unit_code: str
    org_kind: str  # province, city, county, township, village, hospital or expert_group

    @classmethod
    def system(cls) -> Actor:
        """The scheduler and command-line jobs act as the system."""
        return cls(None, "system", "admin", "", "system")
