"""Who sees a full ID number, and the record of each time someone did (PIPL: sensitive data)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import bound_insert, utcnow
from casework.id_number import mask_id_number
from casework.models import AccessLog

FULL_ID_ROLES = ("admin", "county_coordinator")


def may_see_full_id(actor: Actor, county_code: str) -> bool:
    """Admins, and the coordinator of the person's own county, who must reach the family."""
    return actor.role == "admin" or (actor.role == "county_coordinator" and actor.org_unit_code == county_code)


def may_see_any_full_id(actor: Actor) -> bool:
    """Whether some record could show this actor a full ID number: only then does reading one need
    a write transaction (for the access-log row)."""
    return actor.role in FULL_ID_ROLES


def shown_id_number(actor: Actor, id_number: str, county_code: str) -> tuple[str, bool]:
    """The ID number as this actor may see it, and whether it was masked."""
    if may_see_full_id(actor, county_code):
        return id_number, False
    return mask_id_number(id_number), True


def log_full_read(session: Session, actor: Actor, person_id: int, what: str) -> None:
    """Add the access-log row to the caller's transaction: the service that builds a view showing
    the full ID logs the read in the same commit, so an outage cannot split the answer from its
    audit. Inserted at once, not at the next flush: the services' hot paths write in Core."""
    session.connection().execute(INSERT_READ, full_read(actor, person_id, what, utcnow()))


def full_read(actor: Actor, person_id: int, what: str, at: datetime) -> dict[str, Any]:
    """The parameters of ``INSERT_READ`` for one full-ID read, for a caller that writes the row
    within a statement of its own (``fire``'s one statement on PostgreSQL)."""
    return {
        "read_user_id": actor.user_id,
        "read_username": actor.username,
        "read_person_id": person_id,
        "read_what": what,
        "read_at": at,
    }


ACCESS_LOG = AccessLog.__table__
INSERT_READ = bound_insert(ACCESS_LOG, "read_")
