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
