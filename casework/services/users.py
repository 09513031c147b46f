"""Users and the actor each one acts as."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import write_transaction
from casework.errors import Conflict, Forbidden, ValidationFailed
from casework.models import ROLES, OrgUnit, User
from casework.passwords import hash_password, password_problem

# Which kind of org unit each role belongs to.
ROLE_ORG_KINDS = {
    "admin": None,
    "supervisor": ("province", "city", "county"),
    "county_coordinator": ("county",),
    "village_doctor": ("township", "village"),
    "hospital": ("hospital",),
    "expert": ("expert_group",),
}

# After NFKC and lower-casing: ASCII letters, digits and . _ @ - only. Names are typed by people
# from a list the admin hands out; ASCII rules out look-alike letters of other scripts.
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,79}$")
# Look-alikes left inside ASCII, folded to one letter for the duplicate check ("rn" reads as "m").
_CONFUSABLE = (("rn", "m"), ("0", "o"), ("1", "l"), ("i", "l"), ("_", "."), ("-", "."))


def normalise_username(username: str) -> str | None:
    """The canonical form of a user name, or None when it is not a valid one."""
    name = unicodedata.normalize("NFKC", username).strip().lower()
    return name if _USERNAME.match(name) else None


def _skeleton(expression):
    for seen, folded in _CONFUSABLE:
        expression = func.replace(expression, seen, folded)
    return expression


def _skeleton_of(name: str) -> str:
    for seen, folded in _CONFUSABLE:
        name = name.replace(seen, folded)
    return name


def create_user(
    session: Session, actor: Actor, *, username: str, password: str, role: str, org_unit: str | None
) -> User:
    """Create a login; only admins (or the system, from the command line) may."""
    if actor.role != "admin":
        raise Forbidden("only administrators create users")
    if role not in ROLES:
        raise ValidationFailed.field("role", f"must be one of {', '.join(ROLES)}")
    name = normalise_username(username)
    if name is None:
        raise ValidationFailed.field("username", "1 to 80 of a-z, 0-9 and . _ @ -, starting with a letter or digit")
    problem = password_problem(password, name)
    if problem:
        raise ValidationFailed.field("password", problem)
    with write_transaction(session):
        kinds = ROLE_ORG_KINDS[role]
        if kinds is not None:
            unit = session.get(OrgUnit, org_unit or "")
            if unit is None or unit.kind not in kinds:
                raise ValidationFailed.field("org_unit", f"a {role} belongs to a {' or '.join(kinds)}")
        if session.scalar(select(User.id).where(User.username == name)):
            raise Conflict(f"user {name} exists")
        # A name that reads like an existing one ("rn" for "m", "0" for "o") invites impersonation.
        if session.scalar(select(User.id).where(_skeleton(func.lower(User.username)) == _skeleton_of(name)).limit(1)):
            raise ValidationFailed.field("username", "too much like an existing user name")
        user = User(
            username=name,
            password_hash=hash_password(password),
            role=role,
            org_unit_code=org_unit if kinds else None,
        )
        session.add(user)
        session.flush()
    return user


def actor_for(user: User) -> Actor:
    unit = user.org_unit
    return Actor(user.id, user.username, user.role, user.org_unit_code or "", unit.kind if unit else "system")
