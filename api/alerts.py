"""Overdue alerts and follow-up visits."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import current_actor
from api.cases import decode_cursor, encode_cursor
from api.contract import CURSOR
from api.extensions import db
from api.idempotency import idempotent
from api.problems import MAX_ID
from casework.models import ALERT_STATUSES
from casework.services.alerts import acknowledge, list_alerts
from casework.services.follow_ups import list_visits, record_visit
from casework.services.queries import MAX_LIMIT
from workflows.deadlines import OVERDUE_RULES

bp = Blueprint("alerts", __name__, url_prefix="/api/v1", description="Overdue alerts and follow-up visits")


class AlertSchema(Schema):
    id = fields.Integer()
    case_id = fields.Integer()
    rule = fields.String(validate=validate.OneOf(sorted(set(OVERDUE_RULES.values()))))
    due_at = fields.AwareDateTime()
    raised_at = fields.AwareDateTime()
    level = fields.Integer(metadata={"description": "escalation climbs so far (0 = not escalated)"})
    org_unit = fields.String(attribute="org_unit_code", metadata={"description": "who must act now"})
    status = fields.String(validate=validate.OneOf(ALERT_STATUSES))
    acknowledged_at = fields.AwareDateTime(allow_none=True)
    acknowledged_by = fields.String(allow_none=True)
    resolved_at = fields.AwareDateTime(allow_none=True)


class AlertListSchema(Schema):
    items = fields.List(fields.Nested(AlertSchema))
    next_cursor = fields.String(allow_none=True)


class AlertQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(ALERT_STATUSES))
    case_id = fields.Integer(validate=validate.Range(1, MAX_ID))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(
        validate=validate.Regexp(CURSOR),
        metadata={"description": "a next_cursor from the previous page, as given (another is 422)"},
    )


class NewVisitSchema(Schema):
    visited_at = fields.AwareDateTime(
        required=True, metadata={"description": "not in the future, not before the case was screened"}
    )
    findings = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    next_due_at = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "after visited_at; defaults to the follow-up interval"},
    )


class VisitSchema(Schema):
    id = fields.Integer()
    case_id = fields.Integer()
    visited_at = fields.AwareDateTime()
    visitor = fields.String()
    org_unit = fields.String(attribute="org_unit_code", allow_none=True)
    findings = fields.String()
    next_due_at = fields.AwareDateTime()


@bp.route("/alerts")
class Alerts(MethodView):
    @bp.arguments(AlertQuerySchema(), location="query")
    @bp.response(200, AlertListSchema)
    def get(self, query):
        """Overdue alerts on the cases you see, newest first."""
        before = decode_cursor(query["cursor"]) if query.get("cursor") else None
        page, next_before = list_alerts(
            db.session(), current_actor(), query.get("status"), query.get("case_id"), query["limit"], before
        )
        return {"items": page, "next_cursor": encode_cursor(next_before) if next_before else None}


@bp.route("/alerts/<int:alert_id>/acknowledge")
class AcknowledgeAlert(MethodView):
    @bp.response(200, AlertSchema)
    @bp.alt_response(403, description="the alert is with another org unit")
    @bp.alt_response(404, description="no such alert in your scope")
    def post(self, alert_id):
        """Acknowledge an alert: it stops climbing; it resolves when the case moves on."""
        return acknowledge(db.session(), current_actor(), alert_id)


@bp.route("/cases/<int:case_id>/follow-ups")
class FollowUps(MethodView):
    @bp.response(200, VisitSchema(many=True))
    @bp.alt_response(404, description="no such case in your scope")
    def get(self, case_id):
        """The case's follow-up visits, oldest first."""
        return list_visits(db.session(), current_actor(), case_id)

    @idempotent
    @bp.arguments(NewVisitSchema())
    @bp.response(201, VisitSchema)
    @bp.alt_response(409, description="the case is not in follow-up")
    def post(self, visit, case_id):
        """Record a follow-up visit; the next one falls due after the case's interval."""
        return record_visit(db.session(), current_actor(), case_id, **visit), 201
