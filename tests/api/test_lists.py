"""Case lists: filters and keyset pagination that stays stable while cases are added."""

from __future__ import annotations

from tests.api.helpers import iso
from tests.api.test_lifecycle import new_case


def test_pagination_is_stable_under_concurrent_inserts(client, session, logins):
    who = logins["coordinator"]
    ids = [new_case(client, session, logins).id for _ in range(5)]
    first = client.get("/api/v1/cases?limit=2", headers=who.headers).json
    assert [c["id"] for c in first["items"]] == ids[::-1][:2] and first["next_cursor"]
    new_case(client, session, logins)  # arrives while the client pages
    second = client.get(f"/api/v1/cases?limit=2&cursor={first['next_cursor']}", headers=who.headers).json
    third = client.get(f"/api/v1/cases?limit=2&cursor={second['next_cursor']}", headers=who.headers).json
    seen = [c["id"] for page in (first, second, third) for c in page["items"]]
    assert seen == ids[::-1] and third["next_cursor"] is None


def test_filters(client, session, logins):
    who = logins["coordinator"]
    screened = new_case(client, session, logins)
    confirmed = new_case(client, session, logins, screened_days_ago=40)
    confirmed.fire(
        who,
        "confirm",
        {"diagnosis_code": "C15.9", "diagnosed_by": logins["hospital"].org_unit, "diagnosed_at": iso(30)},
    )  # diagnosed a month ago: 7-day deadline passed

    def ids(query):
        response = client.get(f"/api/v1/cases?{query}", headers=who.headers)
        assert response.status_code == 200, response.json
        return {c["id"] for c in response.json["items"]}

    assert ids("state=screened") == {screened.id}
    assert ids("overdue=true") == {confirmed.id}
    assert ids(f"region={who.org_unit}") == {screened.id, confirmed.id}
    assert ids("region=320921") == set()
    assert "state" in client.get("/api/v1/cases?state=lost", headers=who.headers).json["errors"]
    assert "limit" in client.get("/api/v1/cases?limit=501", headers=who.headers).json["errors"]
    assert "cursor" in client.get("/api/v1/cases?cursor=bogus", headers=who.headers).json["errors"]
