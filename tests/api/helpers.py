"""Driving cases over HTTP the way a client does: read the ETag, send it back in If-Match."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

from casework.db import utcnow
from tests.api.conftest import Login


def iso(days_ago: float = 0) -> str:
    return (utcnow() - timedelta(days=days_ago)).isoformat()


class HttpCase:
    def __init__(self, client: FlaskClient, case_id: int) -> None:
        self.client = client
        self.id = case_id

    def get(self, who: Login):
        return self.client.get(f"/api/v1/cases/{self.id}", headers=who.headers)

    def etag(self, who: Login) -> str:
        return self.get(who).headers["ETag"]

    def fire(
        self,
        who: Login,
        event: str,
        data: dict[str, Any] | None = None,
        reason: str | None = None,
        etag: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        body: dict[str, Any] = {"event": event, "data": data or {}}
        if reason is not None:
            body["reason"] = reason
        all_headers = {**who.headers, "If-Match": etag or self.etag(who), **(headers or {})}
        return self.client.post(f"/api/v1/cases/{self.id}/events", json=body, headers=all_headers)


def register_person(client: FlaskClient, who: Login, id_number: str, village: str, category: str = "poor_not_exited"):
    return client.post(
        "/api/v1/persons",
        headers=who.headers,
        json={
            "id_number": id_number,
            "name": "岩温",
            "village_code": village,
            "category": category,
            "category_since": "2016-03-01",
        },
    )


def screen_case(client: FlaskClient, who: Login, person_id: int, disease: str, days_ago: float = 3):
    return client.post(
        "/api/v1/cases",
        headers=who.headers,
        json={
            "person_id": person_id,
            "disease_code": disease,
            "source": "health_check",
            "screened_at": iso(days_ago),
        },
    )
