"""An integrator's client: generated with openapi-python-client from the document the running server
serves, imported, and driven through a case's life. Every answer must parse into the model the
document names for its status - a field the document gets wrong (a date that is not ISO 8601, an
array without items, a status or header it leaves out) breaks a generated client, not just a test.
"""

from __future__ import annotations

import importlib
import itertools
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from types import ModuleType, SimpleNamespace

import pytest

from casework.db import utcnow
from casework.id_number import make_id_number
from tests.api.conftest import PASSWORD
from tests.casework.helpers import OESOPHAGEAL, OESOPHAGEAL_ICD
from tests.conftest import LONGCHUAN, village_of
from tests.gauntlet.served import Server

pytest.importorskip("openapi_python_client", reason="openapi-python-client is a dev dependency (make test)")

_births = itertools.count()
# The generator's only other output is ruff formatting the result: not wanted, and it would warn
# when ruff is not on PATH.
GENERATOR_CONFIG = "post_hooks: []\n"


@pytest.fixture(scope="module")
def served(db_url, tmp_path_factory) -> Iterator[Server]:
    server = Server(db_url, tmp_path_factory.mktemp("served"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def generated(served, tmp_path_factory) -> ModuleType:
    """The client package, generated from what the server serves at /api/v1/openapi.json."""
    work = tmp_path_factory.mktemp("client")
    with urllib.request.urlopen(served.base + "/api/v1/openapi.json", timeout=30) as response:
        (work / "openapi.json").write_bytes(response.read())
    (work / "generator.yaml").write_text(GENERATOR_CONFIG)
    package = f"casework_client_{served.port}"
    arguments = ["--path", "openapi.json", "--output-path", package, "--meta", "none", "--config", "generator.yaml"]
    run = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", *arguments],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(work))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(work))


def _import(client: ModuleType, *names: str) -> SimpleNamespace:
    """Generated modules by their path below the package: ``api.cases.fire_event``, ``models``."""
    return SimpleNamespace(**{n.rsplit(".", 1)[-1]: importlib.import_module(f"{client.__name__}.{n}") for n in names})


def _login(client: ModuleType, served: Server, username: str):
    api = _import(client, "api.auth.login", "models")
    anonymous = client.Client(base_url=served.base, raise_on_unexpected_status=True)
    answer = api.login.sync_detailed(client=anonymous, body=api.models.Login(username=username, password=PASSWORD))
    assert answer.status_code == 200 and isinstance(answer.parsed, api.models.Token), answer.content
    assert answer.parsed.expires_at > utcnow()
    return client.AuthenticatedClient(base_url=served.base, token=answer.parsed.token, raise_on_unexpected_status=True)


def _screened_case(client: ModuleType, as_coordinator, session):
    """Register a person and screen a case through the generated client; the case and its ETag."""
    api = _import(client, "api.persons.register_person", "api.cases.screen_case", "models")
    m = api.models
    number = make_id_number(LONGCHUAN, date(1958, 1, 1) + timedelta(days=next(_births)), 215)
    person = api.register_person.sync_detailed(
        client=as_coordinator,
        body=m.NewPerson(
            id_number=number,
            name="岩温",
            village_code=village_of(session, LONGCHUAN),
            category=m.NewPersonCategory.POOR_NOT_EXITED,
            category_since=date(2016, 3, 1),
        ),
    )
    assert person.status_code == 201 and isinstance(person.parsed, m.PersonBrief), person.content
    assert person.headers["Location"] == f"/api/v1/persons/{person.parsed.id}"
    case = api.screen_case.sync_detailed(
        client=as_coordinator,
        body=m.NewCase(
            person_id=person.parsed.id,
            disease_code=OESOPHAGEAL,
            source=m.NewCaseSource.HEALTH_CHECK,
            screened_at=utcnow() - timedelta(days=5),
        ),
    )
    assert case.status_code == 201 and isinstance(case.parsed, m.Case), case.content
    assert case.parsed.state == m.CaseState.SCREENED and case.parsed.person.id == person.parsed.id
    assert case.headers["ETag"] == '"1"' and case.headers["Location"] == f"/api/v1/cases/{case.parsed.id}"
    return case.parsed, case.headers["ETag"]


def _event(m: ModuleType, event: str, data: dict | None = None, reason: str | None = None):
    body = m.EventRequest(event=m.EventRequestEvent(event), data=m.EventRequestData.from_dict(data or {}))
    if reason is not None:
        body.reason = reason
    return body


def _confirm(m: ModuleType, hospital: str):
    return _event(
        m,
        "confirm",
        {
            "diagnosis_code": OESOPHAGEAL_ICD,
            "diagnosed_by": hospital,
            "diagnosed_at": (utcnow() - timedelta(days=4)).isoformat(),
        },
    )


def test_case_lifecycle_through_the_generated_client(generated, served, session, logins):
    api = _import(
        generated,
        "api.cases.fire_event",
        "api.cases.get_case",
        "api.cases.list_case_events",
        "api.cases.list_cases",
        "api.settlements.record_settlement",
        "api.alerts.list_alerts",
        "api.reference.get_policy",
        "models",
    )
    m = api.models
    coordinator = _login(generated, served, logins["coordinator"].username)
    hospital = _login(generated, served, logins["hospital"].username)
    hospital_code = logins["hospital"].org_unit
    case, etag = _screened_case(generated, coordinator, session)

    # Confirm with If-Match: the new case and the new ETag.
    confirmed = api.fire_event.sync_detailed(
        case.id, client=coordinator, body=_confirm(m, hospital_code), if_match=etag
    )
    assert confirmed.status_code == 200 and isinstance(confirmed.parsed, m.Case), confirmed.content
    assert confirmed.parsed.state == m.CaseState.CONFIRMED and confirmed.parsed.version == 2
    assert confirmed.headers["ETag"] == '"2"'

    # The same request again, with the ETag it has outdated: 412, read as the problem model.
    stale = api.fire_event.sync_detailed(case.id, client=coordinator, body=_confirm(m, hospital_code), if_match=etag)
    assert stale.status_code == 412 and isinstance(stale.parsed, m.Problem), stale.content
    assert stale.parsed.status == 412 and stale.parsed.current_version == 2 and stale.headers["ETag"] == '"2"'

    # An event the state does not allow: 409, with what is allowed.
    illegal = api.fire_event.sync_detailed(
        case.id, client=coordinator, body=_event(m, "close", reason="治愈"), if_match='"2"'
    )
    assert illegal.status_code == 409 and isinstance(illegal.parsed, m.Problem), illegal.content
    assert "assign" in illegal.parsed.allowed_events

    # Invalid data: 422 naming the field.
    invalid = api.fire_event.sync_detailed(
        case.id, client=coordinator, body=_event(m, "assign", {"plan": "x"}), if_match='"2"'
    )
    assert invalid.status_code == 422 and isinstance(invalid.parsed, m.Problem), invalid.content
    assert "data.hospital_id" in invalid.parsed.errors.to_dict()

    # On to a stay the hospital can bill.
    version = 2
    for who, event, data in (
        (coordinator, "assign", {"hospital_id": hospital_code, "plan": "食管癌根治术"}),
        (hospital, "admit", {"admitted_at": (utcnow() - timedelta(days=3)).isoformat()}),
        (hospital, "discharge", {"discharged_at": (utcnow() - timedelta(days=1)).isoformat(), "outcome": "improved"}),
    ):
        moved = api.fire_event.sync_detailed(case.id, client=who, body=_event(m, event, data), if_match=f'"{version}"')
        assert moved.status_code == 200 and isinstance(moved.parsed, m.Case), moved.content
        version = moved.parsed.version
    assert moved.parsed.state == m.CaseState.TREATED and moved.parsed.hospital.code == hospital_code

    read = api.get_case.sync_detailed(case.id, client=coordinator)
    assert isinstance(read.parsed, m.Case) and read.headers["ETag"] == f'"{version}"'
    assert read.parsed.allowed_events and read.parsed.person.id_number_masked is False
    history = api.list_case_events.sync_detailed(case.id, client=coordinator)
    assert [e.event for e in history.parsed] == ["screen", "confirm", "assign", "admit", "discharge"]
    assert all(isinstance(e, m.CaseEvent) for e in history.parsed)
    assert history.parsed[1].to_state == m.CaseEventToState.CONFIRMED

    bill = api.record_settlement.sync_detailed(
        case.id,
        client=hospital,
        body=m.NewSettlement(
            admitted_at=utcnow() - timedelta(days=3),
            discharged_at=utcnow() - timedelta(days=1),
            referral_compliant=True,
            special_treatment=False,
            total="20000.00",
            in_policy="18000.00",
            basic_insurance="16200.00",
            own_payment="3800.00",
        ),
    )
    assert bill.status_code == 201 and isinstance(bill.parsed, m.Settlement), bill.content
    assert bill.parsed.total == "20000.00" and bill.parsed.recorded.own_payment == "3800.00"
    assert all(isinstance(floor, m.Floor) for floor in bill.parsed.floors)
    assert isinstance(bill.parsed.year, m.Year)

    listed = api.list_cases.sync_detailed(client=coordinator, limit=1)
    assert isinstance(listed.parsed, m.CaseList) and [c.id for c in listed.parsed.items] == [case.id]

    alerts = api.list_alerts.sync_detailed(client=coordinator)
    assert alerts.status_code == 200 and isinstance(alerts.parsed, m.AlertList), alerts.content
    assert all(isinstance(alert, m.Alert) for alert in alerts.parsed.items)

    policy = api.get_policy.sync_detailed(case.policy, client=coordinator)
    assert isinstance(policy.parsed, m.Policy), policy.content
    assert OESOPHAGEAL in {d.code for d in policy.parsed.diseases}
    assert all(isinstance(d, m.DiseaseEntry) for d in policy.parsed.diseases)


def test_keyed_transition_parses(generated, served, session, logins):
    """A transition sent with an Idempotency-Key, and its replay, parse like any other answer.

    Needs the stored answer to be the serialised one (dates ISO 8601): the fix in
    api/idempotency.py. Before it, the generated client failed to read these dates."""
    api = _import(generated, "api.cases.fire_event", "models")
    m = api.models
    coordinator = _login(generated, served, logins["coordinator"].username)
    case, etag = _screened_case(generated, coordinator, session)
    body = _confirm(m, logins["hospital"].org_unit)
    key = f"confirm-{case.id}"

    first = api.fire_event.sync_detailed(case.id, client=coordinator, body=body, if_match=etag, idempotency_key=key)
    assert first.status_code == 200 and isinstance(first.parsed, m.Case), first.content
    assert first.parsed.state == m.CaseState.CONFIRMED and first.headers["ETag"] == '"2"'

    again = api.fire_event.sync_detailed(case.id, client=coordinator, body=body, if_match=etag, idempotency_key=key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert isinstance(again.parsed, m.Case) and again.parsed.to_dict() == first.parsed.to_dict()
    assert again.headers["ETag"] == '"2"'

    other = api.fire_event.sync_detailed(
        case.id, client=coordinator, body=_event(m, "exclude", reason="误报"), if_match=etag, idempotency_key=key
    )
    assert other.status_code == 422 and isinstance(other.parsed, m.Problem), other.content
    assert "Idempotency-Key" in other.parsed.errors.to_dict()
