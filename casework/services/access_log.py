"""Reading the access log: who saw which person's full record, when, and through which path.

Logging that nobody can read is half of the duty (PIPL): administrators read all of it, a county's
coordinator the reads of their own county's residents.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.errors import Forbidden
from casework.models import AccessLog, Person
from casework.scope import org_subtree
from casework.services.queries import newest_first_page


def _readable(actor: Actor) -> ColumnElement[bool]:
    if actor.role == "admin":
        return true()
    if actor.role == "county_coordinator" and actor.org_kind == "county":
        residents = select(Person.id).where(Person.village_code.in_(org_subtree(actor.org_unit_code)))
        return AccessLog.person_id.in_(residents)
    raise Forbidden("administrators and county coordinators read the access log")


def list_access(
    session: Session,
    actor: Actor,
    person_id: int | None = None,
    username: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> tuple[Sequence[AccessLog], int | None]:
    """Reads of full records, newest first, by keyset on the log's id."""
    query = select(AccessLog).where(_readable(actor))
    if person_id is not None:
        query = query.where(AccessLog.person_id == person_id)
    if username:
        query = query.where(AccessLog.username == username)
    return newest_first_page(session, query, AccessLog.id, limit, before_id)
