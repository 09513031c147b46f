"""How a request's transaction ends (casework/db.py ``end_read``): COMMIT when it only read,
otherwise left to the rollback that follows, so nothing written by a request that did not finish
its work is ever kept."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from casework.db import end_read
from casework.models import AccessLog
from tests.conftest import new_person, utc_now


def _access_rows(engine) -> int:
    with Session(engine) as fresh:
        return fresh.scalar(select(func.count()).select_from(AccessLog))


def test_a_transaction_that_only_read_ends_in_commit(engine):
    with Session(engine) as session:
        session.execute(select(func.count()).select_from(AccessLog))
        ended = []
        event.listen(session.connection(), "commit", lambda _connection: ended.append("commit"))
        end_read(session)
        assert ended == ["commit"] and not session.in_transaction()


def test_a_transaction_that_wrote_is_left_to_be_rolled_back(engine, session):
    person_id = new_person(session).id
    before = _access_rows(engine)
    with Session(engine) as request_session:
        row = {"user_id": None, "username": "probe", "person_id": person_id, "what": "case", "at": utc_now()}
        request_session.execute(insert(AccessLog).values(**row))
        end_read(request_session)
        assert request_session.in_transaction()  # still open: the caller's rollback ends it
        request_session.rollback()
    assert _access_rows(engine) == before


def test_a_transaction_the_database_aborted_is_left_to_be_rolled_back(engine, engine_name):
    if engine_name != "postgresql":
        pytest.skip("SQLite does not abort a transaction when one of its statements fails")
    with Session(engine) as session:
        with pytest.raises(DBAPIError):
            session.execute(text("SELECT 1 / 0"))
        end_read(session)  # no COMMIT of an aborted transaction, and no error
        assert session.in_transaction()
        session.rollback()
