"""An app and a client per engine, and a logged-in user for every role in the demo region."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

import pytest
from sqlalchemy.orm import Session

from api.app import create_app
from casework.db import utcnow
from casework.models import AuthToken, OrgUnit, User
from casework.passwords import hash_password
from tests.casework.helpers import designated_hospital, expert_group
from tests.conftest import DEHONG, LONGCHUAN, YUNNAN, village_of

PASSWORD = "correct horse battery"


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def app(db_url, session):
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "TESTING": True})
    yield app
    with app.app_context():
        from api.extensions import db

        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class Login:
    username: str
    role: str
    org_unit: str | None
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def add_login(session: Session, username: str, role: str, org_unit: str | None) -> Login:
    """A user with a live token, written directly: the login endpoint has tests of its own."""
    user = User(username=username, password_hash=password_hash(), role=role, org_unit_code=org_unit)
    session.add(user)
    session.flush()
    token = secrets.token_urlsafe(24)
    now = utcnow()
    session.add(
        AuthToken(
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            user_id=user.id,
            issued_at=now,
            expires_at=now + timedelta(hours=1),
        )
    )
    session.commit()
    return Login(username, role, org_unit, token)


@pytest.fixture
def logins(session) -> dict[str, Login]:
    """Everyone who matters to a Longchuan case, and some who must not see it."""
    village = session.get(OrgUnit, village_of(session, LONGCHUAN))
    people = {
        "admin": ("admin", None),
        "coordinator": ("county_coordinator", LONGCHUAN),
        "other_coordinator": ("county_coordinator", "320921"),
        "doctor": ("village_doctor", village.parent_code),
        "other_doctor": ("village_doctor", village_of(session, "320921")),
        "hospital": ("hospital", designated_hospital(session, "county")),
        "city_hospital": ("hospital", designated_hospital(session, "municipal")),
        "city_expert": ("expert", expert_group(session, DEHONG)),
        "province_expert": ("expert", expert_group(session, YUNNAN)),
        "city_supervisor": ("supervisor", DEHONG),
        "province_supervisor": ("supervisor", YUNNAN),
        "other_supervisor": ("supervisor", "320000"),
    }
    return {name: add_login(session, name, role, unit) for name, (role, unit) in people.items()}
