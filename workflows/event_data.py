"""What each event carries in ``data``: validated before the machine runs, stored in the history."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, post_dump, validate

__all__ = [
    "AdmitData",
    "AssignData",
    "ConfirmData",
    "ConsultData",
    "DeathData",
    "DischargeData",
    "DrugResistanceData",
    "FollowUpData",
    "ReasonOnlyData",
    "ReferData",
    "Schema",
]

# WHO ICD-10 codes (C15.9) and the national clinical version 2.0's extensions (C15.900x001) that records carry.
ICD10 = validate.Regexp(
    r"^[A-Za-z][0-9]{2}(\.[0-9A-Za-z]{1,4}([xX][0-9]{3})?)?$", error="not an ICD-10 code (like C15.9 or C15.900x001)"
)
_text = validate.Length(min=1, max=4000)


class EventData(Schema):
    class Meta:
        unknown = RAISE

    @post_dump
    def _drop_none(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v is not None}


DRUGS = (
    "rifampicin",
    "isoniazid",
    "ethambutol",
    "pyrazinamide",
    "streptomycin",
    "fluoroquinolone",
    "injectable",
    "other",
)
DST_METHODS = ("phenotypic", "xpert_mtb_rif", "line_probe_assay", "sequencing")


class DrugResistanceData(EventData):
    """The drug-susceptibility test (药敏试验) that shows a tuberculosis is resistant."""

    method = fields.String(required=True, validate=validate.OneOf(DST_METHODS))
    resistant_to = fields.List(
        fields.String(validate=validate.OneOf(DRUGS)), required=True, validate=validate.Length(min=1)
    )
    reported_at = fields.Date(load_default=None, allow_none=True)
    laboratory = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=200))


class ConfirmData(EventData):
    diagnosis_code = fields.String(required=True, validate=ICD10)
    diagnosed_by = fields.String(required=True, metadata={"description": "hospital id (code)"})
    diagnosed_at = fields.AwareDateTime(required=True)
    secondary_codes = fields.List(
        fields.String(validate=ICD10),
        load_default=None,
        validate=validate.Length(max=20),
        metadata={"description": "other diagnoses on the record (其他诊断), e.g. G40 beside F06, U84.3 beside A15"},
    )
    lesions = fields.List(
        fields.String(validate=ICD10),
        load_default=None,
        validate=validate.Length(max=10),
        metadata={"description": "congenital heart lesions found (复杂先心病 needs two or more)"},
    )
    drug_resistance = fields.Nested(
        DrugResistanceData, load_default=None, metadata={"description": "DST result for drug-resistant TB"}
    )


class AssignData(EventData):
    hospital_id = fields.String(required=True)
    plan = fields.String(required=True, validate=_text, metadata={"description": "treatment plan (救治方案)"})


class AdmitData(EventData):
    admitted_at = fields.AwareDateTime(required=True)


class DischargeData(EventData):
    discharged_at = fields.AwareDateTime(required=True)
    outcome = fields.String(
        required=True, validate=validate.OneOf(("cured", "improved", "unchanged", "worsened", "other"))
    )


class FollowUpData(EventData):
    interval_days = fields.Integer(
        load_default=None,
        allow_none=True,
        validate=validate.Range(1, 730),
        metadata={"description": "days between visits; the disease's interval when omitted"},
    )


class ReferData(EventData):
    expert_group_id = fields.String(required=True)
    summary = fields.String(required=True, validate=_text)


class ConsultData(EventData):
    opinion = fields.String(required=True, validate=_text)


class DeathData(EventData):
    died_at = fields.AwareDateTime(required=True)


class ReasonOnlyData(EventData):
    """Events whose only datum is the reason, given as ``reason`` beside ``data`` or inside it."""

    reason = fields.String(load_default=None, validate=_text)
