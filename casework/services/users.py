"""Users and the actor each one acts as."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.actor import Actor
from casework.db import write_transaction
from casework.errors import Conflict, Forbidden, ValidationFailed
from casework.models import ROLES, OrgUnit, User
from casework.passwords import hash_password

# Which kind of org unit each role belongs to.
ROLE_ORG_KINDS = {
    "admin": None,
    "supervisor": ("province", "city", "county"),
    "county_coordinator": ("county",),
    "village_doctor": ("township", "village"),
    "hospital": ("hospital",),
    "expert": ("expert_group",),
}

MIN_PASSWORD_LENGTH = 10


def create_user(
    session: Session, actor: Actor, *, username: str, password: str, role: str, org_unit: str | None
) -> User:
    """Create a login; only admins (or the system, from the command line) may."""
    if actor.role != "admin":
        raise Forbidden("only administrators create users")
    if role not in ROLES:
        raise ValidationFailed.field("role", f"must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed.field("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    username = username.strip()
    if not username:
        raise ValidationFailed.field("username", "must not be empty")
    with write_transaction(session):
        kinds = ROLE_ORG_KINDS[role]
        if kinds is not None:
            unit = session.get(OrgUnit, org_unit or "")
            if unit is None or unit.kind not in kinds:
                raise ValidationFailed.field("org_unit", f"a {role} belongs to a {' or '.join(kinds)}")
        if session.scalar(select(User.id).where(User.username == username)):
            raise Conflict(f"user {username} exists")
        user = User(
            username=username,
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
