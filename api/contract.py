"""What the OpenAPI document says beyond each view's own schemas: the shapes of codes the request
schemas check, and, per operation, its id, the answers any operation can give (with their
headers) and the links from one operation's answer to the next request.

Integrators generate clients from the document (docs/integration.md), so an answer the API can
give but the document leaves out is an answer their client cannot read. The rules here are
the API's cross-cutting behaviour - authentication (api/auth.py), problem+json errors and the
database-unavailable answer (api/problems.py), Idempotency-Key (api/idempotency.py) - written
down once instead of repeated on every view.
"""

from __future__ import annotations

import http
from typing import Any

from apispec import BasePlugin

# Codes as the demo region and the policy packs write them (workflows/demo/region.yaml).
REGION_CODE = r"^[0-9]{6}([0-9]{3}([0-9]{3})?)?$"  # province/city/county (GB/T 2260), township (9), village (12)
VILLAGE_CODE = r"^[0-9]{12}$"
HOSPITAL_CODE = r"^H[0-9]{6}([0-9]{3})?-[0-9]{2}$"  # H<region or township code>-NN
EXPERT_GROUP_CODE = r"^EG[0-9]{6}$"  # EG<region code>
ORG_UNIT_CODE = r"^([0-9]{6}([0-9]{3}([0-9]{3})?)?|H[0-9]{6}([0-9]{3})?-[0-9]{2}|EG[0-9]{6})$"
POLICY_CODE = r"^[a-z]+-[0-9]{4}$"
DISEASE_CODE = r"^[a-z][a-z0-9_]{0,59}$"
# GB 11643: area (a province-level division), birth date, sequence, check character. The check
# character (ISO 7064 MOD 11-2), the calendar (no 31 February) and "born by today" are beyond a
# pattern: the server checks them and names id_number when they fail.
ID_NUMBER = (
    r"^(1[1-5]|2[1-3]|3[1-7]|4[1-6]|5[0-4]|6[1-5]|71|8[12])[0-9]{4}"
    r"(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]$"
)
# api/cases.py encode_cursor: unpadded base64url. Only the server can tell one it gave out.
CURSOR = r"^[A-Za-z0-9_-]{1,200}$"
# An ETag sent back: the version in quotes, weak or not.
IF_MATCH = r'^(W/)?"[0-9]{1,18}"$'
MONEY = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"  # yuan; the database column holds 12 digits before the point

_PROBLEM = {"application/problem+json": {"schema": "Problem"}}
_STRING = {"type": "string"}
WWW_AUTHENTICATE = {"description": "Bearer", "schema": _STRING, "required": True}
RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "string", "pattern": r"^[0-9]+$"}}
ETAG = {
    "description": 'the case\'s version as an ETag, like "3": send it back in If-Match',
    "schema": {"type": "string", "pattern": r'^"[0-9]+"$'},
    "required": True,
}
LOCATION = {"description": "where the new (or the existing) resource is", "schema": _STRING, "required": True}
REPLAYED = {
    "description": "true when this is the stored first answer to the same Idempotency-Key and body",
    "schema": {"type": "string", "enum": ["true"]},
}
IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "retry-safe key (draft-ietf-httpapi-idempotency-key-header): the same key and body replay "
    "the first answer, with Idempotent-Replayed: true; another body under the key is 422; the same key "
    "while the first request still runs is 409 with Retry-After. Kept 24 hours.",
}

CASES, CASE, EVENTS = "/api/v1/cases", "/api/v1/cases/{case_id}", "/api/v1/cases/{case_id}/events"
PERSONS, SETTLEMENTS = "/api/v1/persons", "/api/v1/cases/{case_id}/settlements"
FOLLOW_UPS = "/api/v1/cases/{case_id}/follow-ups"
ASSISTANCE = "/api/v1/cases/{case_id}/assistance"
ASSISTANCE_EVENTS = "/api/v1/assistance/{application_id}/events"


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


# (path, method) → operationId: the generated clients' function names.
OPERATION_IDS = {
    ("/api/v1/auth/token", "post"): "login",
    ("/api/v1/auth/revoke", "post"): "logout",
    ("/api/v1/users", "post"): "create_user",
    (CASES, "get"): "list_cases",
    (CASES, "post"): "screen_case",
    (CASE, "get"): "get_case",
    (EVENTS, "get"): "list_case_events",
    (EVENTS, "post"): "fire_event",
    ("/api/v1/queues/referrals", "get"): "referral_queue",
    (PERSONS, "post"): "register_person",
    ("/api/v1/persons/{person_id}", "get"): "get_person",
    ("/api/v1/policies", "get"): "list_policies",
    ("/api/v1/policies/{code}", "get"): "get_policy",
    ("/api/v1/org-units", "get"): "list_org_units",
    ("/api/v1/hospitals", "get"): "list_hospitals",
    ("/api/v1/expert-groups", "get"): "list_expert_groups",
    ("/api/v1/alerts", "get"): "list_alerts",
    ("/api/v1/alerts/{alert_id}/acknowledge", "post"): "acknowledge_alert",
    (FOLLOW_UPS, "get"): "list_follow_ups",
    (FOLLOW_UPS, "post"): "record_follow_up",
    (SETTLEMENTS, "get"): "list_settlements",
    (SETTLEMENTS, "post"): "record_settlement",
    ("/api/v1/stats", "get"): "county_stats",
}

# The views wrapped in api.idempotency.idempotent.
IDEMPOTENT = {
    (CASES, "post"),
    (EVENTS, "post"),
    (PERSONS, "post"),
    (FOLLOW_UPS, "post"),
    (SETTLEMENTS, "post"),
    (ASSISTANCE, "post"),
    (ASSISTANCE_EVENTS, "post"),
}
PUBLIC = {("/api/v1/auth/token", "post")}

# (path, method) → {status: {header: definition}}: the headers each answer carries.
HEADERS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("/api/v1/auth/token", "post"): {"429": {"Retry-After": {**RETRY_AFTER, "required": True}}},
    ("/api/v1/users", "post"): {"201": {"Location": LOCATION}},
    (CASES, "post"): {"201": {"Location": LOCATION, "ETag": ETAG}},
    (CASE, "get"): {"200": {"ETag": ETAG}},
    (EVENTS, "post"): {"200": {"ETag": ETAG}, "412": {"ETag": {**ETAG, "description": "the current version"}}},
    (PERSONS, "post"): {
        "201": {"Location": LOCATION},
        "409": {
            "Location": {
                **LOCATION,
                "required": False,
                "description": "the person already registered, when you may see them; absent otherwise",
            }
        },
    },
    (SETTLEMENTS, "post"): {"201": {"Location": LOCATION}},
    ("/api/v1/imports/persons", "post"): {"202": {"Location": {**LOCATION, "description": "the job to follow"}}},
}

_CASE_ID = "$response.body#/id"
_CASE_LINKS = {
    "GetCase": {"operationRef": _ref(CASE, "get"), "parameters": {"path.case_id": _CASE_ID}},
    "CaseHistory": {"operationRef": _ref(EVENTS, "get"), "parameters": {"path.case_id": _CASE_ID}},
    "FireEvent": {
        "operationRef": _ref(EVENTS, "post"),
        "parameters": {"path.case_id": _CASE_ID, "header.If-Match": "$response.header.ETag"},
        "description": "fire an event on this case, at this version",
    },
    "CaseSettlements": {"operationRef": _ref(SETTLEMENTS, "get"), "parameters": {"path.case_id": _CASE_ID}},
    "CaseFollowUps": {"operationRef": _ref(FOLLOW_UPS, "get"), "parameters": {"path.case_id": _CASE_ID}},
}
# (path, method, status) → links: how a client (or a stateful fuzzer) walks from one answer on.
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    (PERSONS, "post", "201"): {
        "ScreenCase": {
            "operationRef": _ref(CASES, "post"),
            "requestBody": {"person_id": "$response.body#/id"},
            "description": "screen a case for the person just registered",
        },
        "GetPerson": {
            "operationRef": _ref("/api/v1/persons/{person_id}", "get"),
            "parameters": {"path.person_id": "$response.body#/id"},
        },
    },
    (CASES, "post", "201"): _CASE_LINKS,
    (CASE, "get", "200"): _CASE_LINKS,
    (EVENTS, "post", "200"): _CASE_LINKS,
    (CASES, "get", "200"): {
        "FirstCase": {
            "operationRef": _ref(CASE, "get"),
            "parameters": {"path.case_id": "$response.body#/items/0/id"},
        },
        "NextPage": {
            "operationRef": _ref(CASES, "get"),
            "parameters": {"query.cursor": "$response.body#/next_cursor"},
        },
    },
    ("/api/v1/imports/persons", "post", "202"): {
        "GetImport": {
            "operationRef": _ref("/api/v1/imports/{job_id}", "get"),
            "parameters": {"path.job_id": "$response.body#/id"},
            "description": "follow the import: progress while running, then totals and the report",
        },
    },
    ("/api/v1/alerts", "get", "200"): {
        "AcknowledgeFirst": {
            "operationRef": _ref("/api/v1/alerts/{alert_id}/acknowledge", "post"),
            "parameters": {"path.alert_id": "$response.body#/items/0/id"},
        },
    },
}


def _response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": dict(_PROBLEM)}
    if headers:
        response["headers"] = dict(headers)
    return response


class ContractPlugin(BasePlugin):
    """Adds to every operation what api/auth.py, api/problems.py and api/idempotency.py make it
    answer, and the ids, headers and links above."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            key = (path or "", method)
            if key in OPERATION_IDS:
                operation.setdefault("operationId", OPERATION_IDS[key])
            responses = operation.setdefault("responses", {})
            for status in [s for s in responses if not isinstance(s, str)]:
                responses[str(status)] = responses.pop(status)  # flask-smorest keys some by int
            if key not in PUBLIC:
                responses.setdefault("401", _response("no valid bearer token"))
            if "401" in responses:  # the login's wrong-password answer carries it too
                self._own(responses, "401").setdefault("headers", {})["WWW-Authenticate"] = WWW_AUTHENTICATE
            if method in ("post", "put", "patch") and "requestBody" in operation:
                responses.setdefault("415", _response("the body is not application/json"))
                responses.setdefault("422", _response("invalid fields: `errors` names each with its messages"))
            responses.setdefault("500", _response("an unexpected error; nothing was committed"))
            responses.setdefault(
                "503",
                _response(
                    "the database is unavailable; nothing was committed",
                    {"Retry-After": {**RETRY_AFTER, "required": True}},
                ),
            )
            if key in IDEMPOTENT:
                self._idempotent(operation, responses)
            for status, headers in HEADERS.get(key, {}).items():
                response = self._own(responses, status)
                response.setdefault("headers", {}).update(headers)
            for (link_path, link_method, status), links in LINKS.items():
                if (link_path, link_method) == key:
                    self._own(responses, status).setdefault("links", {}).update(links)

    @staticmethod
    def _own(responses: dict[str, Any], status: str) -> dict[str, Any]:
        """The response as a dict of this operation's own (a shared component cannot carry its headers)."""
        response = responses.get(status)
        if not isinstance(response, dict) or "$ref" in response:
            response = _response(http.HTTPStatus(int(status)).phrase)
            responses[status] = response
        return response

    def _idempotent(self, operation: dict[str, Any], responses: dict[str, Any]) -> None:
        parameters = operation.setdefault("parameters", [])
        if not any(isinstance(p, dict) and p.get("name") == IDEMPOTENCY_KEY["name"] for p in parameters):
            parameters.append(dict(IDEMPOTENCY_KEY))
        else:
            for i, parameter in enumerate(parameters):
                if isinstance(parameter, dict) and parameter.get("name") == IDEMPOTENCY_KEY["name"]:
                    parameters[i] = dict(IDEMPOTENCY_KEY)
        conflict = self._own(responses, "409")
        conflict["description"] = (
            conflict.get("description", "conflict") + "; or a request with this Idempotency-Key is still running"
        )
        conflict.setdefault("headers", {})["Retry-After"] = RETRY_AFTER
        invalid = self._own(responses, "422")
        invalid["description"] = invalid.get("description", "") + "; or the Idempotency-Key was used with another body"
        for status in list(responses):
            # 401 and 415 are answered before the key is looked at: never a replay.
            if status not in ("default", "401", "415") and int(status) < 500:
                self._own(responses, status).setdefault("headers", {}).setdefault("Idempotent-Replayed", REPLAYED)
