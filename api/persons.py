"""Persons: registering residents, and reading one (a full read is logged)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_actor
from api.extensions import db
from api.idempotency import idempotent
from api.schemas import NewPersonSchema, PersonBriefSchema
from casework.models import Person
from casework.privacy import log_full_read, may_see_full_id, record_full_read, shown_id_number
from casework.references import region_chain
from casework.services.persons import get_person, register_person
from casework.views import person_view

bp = Blueprint("persons", __name__, url_prefix="/api/v1", description="Residents cases are about")


def _county_of(session, person: Person) -> str:
    return next((u.code for u in region_chain(session, person.village_code) if u.kind == "county"), "")


def _log_full_read_within(actor):
    def within(session, person: Person) -> None:
        if may_see_full_id(actor, _county_of(session, person)):
            log_full_read(session, actor, person.id, "person")

    return within


def _present(person: Person, status: int = 200, read_logged: bool = False):
    actor = current_actor()
    id_number, masked = shown_id_number(actor, person.id_number, _county_of(db.session(), person))
    if not masked and not read_logged:
        record_full_read(db.session(), actor, person.id, "person")
    body = person_view(person, id_number, masked)
    headers = {"Location": f"/api/v1/persons/{person.id}"} if status == 201 else {}
    return body, status, headers


@bp.route("/persons")
class Persons(MethodView):
    @bp.arguments(NewPersonSchema)
    @bp.response(201, PersonBriefSchema)
    @bp.alt_response(409, description="this ID number is registered already (Location names the person)")
    @idempotent
    def post(self, new):
        """Register a resident; birth date and sex come from the ID number."""
        actor = current_actor()
        person = register_person(db.session(), actor, **new, within=_log_full_read_within(actor))
        return _present(person, 201, read_logged=True)


@bp.route("/persons/<int:person_id>")
class PersonResource(MethodView):
    @bp.response(200, PersonBriefSchema)
    @bp.alt_response(404, description="no such person in your scope")
    def get(self, person_id):
        """One person; the full ID number only for your own county's coordinator (and logged)."""
        return _present(get_person(db.session(), current_actor(), person_id))
