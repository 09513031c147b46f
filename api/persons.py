"""Persons: registering residents, and reading one (a full read is logged)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_actor
from api.extensions import db
from api.idempotency import idempotent
from api.schemas import NewPersonSchema, PersonBriefSchema
from casework.services.persons import read_person, register_person

bp = Blueprint("persons", __name__, url_prefix="/api/v1", description="Residents cases are about")


@bp.route("/persons")
class Persons(MethodView):
    @idempotent
    @bp.arguments(NewPersonSchema())
    @bp.response(201, PersonBriefSchema)
    @bp.alt_response(409, description="this ID number is registered already (Location names the person)")
    def post(self, new):
        """Register a resident; birth date and sex come from the ID number."""
        view = register_person(db.session(), current_actor(), **new)
        return view, 201, {"Location": f"/api/v1/persons/{view['id']}"}


@bp.route("/persons/<int:person_id>")
class PersonResource(MethodView):
    @bp.response(200, PersonBriefSchema)
    @bp.alt_response(404, description="no such person in your scope")
    def get(self, person_id):
        """One person; the full ID number only for your own county's coordinator (and logged)."""
        return read_person(db.session(), current_actor(), person_id)
