"""Persons: registering residents, and reading one (a full read is logged)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_actor
from api.extensions import db
from api.idempotency import idempotent
from api.schemas import NewPersonSchema, PersonBriefSchema
from casework.models import Person
from casework.privacy import record_full_read, shown_id_number
from casework.references import region_chain
from casework.services.persons import get_person, register_person

bp = Blueprint("persons", __name__, url_prefix="/api/v1", description="Residents cases are about")


def person_view(person: Person, id_number: str, masked: bool) -> dict:
    """A person as the API shows them, with the ID number as the caller may see it."""
    return {
        "id": person.id,
        "name": person.name,
        "id_number": id_number,
        "id_number_masked": masked,
        "sex": person.sex,
        "birth_date": person.birth_date,
        "village_code": person.village_code,
        "category": person.category,
        "category_since": person.category_since,
    }


def _present(person: Person, status: int = 200):
    actor = current_actor()
    county = next((u.code for u in region_chain(db.session(), person.village_code) if u.kind == "county"), "")
    id_number, masked = shown_id_number(actor, person.id_number, county)
    if not masked:
        record_full_read(db.session(), actor, person.id, "person")
    body = {
        "id": person.id,
        "name": person.name,
        "id_number": id_number,
        "id_number_masked": masked,
        "sex": person.sex,
        "birth_date": person.birth_date,
        "village_code": person.village_code,
        "category": person.category,
        "category_since": person.category_since,
    }
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
        person = register_person(db.session(), current_actor(), **new)
        return _present(person, 201)


@bp.route("/persons/<int:person_id>")
class PersonResource(MethodView):
    @bp.response(200, PersonBriefSchema)
    @bp.alt_response(404, description="no such person in your scope")
    def get(self, person_id):
        """One person; the full ID number only for your own county's coordinator (and logged)."""
        return _present(get_person(db.session(), current_actor(), person_id))
