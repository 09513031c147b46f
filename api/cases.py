"""Cases: screening, reading, listing, history and transitions."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from api import contract
from api.auth import current_actor
from api.extensions import db
from api.idempotency import idempotent
from api.problems import MAX_ID, problem
from api.responses import view_response
from api.schemas import (
    CaseEventSchema,
    CaseListSchema,
    CaseQuerySchema,
    CaseSchema,
    EventRequestSchema,
    NewCaseSchema,
    ReferralQueueItemSchema,
    ReferralQueueQuerySchema,
)
from casework.db import utcnow
from casework.errors import ValidationFailed
from casework.services.cases import case_events, fire, read_case, screen
from casework.services.queries import CaseFilters, list_cases, referral_queue
from casework.views import case_view

bp = Blueprint("cases", __name__, url_prefix="/api/v1", description="Patient cases and their transitions")


def _case_response(view: dict, status: int = 200):
    """The case view a service built (and logged, if it shows the full ID), with its ETag."""
    headers = {"ETag": f'"{view["version"]}"'}
    if status == 201:
        headers["Location"] = f"/api/v1/cases/{view['id']}"
    return view_response(view, status, headers)


IF_MATCH = re.compile(r'(?:W/)?"?([0-9]{1,18})"?')


def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": before_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))["before"]
        if type(value) is not int or not 1 <= value <= MAX_ID:  # bool is an int too
            raise TypeError
        return value
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        raise ValidationFailed.field("cursor", "not a cursor this API gave out") from None


def encode_queue_cursor(after: tuple[datetime, int]) -> str:
    raw = json.dumps({"after": [after[0].isoformat(), after[1]]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_queue_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, case_id = json.loads(base64.urlsafe_b64decode(padded))["after"]
        since = datetime.fromisoformat(at)
        if not isinstance(case_id, int) or since.tzinfo is None:
            raise TypeError
        return since, case_id
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValidationFailed.field("cursor", "not a cursor this API gave out") from None


def _expected_version():
    header = request.headers.get("If-Match")
    if header is None:
        return None, problem(428, "Precondition Required", "send If-Match with the case's ETag", "if-match-required")
    # ASCII digits only: str.isdigit() also passes "²", which int() then refuses (a 500).
    match = IF_MATCH.fullmatch(header.strip())
    if match is None:
        return None, problem(
            422,
            "Unprocessable Content",
            'If-Match must be an ETag like "3"',
            "validation",
            errors={"If-Match": ['must be an ETag like "3"']},
        )
    return int(match.group(1)), None


@bp.route("/cases")
class Cases(MethodView):
    @bp.arguments(CaseQuerySchema(), location="query")
    @bp.response(200, CaseListSchema)
    def get(self, query):
        """Cases in your scope, newest first; follow ``next_cursor`` for the next page."""
        filters = CaseFilters(
            query.get("state"), query.get("region"), query.get("hospital"), query.get("disease"), query.get("overdue")
        )
        before = decode_cursor(query["cursor"]) if query.get("cursor") else None
        now = utcnow()
        actor = current_actor()
        page, next_before = list_cases(db.session(), actor, filters, query["limit"], before, now)
        return view_response(
            {
                "items": [case_view(c, actor, now) for c in page],
                "next_cursor": encode_cursor(next_before) if next_before else None,
            }
        )

    @idempotent
    @bp.arguments(NewCaseSchema())
    @bp.response(201, CaseSchema)
    @bp.alt_response(403, description="your role may not screen cases")
    @bp.alt_response(409, description="the person already has an open case for this disease")
    def post(self, new):
        """Screen a case (筛查发现): a person, a disease of the policy in force, when it was found."""
        return _case_response(screen(db.session(), current_actor(), **new), 201)


@bp.route("/cases/<int:case_id>")
class CaseResource(MethodView):
    @bp.response(200, CaseSchema)
    @bp.alt_response(404, description="no such case in your scope")
    def get(self, case_id):
        """One case, with its deadline and the events you may fire; ``ETag`` is its version."""
        return _case_response(read_case(db.session(), current_actor(), case_id))


@bp.route("/cases/<int:case_id>/events")
class CaseEvents(MethodView):
    @bp.response(200, CaseEventSchema(many=True))
    @bp.alt_response(404, description="no such case in your scope")
    def get(self, case_id):
        """The case's full history, oldest first."""
        return case_events(db.session(), current_actor(), case_id)

    @idempotent
    @bp.arguments(EventRequestSchema())
    @bp.response(200, CaseSchema)
    @bp.alt_response(403, description="your role may not fire this event on this case")
    @bp.alt_response(409, description="not allowed from the current state (see allowed_events)")
    @bp.alt_response(412, description="If-Match is stale: reload the case")
    @bp.alt_response(428, description="If-Match is missing")
    @bp.doc(
        parameters=[
            {
                "in": "header",
                "name": "If-Match",
                "required": True,
                "schema": {"type": "string", "pattern": contract.IF_MATCH},
                "description": 'the ETag of the case you acted on, like "3"',
            },
            {
                "in": "header",
                "name": "Idempotency-Key",
                "required": False,
                "schema": {"type": "string"},
                "description": "retry-safe key: the same key and body replay the first answer",
            },
        ]
    )
    def post(self, body, case_id):
        """Fire an event on the case: confirm, assign, admit, refer, … (see the state diagram)."""
        version, error = _expected_version()
        if error is not None:
            return error
        view = fire(db.session(), case_id, body["event"], current_actor(), body["data"], version, body["reason"])
        return _case_response(view)


@bp.route("/queues/referrals")
class ReferralQueue(MethodView):
    @bp.arguments(ReferralQueueQuerySchema(), location="query")
    @bp.response(200, ReferralQueueItemSchema(many=True))
    @bp.alt_response(403, description="only expert groups have a referral queue")
    def get(self, query):
        """Referrals waiting for your expert group, oldest first, with age and deadline; a page
        of ``limit``, the next one named by the ``Link: <…>; rel="next"`` header."""
        now = utcnow()
        actor = current_actor()
        after = decode_queue_cursor(query["cursor"]) if query.get("cursor") else None
        page, next_after = referral_queue(db.session(), actor, query["limit"], after)
        items = []
        for case in page:
            item = case_view(case, actor, now)
            item["age_hours"] = round((now - case.entered_state_at).total_seconds() / 3600, 1)
            items.append(item)
        headers = {}
        if next_after is not None:
            cursor = encode_queue_cursor(next_after)
            headers["Link"] = f'</api/v1/queues/referrals?limit={query["limit"]}&cursor={cursor}>; rel="next"'
        return view_response(items, 200, headers)
