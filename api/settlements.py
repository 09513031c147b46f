"""Settlements of stays (一站式结算) and the county statistics."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api.auth import current_actor
from api.contract import MONEY
from api.extensions import db
from api.idempotency import idempotent
from casework.services.settlements import SettlementView, list_settlements, record_settlement
from casework.services.stats import county_stats
from workflows.money import KINDS, LAYERS

bp = Blueprint("settlements", __name__, url_prefix="/api/v1", description="Bills, floors and county figures")


# Up to 13 digits of yuan: far above any bill, far below the 64-bit fen the column stores.


class Money(fields.Field):
    """Yuan as a decimal string ("1234.50"): exact, never a float."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else f"{Decimal(value):.2f}"

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError('give yuan as a decimal string, like "1234.50"')
        # The document's pattern, checked as stated: Decimal alone also took "1e5", " 7", "-0" and
        # amounts beyond the column's 12 digits (a database error on PostgreSQL).
        if not _MONEY.match(value):
            try:
                amount = Decimal(value)
            except InvalidOperation:
                raise ValidationError("not a decimal amount") from None
            if amount.is_finite() and amount < 0:
                raise ValidationError("must not be negative")
            raise ValidationError('yuan as digits with at most two decimals, like "1234.50" (at most 12 digits)')
        return Decimal(value)

    def __init__(self, **kwargs):
        super().__init__(metadata={"type": "string", "pattern": MONEY, **kwargs.pop("metadata", {})}, **kwargs)


_MONEY = re.compile(MONEY)


class Ratio(fields.Field):
    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else f"{Decimal(value):.4f}"

    def __init__(self, **kwargs):
        super().__init__(metadata={"type": "string"}, allow_none=True, **kwargs)


class NewSettlementSchema(Schema):
    kind = fields.String(load_default="inpatient", validate=validate.OneOf(KINDS))
    admitted_at = fields.AwareDateTime(load_default=None, allow_none=True)
    discharged_at = fields.AwareDateTime(required=True)
    # strict: JSON true or false only, never "yes", "on" or 1
    referral_compliant = fields.Boolean(
        required=True, truthy={True}, falsy={False}, metadata={"description": "the stay followed referral rules"}
    )
    special_treatment = fields.Boolean(
        required=True, truthy={True}, falsy={False}, metadata={"description": "single-disease price stay (单病种)"}
    )
    total = Money(required=True)
    in_policy = Money(required=True, metadata={"description": "the part within the insurance catalogue"})
    basic_insurance = Money(load_default=Decimal("0.00"))
    critical_illness_insurance = Money(load_default=Decimal("0.00"))
    medical_assistance = Money(load_default=Decimal("0.00"))
    government_backstop = Money(load_default=Decimal("0.00"))
    charity = Money(load_default=Decimal("0.00"))
    other = Money(load_default=Decimal("0.00"))
    own_payment = Money(required=True)


class FloorSchema(Schema):
    code = fields.String()
    label = fields.String()
    required = Ratio()
    actual = Ratio()
    met = fields.Boolean()
    shortfall = Money()


class LayersSchema(Schema):
    basic_insurance = Money()
    critical_illness_insurance = Money()
    medical_assistance = Money()
    government_backstop = Money()
    charity = Money()
    other = Money()
    own_payment = Money()


class YearSchema(Schema):
    year = fields.Integer()
    own_payment_to_date = Money()
    rural_income = Money(allow_none=True, metadata={"description": "previous-year rural income; null if unknown"})
    over_rural_income = Money(allow_none=True)
    second_assistance_due = Money(allow_none=True)
    charity_eligible = fields.Boolean(allow_none=True)
    inpatient_own_to_date = Money(
        allow_none=True, metadata={"description": "own payment of inpatient stays: what second assistance counts"}
    )
    assistance_paid = fields.Dict(
        keys=fields.String(),
        values=Money(),
        metadata={"description": "paid this year through the assistance review chain, by layer"},
    )
    own_after_assistance = Money(allow_none=True, metadata={"description": "own payment less what the chain paid"})


class SettlementSchema(Schema):
    id = fields.Integer()
    case_id = fields.Integer()
    hospital = fields.String()
    kind = fields.String(validate=validate.OneOf(KINDS))
    admitted_at = fields.AwareDateTime(allow_none=True)
    discharged_at = fields.AwareDateTime()
    referral_compliant = fields.Boolean()
    special_treatment = fields.Boolean()
    total = Money()
    in_policy = Money()
    recorded = fields.Nested(LayersSchema, metadata={"description": "what each layer paid, as recorded"})
    expected = fields.Nested(
        LayersSchema, allow_none=True, metadata={"description": "what the policy's chain says each layer should pay"}
    )
    discrepancies = fields.Dict(
        keys=fields.String(),
        values=Money(metadata={"pattern": r"^-?[0-9]{1,12}\.[0-9]{2}$"}),
        allow_none=True,
        metadata={"description": "recorded - expected, for layers that differ"},
    )
    ratio_on_total = Ratio()
    ratio_on_in_policy = Ratio()
    own_payment_share = Ratio()
    floors = fields.List(fields.Nested(FloorSchema))
    below_floor = fields.Boolean()
    shortfall = Money()
    year = fields.Nested(YearSchema)
    recorded_by = fields.String()
    recorded_at = fields.AwareDateTime()


class CountyRatioSchema(Schema):
    actual = Ratio()
    floor = Ratio()
    met = fields.Boolean(allow_none=True)


class CountyStatsSchema(Schema):
    county = fields.String()
    county_name = fields.String()
    cases_by_state = fields.Dict(keys=fields.String(), values=fields.Integer())
    overdue = fields.Integer()
    settlements = fields.Integer()
    mean_actual_ratio = Ratio()
    shortfalls = fields.Dict()
    county_inpatient_actual_ratio = fields.Nested(
        CountyRatioSchema,
        allow_none=True,
        metadata={"description": "县域内住院实际报销比例 against the pack's county-wide floor; null without stays"},
    )


def present(view: SettlementView) -> dict:
    row = view.settlement
    recorded = {layer: getattr(row, layer) for layer in LAYERS} | {"own_payment": row.own_payment}
    discrepancies = None
    if view.expected is not None:
        discrepancies = {k: recorded[k] - v for k, v in view.expected.items() if recorded[k] != v}
    return {
        "id": row.id,
        "case_id": row.case_id,
        "hospital": row.hospital_code,
        "kind": row.kind,
        "admitted_at": row.admitted_at,
        "discharged_at": row.discharged_at,
        "referral_compliant": row.referral_compliant,
        "special_treatment": row.special_treatment,
        "total": row.total,
        "in_policy": row.in_policy,
        "recorded": recorded,
        "expected": view.expected,
        "discrepancies": discrepancies,
        "ratio_on_total": view.assessment.ratio_on_total,
        "ratio_on_in_policy": view.assessment.ratio_on_in_policy,
        "own_payment_share": view.assessment.own_payment_share,
        "floors": view.assessment.floors,
        "below_floor": view.assessment.below_floor,
        "shortfall": view.assessment.shortfall,
        "year": view.year,
        "recorded_by": row.recorded_by,
        "recorded_at": row.recorded_at,
    }


@bp.route("/cases/<int:case_id>/settlements")
class Settlements(MethodView):
    @bp.response(200, SettlementSchema(many=True))
    @bp.alt_response(404, description="no such case in your scope")
    def get(self, case_id):
        """The case's bills, each judged against its policy's floors."""
        return [present(view) for view in list_settlements(db.session(), current_actor(), case_id)]

    @idempotent
    @bp.arguments(NewSettlementSchema())
    @bp.response(201, SettlementSchema)
    @bp.alt_response(403, description="only hospitals record settlements")
    @bp.alt_response(409, description="the case was never admitted")
    @bp.alt_response(422, description="layers + own_payment differ from total, or a bad amount")
    def post(self, bill, case_id):
        """Record a stay's bill: total, in-policy part, each layer and the own payment."""
        view = record_settlement(db.session(), current_actor(), case_id, **bill)
        return present(view), 201, {"Location": f"/api/v1/cases/{case_id}/settlements"}


@bp.route("/stats")
class Stats(MethodView):
    @bp.response(200, CountyStatsSchema(many=True))
    def get(self):
        """Per county in your scope: cases by state, overdue, mean actual ratio, shortfalls."""
        return county_stats(db.session(), current_actor())
