"""Request and response bodies of the case endpoints (marshmallow 4; documented in OpenAPI)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.contract import CURSOR, DISEASE_CODE, HOSPITAL_CODE, ID_NUMBER, REGION_CODE, VILLAGE_CODE
from api.problems import MAX_ID
from casework.models import CATEGORIES
from casework.services.queries import MAX_LIMIT
from workflows.case_machine import RULES, SCREEN_EVENT, STATE_LABELS


class OrgRefSchema(Schema):
    code = fields.String()
    name = fields.String()
    level = fields.String()


class PersonBriefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    id_number = fields.String(metadata={"description": "masked (first 6, last 4) unless your role needs it"})
    id_number_masked = fields.Boolean()
    sex = fields.String(metadata={"description": "M or F, from the ID number"})
    age = fields.Integer(metadata={"description": "completed years today"})
    birth_date = fields.Date(
        metadata={"description": "only beside an unmasked ID number: with a masked one it would undo the mask"}
    )
    village_code = fields.String()
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    category_since = fields.Date()


class DiseaseSchema(Schema):
    code = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    icd10 = fields.List(fields.String())


class ReferralSchema(Schema):
    expert_group = fields.Nested(OrgRefSchema)
    referred_from = fields.String()
    since = fields.AwareDateTime()


class CaseSchema(Schema):
    id = fields.Integer()
    state = fields.String(validate=validate.OneOf(list(STATE_LABELS)))
    state_label = fields.String(metadata={"description": "the state in Chinese, as users read it"})
    version = fields.Integer(metadata={"description": "also sent as the ETag; send it back in If-Match"})
    person = fields.Nested(PersonBriefSchema)
    disease = fields.Nested(DiseaseSchema)
    policy = fields.String(metadata={"description": "the policy pack the case runs under"})
    category = fields.String(metadata={"description": "the person's eligibility category at screening"})
    county = fields.String()
    hospital = fields.Nested(OrgRefSchema, allow_none=True)
    referral = fields.Nested(ReferralSchema, allow_none=True)
    source = fields.String()
    note = fields.String(allow_none=True)
    screened_at = fields.AwareDateTime()
    entered_state_at = fields.AwareDateTime(metadata={"description": "when the current step happened"})
    due_at = fields.AwareDateTime(allow_none=True, metadata={"description": "when the current step becomes overdue"})
    overdue = fields.Boolean()
    eligibility_lost_on = fields.Date(
        allow_none=True, metadata={"description": "the day the person stopped being eligible while the case was open"}
    )
    allowed_events = fields.List(fields.String(), metadata={"description": "what you may fire now"})


class CaseListSchema(Schema):
    items = fields.List(fields.Nested(CaseSchema))
    next_cursor = fields.String(allow_none=True)


class CaseQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(list(STATE_LABELS)))
    region = fields.String(
        validate=validate.Regexp(REGION_CODE),
        metadata={"description": "org unit code: province, city, county, township or village (an unknown one is 422)"},
    )
    hospital = fields.String(validate=validate.Regexp(HOSPITAL_CODE), metadata={"description": "hospital code"})
    disease = fields.String(validate=validate.Regexp(DISEASE_CODE), metadata={"description": "disease code"})
    overdue = fields.Boolean()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(
        validate=validate.Regexp(CURSOR),
        metadata={"description": "a next_cursor from the previous page, as given (another is 422)"},
    )


class NewCaseSchema(Schema):
    person_id = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(1, MAX_ID),
        metadata={"description": "a person in your area whose category the policy accepts (otherwise 422)"},
    )
    disease_code = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=60), validate.Regexp(DISEASE_CODE)],
        metadata={"description": "in the catalogue of the policy in force for the person's county (otherwise 422)"},
    )
    source = fields.String(
        required=True,
        validate=validate.OneOf(
            ("health_check", "family_doctor_visit", "hospital_diagnosis", "registry_match", "other")
        ),
    )
    screened_at = fields.AwareDateTime(required=True, metadata={"description": "with offset; not in the future"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4000))


class EventRequestSchema(Schema):
    event = fields.String(required=True, validate=validate.OneOf(list(RULES)))
    data = fields.Dict(load_default=dict, metadata={"description": "the event's own data; see the event table"})
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4000))


class CaseEventSchema(Schema):
    seq = fields.Integer()
    event = fields.String(validate=validate.OneOf([SCREEN_EVENT, *RULES]))
    # No enum here: a nullable enum comes out of client generators as three types for one field.
    from_state = fields.String(allow_none=True, metadata={"description": "one of to_state's values; null at screening"})
    to_state = fields.String(validate=validate.OneOf(list(STATE_LABELS)))
    actor = fields.String(attribute="actor_username")
    org_unit = fields.String(attribute="org_unit_code", allow_none=True)
    at = fields.AwareDateTime(metadata={"description": "when it was recorded"})
    occurred_at = fields.AwareDateTime(metadata={"description": "when it happened in the world"})
    data = fields.Dict()
    reason = fields.String(allow_none=True)


class ReferralQueueItemSchema(CaseSchema):
    age_hours = fields.Float(metadata={"description": "hours the referral has waited"})


class ReferralQueueQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))
    cursor = fields.String(
        validate=validate.Regexp(CURSOR),
        metadata={"description": "from the previous page's Link rel=next, as given (another is 422)"},
    )


class NewPersonSchema(Schema):
    id_number = fields.String(
        required=True,
        metadata={
            "description": "18-character resident ID (GB 11643): the pattern states its shape; the check "
            "character (ISO 7064 MOD 11-2), the calendar date and a birth date not in the future are checked "
            "by the server (422 naming id_number)",
            "pattern": ID_NUMBER,
            "minLength": 18,
            "maxLength": 18,
        },
    )
    name = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=100),
            validate.Regexp(r"^\s*[^\s\x00-\x1f\x7f]", error="must not be blank"),
        ],
    )
    village_code = fields.String(
        required=True,
        validate=validate.Regexp(VILLAGE_CODE),
        metadata={"description": "12-digit code of a village in your area (otherwise 422)"},
    )
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    category_since = fields.Date(required=True, metadata={"description": "not in the future"})
