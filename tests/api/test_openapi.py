"""The OpenAPI document is valid and complete; the docs page needs no internet."""

from __future__ import annotations

from openapi_spec_validator import validate

CONTRACT_PATHS = {
    "/api/v1/auth/token": {"post"},
    "/api/v1/users": {"post"},
    "/api/v1/policies": {"get"},
    "/api/v1/policies/{code}": {"get"},
    "/api/v1/org-units": {"get"},
    "/api/v1/hospitals": {"get"},
    "/api/v1/expert-groups": {"get"},
    "/api/v1/persons": {"post"},
    "/api/v1/cases": {"get", "post"},
    "/api/v1/cases/{case_id}": {"get"},
    "/api/v1/cases/{case_id}/events": {"get", "post"},
    "/api/v1/queues/referrals": {"get"},
}


def test_document_validates_and_covers_the_contract(client):
    spec = client.get("/api/v1/openapi.json").json
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for path, methods in CONTRACT_PATHS.items():
        assert path in spec["paths"], path
        assert methods <= set(spec["paths"][path]), path
    events = spec["paths"]["/api/v1/cases/{case_id}/events"]["post"]["responses"]
    assert {"200", "403", "409", "412", "422", "428"} <= set(events)
    assert "allowed_events" in spec["components"]["schemas"]["Problem"]["properties"]


def test_docs_page_and_its_assets_are_served_locally(client):
    page = client.get("/api/v1/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "/api/v1/docs/assets/swagger-ui-bundle.js" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "cdn" not in html.lower()
    bundle = client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.data) > 100_000


def test_document_states_the_constraints_and_headers(client):
    spec = client.get("/api/v1/openapi.json").json
    schemas = spec["components"]["schemas"]
    assert schemas["Policy"]["properties"]["diseases"]["items"] == {"$ref": "#/components/schemas/DiseaseEntry"}
    person = schemas["NewPerson"]["properties"]
    assert (
        person["id_number"]["pattern"].endswith("[0-9Xx]$") and "check character" in person["id_number"]["description"]
    )
    assert person["village_code"]["pattern"] == "^[0-9]{12}$"
    assert schemas["NewSettlement"]["properties"]["total"]["pattern"] == r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
    assert set(schemas["CaseEvent"]["properties"]["event"]["enum"]) >= {"screen", "confirm", "reopen"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's own, not an operation
                continue
            responses = operation["responses"]
            assert "503" in responses and "Retry-After" in responses["503"]["headers"], (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"], (method, path)
            if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])):
                assert "Idempotent-Replayed" in responses["409"]["headers"], (method, path)
    fire = spec["paths"]["/api/v1/cases/{case_id}/events"]["post"]
    assert fire["operationId"] == "fire_event"
    assert fire["responses"]["200"]["headers"]["ETag"]["required"] is True
    assert "ETag" in fire["responses"]["412"]["headers"]
    screened = spec["paths"]["/api/v1/cases"]["post"]["responses"]["201"]
    assert {"ETag", "Location"} <= set(screened["headers"])
    assert screened["links"]["FireEvent"]["parameters"]["header.If-Match"] == "$response.header.ETag"
    registered = spec["paths"]["/api/v1/persons"]["post"]["responses"]["201"]
    assert registered["links"]["ScreenCase"]["requestBody"] == {"person_id": "$response.body#/id"}


def test_money_is_taken_only_as_the_document_writes_it():
    """The pattern is the rule: "1e5" and "+7" were amounts to Decimal, and are not to the document."""
    from api.settlements import NewSettlementSchema

    schema = NewSettlementSchema()
    base = {"discharged_at": "2026-01-02T00:00:00+00:00", "referral_compliant": True, "special_treatment": False}
    for bad in ("1e5", "+7", " 7", "7.", "1234567890123", "1.005", "-1"):
        errors = schema.validate({**base, "total": bad, "in_policy": "0", "own_payment": "0"})
        assert "total" in errors, bad
    assert not schema.validate({**base, "total": "123456789012.50", "in_policy": "0", "own_payment": "0"})
