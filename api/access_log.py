"""The access log of full-record reads, for those who answer for it."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import current_actor
from api.cases import decode_cursor, encode_cursor
from api.contract import CURSOR
from api.extensions import db
from api.problems import MAX_ID
from casework.services.access_log import list_access
from casework.services.queries import MAX_LIMIT

bp = Blueprint("access_log", __name__, url_prefix="/api/v1", description="Who read which full person record")


class AccessQuerySchema(Schema):
    person_id = fields.Integer(validate=validate.Range(1, MAX_ID))
    user = fields.String(validate=validate.Length(min=1, max=80), metadata={"description": "user name"})
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(
        validate=validate.Regexp(CURSOR),
        metadata={"description": "a next_cursor from the previous page, as given (another is 422)"},
    )


class AccessSchema(Schema):
    id = fields.Integer()
    at = fields.AwareDateTime()
    user = fields.String(attribute="username")
    person_id = fields.Integer()
    path = fields.String(attribute="what", metadata={"description": "what showed the full record: case or person"})


class AccessListSchema(Schema):
    items = fields.List(fields.Nested(AccessSchema))
    next_cursor = fields.String(allow_none=True)


@bp.route("/access-log")
class AccessLogList(MethodView):
    @bp.arguments(AccessQuerySchema(), location="query")
    @bp.response(200, AccessListSchema)
    @bp.alt_response(403, description="only administrators and county coordinators read the access log")
    def get(self, query):
        """Who read which person's full record (unmasked ID number), newest first. Administrators
        see every read; a county coordinator the reads of their county's residents."""
        before = decode_cursor(query["cursor"]) if query.get("cursor") else None
        page, next_before = list_access(
            db.session(), current_actor(), query.get("person_id"), query.get("user"), query["limit"], before
        )
        return {"items": page, "next_cursor": encode_cursor(next_before) if next_before else None}
