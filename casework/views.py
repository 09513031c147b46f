"""What a caller is shown of a case or a person: one place decides masking and shape.

The API serialises these dicts and the console renders them; neither builds its own.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from casework.actor import Actor
from casework.id_number import mask_id_number
from casework.models import Case, Person
from casework.privacy import shown_id_number
from workflows.case_machine import STATE_LABELS, allowed_events
from workflows.policy_pack import packs


def person_view(person: Person, id_number: str, masked: bool, today: date | None = None) -> dict[str, Any]:
    """A person as callers see them, with the ID number as the caller may see it.

    The mask hides exactly the eight birth-date digits, so a masked view never carries the birth
    date: it carries the age in years, which is what eligibility and age limits need (with the
    check character, an age leaves some sixty candidates, not one)."""
    view: dict[str, Any] = {
        "id": person.id,
        "name": person.name,
        "id_number": id_number,
        "id_number_masked": masked,
        "sex": person.sex,
        "age": age_on(person.birth_date, today or date.today()),
        "village_code": person.village_code,
        "category": person.category,
        "category_since": person.category_since,
    }
    if not masked:
        view["birth_date"] = person.birth_date
    return view


def age_on(born: date, day: date) -> int:
    """Completed years on ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def case_view(case: Case, actor: Actor, now: datetime, full_id: bool = False) -> dict[str, Any]:
    """The case as this actor may see it. Lists always mask ID numbers; the record view may not."""
    person = case.person
    if full_id:
        id_number, masked = shown_id_number(actor, person.id_number, case.county_code)
    else:
        id_number, masked = mask_id_number(person.id_number), True
    disease = packs()[case.policy_code].disease(case.disease_code)
    hospital = case.hospital
    group = case.referral_group
    return {
        "id": case.id,
        "state": case.state,
        "state_label": STATE_LABELS[case.state],
        "version": case.version,
        "person": person_view(person, id_number, masked),
        "disease": {
            "code": disease.code,
            "name_zh": disease.name_zh,
            "name_en": disease.name_en,
            "icd10": list(disease.icd10),
        },
        "policy": case.policy_code,
        "category": case.category,
        "county": case.county_code,
        "hospital": {"code": hospital.code, "name": hospital.name, "level": hospital.level} if hospital else None,
        "referral": {
            "expert_group": {"code": group.code, "name": group.name, "level": group.level},
            "referred_from": case.referred_from,
            "since": case.entered_state_at,
        }
        if group
        else None,
        "source": case.source,
        "note": case.note,
        "screened_at": case.screened_at,
        "entered_state_at": case.entered_state_at,
        "due_at": case.due_at,
        "overdue": case.due_at is not None and case.due_at < now,
        "eligibility_lost_on": case.eligibility_lost_on,
        "allowed_events": allowed_events(case, actor),
    }
