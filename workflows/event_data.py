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
    "FollowUpData",
    "ReasonOnlyData",
    "ReferData",
    "Schema",
]

ICD10 = validate.Regexp(r"^[A-Za-z][0-9]{2}(\.[0-9A-Za-z]{1,4})?$", error="not an ICD-10 code (like C15.9)")
_text = validate.Length(min=1, max=4000)


class EventData(Schema):
    class Meta:
        unknown = RAISE

    @post_dump
    def _drop_none(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if v is not None}


class ConfirmData(EventData):
    diagnosis_code = fields.String(required=True, validate=ICD10)
    diagnosed_by = fields.String(required=True, metadata={"description": "hospital id (code)"})
    diagnosed_at = fields.AwareDateTime(required=True)


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
