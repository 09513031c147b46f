"""The assistance review chain over HTTP: applications on a case, and their review steps."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import current_actor
from api.cases import _expected_version
from api.contract import IF_MATCH
from api.extensions import db
from api.idempotency import idempotent
from api.settlements import Money
from casework.models import AssistanceApplication
from casework.services.assistance import (
    application_events,
    application_view,
    applications_for_case,
    fire_application,
    get_application,
    raise_application,
)
from workflows import assistance_machine as machine

bp = Blueprint(
    "assistance", __name__, url_prefix="/api/v1", description="Second assistance and charity aid: the review chain"
)

_IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": True,
    "schema": {"type": "string", "pattern": IF_MATCH},
    "description": 'the ETag of the application you acted on, like "2"',
}


class ApplicationSchema(Schema):
    id = fields.Integer()
    case_id = fields.Integer()
    kind = fields.String(metadata={"description": "second_assistance (二次救助) or charity (慈善救助)"})
    year = fields.Integer()
    state = fields.String()
    state_label = fields.String()
    version = fields.Integer()
    automatic = fields.Boolean(metadata={"description": "raised by the year position, not by a person"})
    amount_requested = Money(allow_none=True)
    amount_approved = Money(allow_none=True)
    amount_paid = Money(allow_none=True)
    fund = fields.String(allow_none=True)
    layer = fields.String(metadata={"description": "the settlement layer it pays into"})
    raised_at = fields.AwareDateTime()
    due_at = fields.AwareDateTime(allow_none=True)
    allowed_events = fields.List(fields.String(), metadata={"description": "the steps you may take now"})


class RaiseRequestSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(tuple(machine.KINDS)))
    year = fields.Integer(required=True, validate=validate.Range(2000, 2100))
    amount_requested = fields.String(
        load_default=None,
        allow_none=True,
        # 0.01 up to 99,999,999.99 yuan.
        validate=validate.Regexp(r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,7}(\.[0-9]{1,2})?)$"),
        metadata={"description": "yuan, from 0.01"},
    )
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=4000))


class AssistanceEventRequestSchema(Schema):
    event = fields.String(required=True, validate=validate.OneOf(list(machine.RULES)))
    data = fields.Dict(load_default=dict)
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4000))


class AssistanceEventSchema(Schema):
    seq = fields.Integer()
    event = fields.String()
    from_state = fields.String(allow_none=True)
    to_state = fields.String()
    actor = fields.String(attribute="actor_username")
    org_unit = fields.String(attribute="org_unit_code", allow_none=True)
    at = fields.AwareDateTime()
    data = fields.Dict()
    reason = fields.String(allow_none=True)


def _present(app: AssistanceApplication) -> dict:
    """Plain data (the Idempotency-Key layer stores answers as they are sent)."""
    return application_view(app, current_actor())


def _answer(app: AssistanceApplication, status: int = 200):
    headers = {"ETag": f'"{app.version}"'}
    if status == 201:
        headers["Location"] = f"/api/v1/assistance/{app.id}"
    return _present(app), status, headers


@bp.route("/cases/<int:case_id>/assistance")
class CaseAssistance(MethodView):
    @bp.response(200, ApplicationSchema(many=True))
    @bp.alt_response(404, description="no such case in your scope")
    def get(self, case_id):
        """The case's applications for second assistance and charity aid."""
        return [_present(app) for app in applications_for_case(db.session(), current_actor(), case_id)]

    @bp.arguments(RaiseRequestSchema())
    @bp.response(201, ApplicationSchema)
    @bp.alt_response(403, description="only the county coordinator of the case's county raises applications")
    @bp.alt_response(409, description="the person already has this kind of application for the year")
    @idempotent
    def post(self, body, case_id):
        """Raise an application (the year position also raises them when the aid is due)."""
        data = {k: v for k, v in body.items() if v is not None}
        return _answer(raise_application(db.session(), current_actor(), case_id, data), 201)


@bp.route("/assistance/<int:application_id>")
class AssistanceResource(MethodView):
    @bp.response(200, ApplicationSchema)
    @bp.alt_response(404, description="no such application in your scope")
    def get(self, application_id):
        """One application; ``ETag`` is its version."""
        return _answer(get_application(db.session(), current_actor(), application_id))


@bp.route("/assistance/<int:application_id>/events")
class AssistanceEvents(MethodView):
    @bp.response(200, AssistanceEventSchema(many=True))
    @bp.alt_response(404, description="no such application in your scope")
    def get(self, application_id):
        """The application's history, oldest first."""
        return application_events(db.session(), current_actor(), application_id)

    @bp.arguments(AssistanceEventRequestSchema())
    @bp.response(200, ApplicationSchema)
    @bp.alt_response(403, description="your role and org unit may not take this step")
    @bp.alt_response(409, description="not allowed from the current state (see allowed_events)")
    @bp.alt_response(412, description="If-Match is stale: reload the application")
    @bp.alt_response(428, description="If-Match is missing")
    @bp.doc(parameters=[_IF_MATCH])
    @idempotent
    def post(self, body, application_id):
        """A review step: village_approve, town_approve, approve, refuse, pay, …"""
        version, error = _expected_version()
        if error is not None:
            return error
        app = fire_application(
            db.session(), current_actor(), application_id, body["event"], body["data"], version, body["reason"]
        )
        return _answer(app)
