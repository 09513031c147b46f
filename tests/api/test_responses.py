"""The case endpoints encode the services' views directly (api/responses.py) instead of dumping
them through their marshmallow schemas: here, for every shape a case view takes, the body a client
receives is exactly what the documented schema makes of the same view.

Each body is compared with ``Schema().dump(view)`` of the view the same service gives the same
actor, encoded as JSON: a field the view has and the schema lacks (a leak), a field the schema has
and the view lacks, or a date written another way would all show here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from api.schemas import CaseSchema, ReferralQueueItemSchema
from casework.services.auth import authenticate
from casework.services.cases import read_case
from casework.services.queries import CaseFilters, list_cases, referral_queue
from casework.views import case_view
from tests.api.helpers import iso
from tests.api.test_lifecycle import new_case, ok
from tests.casework.helpers import OESOPHAGEAL_ICD


def _as_json(value):
    return json.loads(json.dumps(value, default=str))


def _schema_json(schema, view):
    # marshmallow writes datetimes and dates as ISO strings itself; default=str only serves json.
    return _as_json(schema.dump(view))


@pytest.fixture
def shapes(client, session, logins):
    """A screened case, one at a hospital, one waiting with the city expert group."""
    coordinator, hospital, expert = logins["coordinator"], logins["hospital"], logins["city_expert"]
    screened = new_case(client, session, logins)
    treated = new_case(client, session, logins)
    referred = new_case(client, session, logins)
    for case in (treated, referred):
        diagnosis = {"diagnosis_code": OESOPHAGEAL_ICD, "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(2)}
        ok(case.fire(coordinator, "confirm", diagnosis))
        ok(case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "食管癌根治术"}))
        ok(case.fire(hospital, "admit", {"admitted_at": iso(1)}))
    ok(referred.fire(hospital, "refer", {"expert_group_id": expert.org_unit, "summary": "疑难病例"}), "referred")
    return screened, treated, referred


@pytest.mark.parametrize(
    "who",
    ["coordinator", "city_supervisor", "doctor", "hospital", "city_expert", "admin"],
)
def test_a_case_read_is_the_schemas_dump(client, session, logins, shapes, who):
    login = logins[who]
    session.rollback()
    actor = authenticate(session, login.token)
    shown = 0
    for case in shapes:
        response = case.get(login)
        if response.status_code == 404:  # not in this actor's scope
            continue
        view = read_case(session, actor, case.id)
        session.rollback()
        assert response.json == _schema_json(CaseSchema(), view)
        shown += 1
    assert shown  # every role here sees at least one of the cases


def test_a_written_case_is_the_schemas_dump(client, session, logins, shapes):
    """The answers to a transition and to a screening: a masked hospital view and an unmasked
    coordinator view with the birth date."""
    _, treated, _ = shapes
    hospital, coordinator = logins["hospital"], logins["coordinator"]
    moved = ok(treated.fire(hospital, "discharge", {"discharged_at": iso(0.5), "outcome": "improved"}), "treated")
    session.rollback()  # a new snapshot: the request committed after this session last read
    view = read_case(session, authenticate(session, hospital.token), treated.id)
    session.rollback()
    assert moved.json == _schema_json(CaseSchema(), view)
    assert moved.json["person"]["id_number_masked"] is True and "birth_date" not in moved.json["person"]

    screened = new_case(client, session, logins)
    first = screened.get(coordinator).json
    session.rollback()
    view = read_case(session, authenticate(session, coordinator.token), screened.id)
    session.rollback()
    assert first == _schema_json(CaseSchema(), view)
    assert first["person"]["id_number_masked"] is False and first["person"]["birth_date"]


@pytest.mark.parametrize("who", ["coordinator", "hospital", "city_expert", "admin"])
def test_a_list_page_is_the_schemas_dump(client, session, logins, shapes, who):
    login = logins[who]
    response = client.get("/api/v1/cases?limit=10", headers=login.headers)
    assert response.status_code == 200
    session.rollback()
    actor = authenticate(session, login.token)
    now = datetime.now(UTC)
    page, _ = list_cases(session, actor, CaseFilters(), 10, None, now)
    expected = [_schema_json(CaseSchema(), case_view(case, actor, now)) for case in page]
    session.rollback()
    assert response.json["items"] == expected and expected
    assert set(response.json) == {"items", "next_cursor"}


def test_the_referral_queue_is_the_schemas_dump(client, session, logins, shapes):
    expert = logins["city_expert"]
    response = client.get("/api/v1/queues/referrals", headers=expert.headers)
    assert response.status_code == 200
    session.rollback()
    actor = authenticate(session, expert.token)
    now = datetime.now(UTC)
    page, _ = referral_queue(session, actor, 50, None)
    expected = []
    for case in page:
        item = case_view(case, actor, now)
        item["age_hours"] = 0.0
        expected.append(_schema_json(ReferralQueueItemSchema(), item))
    session.rollback()
    served = response.json
    assert [item.pop("age_hours") >= 0 for item in served] == [True]
    assert served == [{k: v for k, v in item.items() if k != "age_hours"} for item in expected]
    assert served[0]["referral"]["expert_group"]["code"] == expert.org_unit
