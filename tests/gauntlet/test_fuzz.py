"""5. Fuzzing: schemathesis over /api/v1/openapi.json, against the Flask app (WSGI), as a county
coordinator. A bounded, derandomized number of examples per operation, valid and invalid: no 5xx,
every error application/problem+json, every response as the document describes it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.gauntlet.conftest import open_cases

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

pytestmark = pytest.mark.slow


@pytest.fixture
def served_app(db_url, session):
    """The app as production builds it (no TESTING flag)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url})
    yield app
    with app.app_context():
        from api.extensions import db

        db.engine.dispose()


def _fuzz(operation, app, token: str, mode: GenerationMode) -> None:
    strategy = operation.as_strategy(generation_mode=mode, headers={"Authorization": f"Bearer {token}"})

    @given(case=strategy)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call(app=app)
        if response.status_code >= 400:
            content_type = ",".join(response.headers.get("content-type", []))
            assert content_type == "application/problem+json", (
                f"{case.method} {case.formatted_path} → {response.status_code} {content_type}: {response.text[:300]}"
            )
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # an operation without parameters has no invalid input: nothing to fuzz there


def test_openapi_fuzz(served_app, client, session, logins):
    open_cases(client, session, logins, 3)  # something to find for ids 1, 2, 3 …
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", served_app)
    failures = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Revoking the fuzzer's own token would turn every later answer into 401: another login.
        who = logins["other_coordinator"] if operation.path.endswith("/auth/revoke") else logins["coordinator"]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, served_app, who.token, mode)
            except (Exception, BaseExceptionGroup) as exc:  # every operation is fuzzed; failures are reported together
                failures.append(f"--- {operation.label} ({mode.value}):\n{str(exc)[:2500]}")
    assert operations >= 12
    assert not failures, f"{len(failures)} failing:\n" + "\n".join(failures)


@pytest.mark.parametrize(
    ("method", "url", "body", "expected"),
    [
        ("GET", "/api/v1/cases/99999999999999999999999", None, {404}),
        ("GET", "/api/v1/persons/9223372036854775808", None, {404}),
        ("GET", "/api/v1/cases?cursor=eyJiZWZvcmUiOiA5OTk5OTk5OTk5OTk5OTk5OTk5OTk5fQ", None, {422}),
        ("GET", "/api/v1/alerts?case_id=99999999999999999999999", None, {422}),
        ("GET", "/api/v1/org-units?parent=%00", None, {200, 422}),  # SQLite stores NUL; PostgreSQL cannot
        ("POST", "/api/v1/auth/token", {"username": "a\x00b", "password": "x"}, {401, 422}),
        (
            "POST",
            "/api/v1/cases",
            {"person_id": 2**70, "disease_code": "x", "source": "other", "screened_at": "2026-01-01T00:00:00+00:00"},
            {422},
        ),
    ],
)
def test_values_the_database_cannot_hold_are_client_errors(client, logins, method, url, body, expected):
    """Found by the fuzzer: each of these was a 500 (OverflowError on SQLite, DataError on PostgreSQL)."""
    response = client.open(url, method=method, json=body, headers=logins["coordinator"].headers)
    assert response.status_code in expected, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/problem+json"
