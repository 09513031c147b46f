"""The access-log reader: administrators see every full-record read, a county coordinator the
reads of their own county's residents, nobody else any."""

from __future__ import annotations

from datetime import date

from casework.id_number import make_id_number
from tests.api.helpers import register_person
from tests.conftest import LONGCHUAN, village_of

URL = "/api/v1/access-log"


def test_who_read_which_full_record(client, session, logins):
    admin, coordinator = logins["admin"], logins["coordinator"]
    other = logins["other_coordinator"]
    mine = register_person(client, coordinator, make_id_number(LONGCHUAN, date(1959, 2, 3), 551),
                           village_of(session, LONGCHUAN)).json
    theirs = register_person(client, other, make_id_number("320921", date(1959, 2, 3), 553),
                             village_of(session, "320921")).json
    for _ in range(2):
        assert client.get(f"/api/v1/persons/{mine['id']}", headers=coordinator.headers).status_code == 200
    assert client.get(f"/api/v1/persons/{mine['id']}", headers=admin.headers).status_code == 200
    assert client.get(f"/api/v1/persons/{theirs['id']}", headers=admin.headers).status_code == 200
    # A masked read is not a full read: the village doctor's look is not logged.
    assert client.get(f"/api/v1/persons/{mine['id']}", headers=logins["doctor"].headers).status_code == 200

    everything = client.get(URL, headers=admin.headers).json["items"]
    # registration (coordinator, other), two coordinator reads, two admin reads: newest first
    assert [(e["user"], e["person_id"]) for e in everything] == [
        ("admin", theirs["id"]),
        ("admin", mine["id"]),
        ("coordinator", mine["id"]),
        ("coordinator", mine["id"]),
        ("other_coordinator", theirs["id"]),
        ("coordinator", mine["id"]),
    ]
    assert {e["path"] for e in everything} == {"person"}

    county = client.get(URL, headers=coordinator.headers).json["items"]
    assert {e["person_id"] for e in county} == {mine["id"]} and len(county) == 4
    assert client.get(URL, query_string={"person_id": theirs["id"]}, headers=coordinator.headers).json["items"] == []
    by_admin = client.get(URL, query_string={"user": "admin", "person_id": mine["id"]}, headers=admin.headers)
    assert [e["user"] for e in by_admin.json["items"]] == ["admin"]

    first = client.get(URL, query_string={"limit": 4}, headers=admin.headers).json
    rest = client.get(URL, query_string={"limit": 4, "cursor": first["next_cursor"]}, headers=admin.headers).json
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in everything]
    assert rest["next_cursor"] is None

    for name in ("doctor", "hospital", "city_supervisor", "city_expert"):
        answer = client.get(URL, headers=logins[name].headers)
        assert answer.status_code == 403 and answer.mimetype == "application/problem+json", name
