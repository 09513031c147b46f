"""Action forms generated from the state machine and each event's data schema: no per-event HTML.

A field's input follows its marshmallow class (date-time, integer, text, one-of → select); fields
naming a hospital or an expert group get their choices from a read service. What the form sends
is turned back into the schema's own input (ISO date-times with the China offset) and handed to
``fire``, which validates it as it does for the API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from marshmallow import Schema, fields, validate

from workflows import assistance_machine
from workflows.case_machine import RULES
from workflows.policy_pack import Disease

CHINA = ZoneInfo("Asia/Shanghai")  # users type local times; the services store UTC

FIELD_LABELS = {
    "diagnosis_code": "诊断编码（ICD-10）",
    "diagnosed_by": "诊断医院",
    "diagnosed_at": "确诊时间",
    "hospital_id": "定点医院",
    "plan": "救治方案",
    "admitted_at": "入院时间",
    "discharged_at": "出院时间",
    "outcome": "出院转归",
    "interval_days": "随访间隔（天，可空：按病种）",
    "expert_group_id": "专家组",
    "summary": "转诊摘要",
    "opinion": "会诊意见",
    "died_at": "死亡时间",
    "reason": "理由",
    "secondary_codes": "其他诊断（ICD-10，逗号分隔）",
    "lesions": "先心病病变（ICD-10，逗号分隔，复杂先心病需两种以上）",
    "drug_resistance.method": "药敏检测方法（耐药结核）",
    "drug_resistance.resistant_to": "耐药药物（英文名，逗号分隔，如 rifampicin, isoniazid）",
    "drug_resistance.laboratory": "检测实验室",
}
# The assistance review chain's forms (assistance_machine.RULES): the same names read differently there.
ASSISTANCE_FIELD_LABELS = {
    "opinion": "审核意见",
    "fund": "救助资金",
    "amount_approved": "批准金额（元）",
    "amount_paid": "发放金额（元）",
    "paid_on": "发放日期",
    "reason": "理由",
    "kind": "救助类别",
    "year": "年度",
    "amount_requested": "申请金额（元，可空）",
    "note": "说明",
}
KIND_LABELS = {"second_assistance": "二次救助", "charity": "慈善救助"}
FUND_LABELS = {"civil_affairs": "民政部门", "charity_foundation": "慈善基金会", "red_cross": "红十字会"}
CHOICE_LABELS = {
    "kind": KIND_LABELS,
    "fund": FUND_LABELS,
    "outcome": {"cured": "治愈", "improved": "好转", "unchanged": "未愈", "worsened": "恶化", "other": "其他"},
    "drug_resistance.method": {
        "phenotypic": "表型药敏试验",
        "xpert_mtb_rif": "Xpert MTB/RIF",
        "line_probe_assay": "线性探针",
        "sequencing": "测序",
    },
}
# Lists are typed as one line of codes: commas (half or full width), 、 or spaces between them.
LIST_SEPARATORS = re.compile(r"[,，、\s]+")
LONG_TEXT = {"plan", "summary", "opinion", "reason", "note"}


class RuleLike(Protocol):
    """A rule of either machine: the case's (case_machine) or the assistance chain's (assistance_machine)."""

    name: str
    label: str
    data_schema: type[Schema]
    needs_reason: bool


@dataclass
class Field:
    name: str
    label: str
    kind: str  # text, textarea, datetime, date, number, money, select
    required: bool
    choices: list[tuple[str, str]] = field(default_factory=list)
    value: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass
class ActionForm:
    event: str
    label: str
    fields: list[Field]
    errors: list[str] = field(default_factory=list)  # messages for no field in particular


def _kind(name: str, schema_field: fields.Field) -> tuple[str, list[tuple[str, str]]]:
    for validator in schema_field.validators:
        if isinstance(validator, validate.OneOf):
            labels = CHOICE_LABELS.get(name, {})
            return "select", [(str(c), labels.get(str(c), str(c))) for c in validator.choices]
    if isinstance(schema_field, fields.Date):
        return "date", []
    if isinstance(schema_field, fields.DateTime):
        return "datetime", []
    if isinstance(schema_field, fields.Integer):
        return "number", []
    if isinstance(schema_field, fields.Decimal):
        return "money", []
    return ("textarea" if name in LONG_TEXT else "text"), []


def form_for(
    rule: RuleLike,
    choices: dict[str, list[tuple[str, str]]],
    submitted: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    skip: frozenset[str] = frozenset(),
    labels: dict[str, str] | None = None,
    defaults: dict[str, str] | None = None,
) -> ActionForm:
    """``labels`` override FIELD_LABELS; ``defaults`` fill a form nobody has submitted yet."""
    labels = {**FIELD_LABELS, **(labels or {})}
    submitted = submitted if submitted is not None else (defaults or {})
    errors = dict(errors or {})
    out: list[Field] = []
    for name, schema_field in _form_fields(rule):
        if name.split(".")[0] in skip:
            continue
        kind, options = _kind(name, schema_field)
        if name in choices:
            kind, options = "select", choices[name]
        # A nested object is optional as a whole (a DST result only for drug-resistant TB): its
        # fields are never required on their own.
        required = (schema_field.required and "." not in name) or (name == "reason" and rule.needs_reason)
        out.append(
            Field(
                name,
                labels.get(name, name),
                kind,
                required,
                options,
                submitted.get(name, ""),
                errors.pop(name, []),
            )
        )
    if rule.needs_reason and not any(f.name == "reason" for f in out):
        out.append(Field("reason", labels["reason"], "textarea", True, [], submitted.get("reason", ""),
                         errors.pop("reason", [])))  # fmt: skip
    leftover = [m for messages in errors.values() for m in messages]  # e.g. a missing version
    return ActionForm(rule.name, rule.label, out, leftover)


def action_forms(
    allowed: list[str],
    choices: dict[str, list[tuple[str, str]]],
    failed: str | None = None,
    submitted: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    disease: Disease | None = None,
) -> list[ActionForm]:
    """One form per event the viewer may fire now; the failed one keeps what was typed and its errors.
    A confirm asks only for the evidence the case's disease needs beside its code."""
    skip = unasked_evidence(disease) if disease is not None else frozenset()
    return [
        form_for(
            RULES[event],
            choices,
            submitted if event == failed else None,
            errors if event == failed else None,
            skip,
        )
        for event in allowed
    ]


def assistance_forms(
    app: dict[str, Any],
    failed: str | None = None,
    submitted: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    today: str = "",
) -> list[ActionForm]:
    """One form per review step the viewer may take on the application (its view's ``allowed_events``).
    The fund's amounts start from what was asked for, or approved; the payment date from today."""
    approved = app.get("amount_approved") or app.get("amount_requested")
    defaults = {
        "approve": {"amount_approved": str(app["amount_requested"] or "")},
        "pay": {"amount_paid": str(approved or ""), "paid_on": today},
    }
    return [
        form_for(
            assistance_machine.RULES[event],
            {},
            submitted if event == failed else None,
            errors if event == failed else None,
            labels=ASSISTANCE_FIELD_LABELS,
            defaults=defaults.get(event),
        )
        for event in app["allowed_events"]
    ]


def raise_form(
    kinds: list[str], year: int, submitted: dict[str, str] | None = None, errors: dict[str, list[str]] | None = None
) -> ActionForm:
    """The coordinator's form raising an application: its kinds are those the case's policy has a rule for."""
    form = form_for(
        RAISE_RULE,
        {"kind": [(k, KIND_LABELS.get(k, k)) for k in kinds]},
        submitted,
        errors,
        labels=ASSISTANCE_FIELD_LABELS,
        defaults={"year": str(year)},
    )
    form.event, form.label = "raise", "提出救助申请"
    return form


@dataclass(frozen=True)
class _Raise:
    name: str = "raise"
    label: str = "提出救助申请"
    data_schema: type[Schema] = assistance_machine.RaiseData
    needs_reason: bool = False


RAISE_RULE = _Raise()


def unasked_evidence(disease: Disease) -> frozenset[str]:
    """The confirm's evidence fields this disease does not ask for (the guards in case_machine)."""
    asked = set()
    if disease.lesions_min is not None:
        asked.add("lesions")
    if disease.resistance is not None:
        asked |= {"drug_resistance", "secondary_codes"}  # a DST result, or U84.3 among the others
    if disease.with_secondary:
        asked.add("secondary_codes")
    return frozenset({"lesions", "drug_resistance", "secondary_codes"} - asked)


def local_to_iso(value: str) -> str:
    """A ``datetime-local`` value, read as China time, as the ISO text the schemas load."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return moment.isoformat()


def event_data(rule: RuleLike, form: dict[str, str]) -> tuple[dict[str, Any], str | None, dict[str, list[str]]]:
    """The event's ``data`` and reason from a submitted form, and the errors found reading it.

    Empty inputs are left out, so the schema reports a required field as missing."""
    data: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, schema_field in _form_fields(rule):
        raw = (form.get(name) or "").strip()
        if not raw or name == "reason":
            continue
        if "." in name:  # a field of a nested object (the DST result): gathered under its parent
            parent, child = name.split(".", 1)
            nested = data.setdefault(parent, {})
            nested[child] = _split(raw) if isinstance(schema_field, fields.List) else raw
            continue
        if isinstance(schema_field, fields.List):
            data[name] = _split(raw)
        elif isinstance(schema_field, fields.Date):
            data[name] = raw  # a day, as <input type=date> sends it: no time, no zone
        elif isinstance(schema_field, fields.DateTime):
            try:
                data[name] = local_to_iso(raw)
            except ValueError:
                errors[name] = ["请填写正确的日期时间"]
        elif isinstance(schema_field, fields.Integer):
            data[name] = int(raw) if raw.lstrip("-").isdigit() else raw
        else:
            data[name] = raw
    reason = (form.get("reason") or "").strip() or None
    return data, reason, errors


def _form_fields(rule: RuleLike) -> list[tuple[str, fields.Field]]:
    """The event's data fields as form inputs: a nested object's fields become ``parent.child``
    inputs (its dates are left to the API: the console asks only what a confirm must carry)."""
    out: list[tuple[str, fields.Field]] = []
    for name, schema_field in rule.data_schema().fields.items():
        if isinstance(schema_field, fields.Nested):
            for child, child_field in schema_field.schema.fields.items():
                if not isinstance(child_field, fields.Date | fields.DateTime):
                    out.append((f"{name}.{child}", child_field))
        else:
            out.append((name, schema_field))
    return out


def _split(raw: str) -> list[str]:
    return [part for part in LIST_SEPARATORS.split(raw) if part]


def money(value: str) -> Decimal | None:
    try:
        amount = Decimal((value or "0").strip() or "0")
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None
