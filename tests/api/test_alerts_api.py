"""Alerts and follow-up visits over HTTP: scoped like every other list."""

from __future__ import annotations

from datetime import timedelta

from api.extensions import db
from casework.db import utcnow
from casework.services.alerts import scan
from tests.api.helpers import iso
from tests.api.test_lifecycle import new_case
from tests.api.test_scoping import SEES


def test_alert_list_is_scoped_and_acknowledged_by_its_org_unit(app, client, session, logins):
    case = new_case(client, session, logins, screened_days_ago=20)  # past the 15-day limit
    with app.app_context():
        assert scan(db.session(), utcnow()).raised == 1
    for name, login in logins.items():
        if name in ("city_expert", "hospital"):
            continue  # never held this screened case
        items = client.get("/api/v1/alerts?status=open", headers=login.headers).json["items"]
        assert ([a["case_id"] for a in items] == [case.id]) is SEES[name], name
    [alert] = client.get(f"/api/v1/alerts?case_id={case.id}", headers=logins["coordinator"].headers).json["items"]
    assert (alert["rule"], alert["org_unit"], alert["level"]) == ("not_confirmed", logins["coordinator"].org_unit, 0)
    url = f"/api/v1/alerts/{alert['id']}/acknowledge"
    assert client.post(url, headers=logins["city_supervisor"].headers).status_code == 403
    assert client.post(url, headers=logins["other_coordinator"].headers).status_code == 404
    acked = client.post(url, headers=logins["coordinator"].headers)
    assert acked.status_code == 200 and acked.json["status"] == "acknowledged"
    assert client.get("/api/v1/alerts?status=bogus", headers=logins["coordinator"].headers).status_code == 422


def test_follow_up_visits(client, session, logins):
    case = new_case(client, session, logins, screened_days_ago=10)
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    url = f"/api/v1/cases/{case.id}/follow-ups"
    early = client.post(url, headers=coordinator.headers, json={"visited_at": iso(1), "findings": "x"})
    assert early.status_code == 409 and early.mimetype == "application/problem+json"
    case.fire(
        coordinator, "confirm", {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit, "diagnosed_at": iso(9)}
    )
    case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "p"})
    case.fire(hospital, "admit", {"admitted_at": iso(8)})
    case.fire(hospital, "discharge", {"discharged_at": iso(2), "outcome": "improved"})
    case.fire(hospital, "start_follow_up", {"interval_days": 30})
    visit = client.post(url, headers=logins["doctor"].headers, json={"visited_at": iso(0.1), "findings": "恢复良好"})
    assert visit.status_code == 201, visit.json
    assert visit.json["visitor"] == "doctor"
    future = client.post(
        url,
        headers=coordinator.headers,
        json={"visited_at": (utcnow() + timedelta(days=1)).isoformat(), "findings": "x"},
    )
    assert "visited_at" in future.json["errors"]
    listed = client.get(url, headers=hospital.headers).json
    assert [v["findings"] for v in listed] == ["恢复良好"]
    assert client.get(url, headers=logins["other_coordinator"].headers).status_code == 404
