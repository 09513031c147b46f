"""Reference data: policy packs, org units, hospitals, expert groups. Any logged-in user reads them."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from api.contract import DISEASE_CODE, ORG_UNIT_CODE, POLICY_CODE, REGION_CODE
from api.extensions import db
from casework.errors import NotFound
from casework.models import (
    EXPERT_LEVELS,
    HOSPITAL_LEVELS,
    ORG_KINDS,
    ExpertGroup,
    Hospital,
    HospitalDesignation,
    OrgUnit,
)
from casework.scope import org_subtree
from workflows.policy_pack import HOSPITAL_GRADES, PolicyPack, packs

bp = Blueprint("reference", __name__, url_prefix="/api/v1", description="Policies, org units, hospitals, groups")


class SecondaryRuleSchema(Schema):
    codes = fields.List(fields.String(), metadata={"description": "diagnosis codes this rule applies to"})
    any_of = fields.List(fields.String(), metadata={"description": "one of these must stand beside them"})
    why = fields.String()


class DiseaseEntrySchema(Schema):
    code = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    icd10 = fields.List(fields.String())
    age_max = fields.Integer(allow_none=True)
    expected_stay_days = fields.Integer()
    follow_up_interval_days = fields.Integer()
    higher_floor = fields.Boolean()
    with_secondary = fields.List(
        fields.Nested(SecondaryRuleSchema),
        metadata={"description": "codes that need another diagnosis beside them on the record"},
    )
    lesions_min = fields.Integer(allow_none=True, metadata={"description": "distinct lesions confirm must carry"})
    resistance = fields.String(allow_none=True, metadata={"description": "drug resistance confirm must show"})


class _DictValues(fields.List):
    """A list of the values of a dict attribute (the pack's catalogue is keyed by disease code)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return super()._serialize(list(value.values()) if isinstance(value, dict) else value, attr, obj, **kwargs)


class PolicySchema(Schema):
    code = fields.String()
    name = fields.String()
    document = fields.String(allow_none=True)
    seed = fields.String()
    region_code = fields.String()
    region_name = fields.String()
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)
    eligible_categories = fields.List(fields.String())
    referral_ladder = fields.List(fields.String())
    deadlines_days = fields.Dict(keys=fields.String(), values=fields.Integer())
    icd10_source = fields.String()
    # An array of DiseaseEntry: a bare "array" without items made generated clients drop the schema.
    diseases = _DictValues(fields.Nested(DiseaseEntrySchema))
    money = fields.Dict()
    category_periods = fields.Method(
        "_periods",
        metadata={"type": "object", "description": "how long a category keeps the policies, and what it becomes"},
    )
    assistance_deadlines_days = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "days per review-chain step"}
    )
    assumptions = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={
            "description": "figures the pack assumes rather than quotes from its seed: dotted path (diseases.*.x "
            "for every disease) -> source or reason"
        },
    )

    def _periods(self, pack: PolicyPack) -> dict:
        return {
            category: {"years": p.years, "until": p.until.isoformat() if p.until else None, "then": p.then}
            for category, p in pack.category_periods.items()
        }


class PolicySummarySchema(Schema):
    code = fields.String()
    name = fields.String()
    region_code = fields.String()
    valid_from = fields.Date()
    valid_until = fields.Date(allow_none=True)
    disease_count = fields.Function(lambda pack: len(pack.diseases))


class OrgUnitSchema(Schema):
    code = fields.String()
    name = fields.String()
    kind = fields.String(validate=validate.OneOf(ORG_KINDS))
    parent = fields.String(attribute="parent_code", allow_none=True)


class OrgUnitQuerySchema(Schema):
    parent = fields.String(
        validate=validate.Regexp(ORG_UNIT_CODE),
        metadata={"description": "children of this org unit; the roots without it"},
    )


class HospitalSchema(Schema):
    code = fields.String()
    name = fields.String()
    level = fields.String(validate=validate.OneOf(HOSPITAL_LEVELS))
    grade = fields.String(
        allow_none=True,
        validate=validate.OneOf(HOSPITAL_GRADES),
        metadata={"description": "医院等级 primary 一级, secondary 二级, tertiary 三级; null: unknown"},
    )
    region = fields.String(attribute="region_code")


class HospitalQuerySchema(Schema):
    region = fields.String(
        validate=validate.Regexp(REGION_CODE), metadata={"description": "hospitals in this region or below"}
    )
    level = fields.String(validate=validate.OneOf(HOSPITAL_LEVELS))
    policy = fields.String(validate=validate.Regexp(POLICY_CODE), metadata={"description": "policy pack code"})
    disease = fields.String(
        validate=validate.Regexp(DISEASE_CODE),
        metadata={"description": "only hospitals designated for it (with policy)"},
    )


class ExpertGroupSchema(Schema):
    code = fields.String()
    name = fields.String()
    level = fields.String(validate=validate.OneOf(EXPERT_LEVELS))
    region = fields.String(attribute="region_code")


@bp.route("/policies")
class Policies(MethodView):
    @bp.response(200, PolicySummarySchema(many=True))
    def get(self):
        """The policy packs this service knows."""
        return list(packs().values())


@bp.route("/policies/<code>")
class PolicyResource(MethodView):
    @bp.response(200, PolicySchema)
    @bp.alt_response(404, description="no such policy pack")
    def get(self, code):
        """One policy pack: catalogue, deadlines, money floors."""
        pack = packs().get(code)
        if pack is None:
            raise NotFound(f"no policy {code}")
        return pack


@bp.route("/org-units")
class OrgUnits(MethodView):
    @bp.arguments(OrgUnitQuerySchema(), location="query")
    @bp.response(200, OrgUnitSchema(many=True))
    def get(self, query):
        """Org units: the children of ``parent``, or the top of the tree."""
        parent = query.get("parent")
        where = OrgUnit.parent_code == parent if parent else OrgUnit.parent_code.is_(None)
        return db.session().scalars(select(OrgUnit).where(where).order_by(OrgUnit.code)).all()


@bp.route("/hospitals")
class Hospitals(MethodView):
    @bp.arguments(HospitalQuerySchema(), location="query")
    @bp.response(200, HospitalSchema(many=True))
    def get(self, query):
        """Hospitals, by region, level and designation."""
        statement = select(Hospital).join(Hospital.org_unit)
        if query.get("region"):
            statement = statement.where(Hospital.region_code.in_(org_subtree(query["region"])))
        if query.get("level"):
            statement = statement.where(Hospital.level == query["level"])
        if query.get("disease") or query.get("policy"):
            designated = select(HospitalDesignation.hospital_code)
            if query.get("disease"):
                designated = designated.where(HospitalDesignation.disease_code == query["disease"])
            if query.get("policy"):
                designated = designated.where(HospitalDesignation.policy_code == query["policy"])
            statement = statement.where(Hospital.code.in_(designated))
        return db.session().scalars(statement.order_by(Hospital.code)).all()


@bp.route("/expert-groups")
class ExpertGroups(MethodView):
    @bp.response(200, ExpertGroupSchema(many=True))
    def get(self):
        """The municipal and provincial expert groups."""
        return db.session().scalars(select(ExpertGroup).order_by(ExpertGroup.code)).all()
