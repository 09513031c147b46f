"""Policy packs: one YAML file per region and policy year, validated on load.

A pack is data: its disease catalogue, eligible categories, referral ladder, deadlines and money
floors. Adding a region is adding a file to ``workflows/policies/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from workflows.case_machine import HOSPITAL_LEVELS, OVERDUE_RULES

POLICY_DIR = Path(__file__).parent / "policies"

CATEGORIES = (
    "poor_not_exited",
    "poor_newly_identified",
    "poor_exited_2014_2015",
    "poor_exited_supported",
    "poor_exited_unsupported",  # seed 003 二(四)10: 不在2年继续扶持期内脱贫户
    "subsistence",
    "extreme_poverty",
    "marginal",
    "hardship",
)
# The categories as people write them on forms and rosters.
CATEGORY_LABELS = {
    "poor_not_exited": "建档立卡未脱贫",
    "poor_newly_identified": "建档立卡新识别",
    "poor_exited_2014_2015": "2014/2015年已脱贫",
    "poor_exited_supported": "脱贫继续扶持期内",
    "poor_exited_unsupported": "脱贫不在继续扶持期内",
    "subsistence": "低保对象",
    "extreme_poverty": "特困人员",
    "marginal": "低保边缘",
    "hardship": "支出型困难",
}
DEADLINE_KEYS = (
    "screened",
    "confirmed",
    "assigned",
    "referred",
    "settlement_after_discharge",
    "follow_up_grace",
    "alert_escalation",
)
HOSPITAL_GRADES = ("primary", "secondary", "tertiary")  # 一级 / 二级 / 三级 (医院等级)
# The checks money.assess makes: a pack may give any of them its own list of categories.
FLOOR_CODES = (
    "inpatient_actual_ratio",
    "basic_ratio_by_level",
    "out_of_county_ratio",
    "special_treatment_insurance",
    "own_payment_share",
    "outpatient_special_ratio",
    "free_treatment",
    "assistance_share",
)
# States a case can be overdue in (declared on the states), and who can be told: the org unit
# responsible for the next step.
OVERDUE_STATES = tuple(OVERDUE_RULES)
ALERT_TARGETS = ("county", "hospital", "expert_group")
# The open steps of the assistance review chain (workflows/assistance_machine.py), for their deadlines.
ASSISTANCE_STEPS = ("raised", "village_reviewed", "town_reviewed", "approved")


class PolicyPackError(ValueError):
    """A pack that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class SecondaryRule:
    """Codes that name the disease only with another diagnosis beside them on the same record."""

    codes: tuple[str, ...]
    any_of: tuple[str, ...]
    why: str


def _under(code: str, prefixes: tuple[str, ...]) -> bool:
    wanted = code.strip().upper()
    return any(wanted.startswith(prefix.upper()) for prefix in prefixes)


RESISTANCE_RULES = ("any", "rifampicin")


@dataclass(frozen=True)
class Disease:
    code: str
    name_zh: str
    name_en: str
    icd10: tuple[str, ...]
    age_max: int | None
    expected_stay_days: int
    follow_up_interval_days: int
    higher_floor: bool
    with_secondary: tuple[SecondaryRule, ...] = ()
    lesions_min: int | None = None  # 复杂先心病: how many distinct lesions the confirm must carry
    resistance: str | None = None  # drug-resistant TB: the laboratory evidence the confirm must carry

    def matches_icd10(self, diagnosis_code: str) -> bool:
        """True when a diagnosis code falls under one of the disease's codes (C15 covers C15.9)."""
        return _under(diagnosis_code, self.icd10)

    def secondary_needed(self, diagnosis_code: str) -> SecondaryRule | None:
        """The rule asking for another diagnosis beside this code, if one does."""
        return next((rule for rule in self.with_secondary if _under(diagnosis_code, rule.codes)), None)


@dataclass(frozen=True)
class CategoryPeriod:
    """How long a category keeps the pack's policies: some years from the day the person entered it,
    or up to a date; afterwards the person counts as ``then`` (None: no longer covered)."""

    years: int | None
    until: date | None
    then: str | None

    def ended(self, on: date, since: date | None) -> bool:
        if self.until is not None and on > self.until:
            return True
        return self.years is not None and since is not None and on >= _add_years(since, self.years)


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class PolicyPack:
    code: str
    name: str
    document: str | None
    seed: str
    region_code: str
    region_name: str
    valid_from: date
    valid_until: date | None
    eligible_categories: tuple[str, ...]
    referral_ladder: tuple[str, ...]
    deadlines_days: dict[str, int]
    overdue_alerts: dict[str, str]
    icd10_source: str
    diseases: dict[str, Disease]
    money: dict[str, Any] = field(default_factory=dict)
    # Figures the pack assumes rather than quotes from its seed: dotted path -> the source or the reason.
    # ``diseases.*.x`` marks field x of every disease; ``diseases.<code>.x`` one disease's.
    assumptions: dict[str, str] = field(default_factory=dict)
    category_periods: dict[str, CategoryPeriod] = field(default_factory=dict)
    assistance_deadlines_days: dict[str, int] = field(default_factory=dict)  # review chain steps; empty: none

    def disease(self, code: str) -> Disease | None:
        return self.diseases.get(code)

    def category_on(self, category: str, *, on: date, category_since: date | None = None) -> str | None:
        """What a person of ``category`` (held since ``category_since``) counts as under this pack on ``on``:
        the category itself, the one its period ends in, or None when the pack no longer covers it.

        Without ``category_since`` a period counted in years cannot be judged and the category stands.
        """
        period = self.category_periods.get(category)
        if period is not None and period.ended(on, category_since):
            category = period.then
        return category if category in self.eligible_categories else None

    def covers(self, category: str, *, on: date, category_since: date | None = None) -> bool:
        """Whether the pack covers a person of ``category`` on ``on`` (screening eligibility, money floors)."""
        return self.category_on(category, on=on, category_since=category_since) is not None

    def assumed(self, path: str) -> str | None:
        """Why a figure is assumed, or None when the pack quotes it from the seed."""
        if path in self.assumptions:
            return self.assumptions[path]
        parts = path.split(".")
        if len(parts) >= 3 and parts[0] == "diseases":
            wildcard = ".".join(["diseases", "*", *parts[2:]])
            if wildcard in self.assumptions:
                return self.assumptions[wildcard]
        for end in range(len(parts) - 1, 0, -1):  # a whole section marked (deadlines_days) covers its fields
            if ".".join(parts[:end]) in self.assumptions:
                return self.assumptions[".".join(parts[:end])]
        return None

    def in_force_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)


def _ratio() -> fields.Decimal:
    return fields.Decimal(allow_none=True, load_default=None, validate=validate.Range(0, 1))


_ICD10_PREFIX = validate.Regexp(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")


class _SecondaryRuleSchema(Schema):
    class Meta:
        unknown = RAISE

    codes = fields.List(fields.String(validate=_ICD10_PREFIX), required=True, validate=validate.Length(min=1))
    any_of = fields.List(fields.String(validate=_ICD10_PREFIX), required=True, validate=validate.Length(min=1))
    why = fields.String(required=True, validate=validate.Length(min=1))

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> SecondaryRule:
        return SecondaryRule(tuple(data["codes"]), tuple(data["any_of"]), data["why"])


class _DiseaseSchema(Schema):
    class Meta:
        unknown = RAISE

    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"))
    name_zh = fields.String(required=True, validate=validate.Length(min=1))
    name_en = fields.String(required=True, validate=validate.Length(min=1))
    icd10 = fields.List(
        fields.String(validate=_ICD10_PREFIX),
        required=True,
        validate=validate.Length(min=1),
    )
    age_max = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 120))
    expected_stay_days = fields.Integer(required=True, validate=validate.Range(1, 365))
    follow_up_interval_days = fields.Integer(required=True, validate=validate.Range(1, 730))
    higher_floor = fields.Boolean(load_default=False)
    with_secondary = fields.List(fields.Nested(_SecondaryRuleSchema), load_default=list)
    lesions_min = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(2, 10))
    resistance = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(RESISTANCE_RULES))

    @validates_schema
    def _rules_cover_own_codes(self, data: dict[str, Any], **_: Any) -> None:
        for index, rule in enumerate(data.get("with_secondary", [])):
            if not all(_under(code, tuple(data.get("icd10", ()))) for code in rule.codes):
                raise ValidationError("its codes must be among the disease's icd10", f"with_secondary.{index}.codes")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Disease:
        return Disease(**{**data, "icd10": tuple(data["icd10"]), "with_secondary": tuple(data["with_secondary"])})


def _amount(**kwargs: Any) -> fields.Decimal:
    return fields.Decimal(validate=validate.Range(0), **kwargs)


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class _SecondAssistanceSchema(_Strict):
    threshold = _amount(required=True)
    ratio = fields.Decimal(required=True, validate=validate.Range(0, 1))
    cap = _amount(required=True)


class _BandSchema(_Strict):
    start = _amount(data_key="from", attribute="from", load_default=None)
    ratio = fields.Decimal(required=True, validate=validate.Range(0, 1))


class _CriticalIllnessSchema(_Strict):
    deductible_by_year = fields.Dict(keys=fields.Integer(), values=_amount(), required=True)
    annual_cap_by_year = fields.Dict(keys=fields.Integer(), values=_amount(), load_default=None, allow_none=True)
    bands = fields.List(fields.Nested(_BandSchema), required=True, validate=validate.Length(min=1))


class _AssistanceTrackSchema(_Strict):
    rate = fields.Decimal(required=True, validate=validate.Range(0, 1))
    cap = _amount(required=True)
    out_of_policy_rate = fields.Decimal(load_default=None, validate=validate.Range(0, 1))


class _AssistanceSchema(_Strict):
    target_ratio = fields.Decimal(required=True, validate=validate.Range(0, 1))
    ordinary = fields.Nested(_AssistanceTrackSchema, required=True)
    major_disease = fields.Nested(_AssistanceTrackSchema, required=True)


class _BackstopSchema(_Strict):
    target_ratio = fields.Decimal(required=True, validate=validate.Range(0, 1))


class _ChainSchema(_Strict):
    """The whole settlement chain, for packs whose seed gives it (Longchuan)."""

    critical_illness = fields.Nested(_CriticalIllnessSchema, required=True)
    assistance = fields.Nested(_AssistanceSchema, required=True)
    backstop = fields.Nested(_BackstopSchema, required=True)


class _UpliftsSchema(_Strict):
    """Relative preferences over ordinary residents (seed 003 二(四)11): data, checkable only against the
    ordinary residents' own figures, which the seed does not give."""

    inpatient_ratio_points = _ratio()
    inpatient_deductible_waived = fields.Boolean(load_default=False)
    outpatient_special_ratio_points = _ratio()
    outpatient_special_deductible_waived = fields.Boolean(load_default=False)
    critical_illness_deductible_cut = _ratio()
    critical_illness_ratio_points = _ratio()
    critical_illness_cap_raise = _ratio()
    second_reimbursement = fields.Boolean(load_default=False)


class _MoneySchema(_Strict):
    inpatient_actual_ratio_min = _ratio()
    inpatient_actual_ratio_base = fields.String(
        load_default="in_policy", validate=validate.OneOf(("in_policy", "total"))
    )
    outpatient_special_ratio_min = _ratio()
    outpatient_special_ratio_min_higher = _ratio()  # for the catalogue's higher_floor diseases
    outpatient_special_ratio_layers = fields.String(
        load_default="all", validate=validate.OneOf(("all", "basic_insurance"))
    )
    own_payment_share_max = _ratio()
    own_payment_share_strict = fields.Boolean(load_default=False)  # "小于": exactly at the ceiling is not met
    county_inpatient_actual_ratio_min = _ratio()  # a county-wide figure: county statistics, not one bill
    special_treatment_insurance_ratio = _ratio()
    special_treatment_insurance_ratio_higher = _ratio()
    inpatient_ratio_by_level = fields.Dict(
        keys=fields.String(validate=validate.OneOf(HOSPITAL_LEVELS)),
        values=_ratio(),
        allow_none=True,
        load_default=None,
    )
    inpatient_ratio_by_grade = fields.Dict(
        keys=fields.String(validate=validate.OneOf(HOSPITAL_LEVELS)),
        values=fields.Dict(keys=fields.String(validate=validate.OneOf(HOSPITAL_GRADES)), values=_ratio()),
        load_default=None,
        allow_none=True,
    )
    # A referred stay outside the county: basic insurance's in-policy ratio never below this (seed 001 第2条).
    out_of_county_inpatient_ratio_min = _ratio()
    assistance_share_of_own_payment_min = _ratio()
    floor_categories = fields.List(
        fields.String(validate=validate.OneOf(CATEGORIES)), load_default=None, allow_none=True
    )
    floor_categories_by_floor = fields.Dict(
        keys=fields.String(validate=validate.OneOf(FLOOR_CODES)),
        values=fields.List(fields.String(validate=validate.OneOf(CATEGORIES))),
        load_default=None,
        allow_none=True,
    )
    free_treatment_diseases = fields.List(fields.String(), load_default=None, allow_none=True)
    uplifts = fields.Nested(_UpliftsSchema, load_default=None, allow_none=True)
    rural_income_previous_year = fields.Dict(
        keys=fields.Integer(), values=_amount(), load_default=None, allow_none=True
    )
    second_assistance = fields.Nested(_SecondAssistanceSchema, load_default=None, allow_none=True)
    charity_thresholds = fields.Dict(
        keys=fields.String(validate=validate.OneOf(CATEGORIES)), values=_amount(), load_default=None, allow_none=True
    )
    chain = fields.Nested(_ChainSchema, load_default=None, allow_none=True)
    notes = fields.String(load_default="")

    @validates_schema
    def _chain_needs_levels(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("chain") and not data.get("inpatient_ratio_by_level"):
            raise ValidationError("a chain needs inpatient_ratio_by_level", "chain")
        bands = (data.get("chain") or {}).get("critical_illness", {}).get("bands", [])
        if bands and (bands[0].get("from") is not None or any(b.get("from") is None for b in bands[1:])):
            raise ValidationError(
                "the first band starts at the deductible (no 'from'); later ones need 'from'",
                "chain.critical_illness.bands",
            )


class _CategoryPeriodSchema(Schema):
    class Meta:
        unknown = RAISE

    years = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, 20))
    until = fields.Date(load_default=None, allow_none=True)
    then = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(CATEGORIES))

    @validates_schema
    def _one_end(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("years") is None) == (data.get("until") is None):
            raise ValidationError("give either years or until", "years")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> CategoryPeriod:
        return CategoryPeriod(data["years"], data["until"], data["then"])


class _PackSchema(Schema):
    class Meta:
        unknown = RAISE

    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]*$"))
    name = fields.String(required=True)
    document = fields.String(allow_none=True, load_default=None)
    seed = fields.String(required=True)
    region = fields.Dict(required=True)
    valid_from = fields.Date(required=True)
    valid_until = fields.Date(allow_none=True, load_default=None)
    eligible_categories = fields.List(
        fields.String(validate=validate.OneOf(CATEGORIES)), required=True, validate=validate.Length(min=1)
    )
    referral_ladder = fields.List(fields.String(validate=validate.OneOf(("municipal", "provincial"))), required=True)
    deadlines_days = fields.Dict(
        keys=fields.String(validate=validate.OneOf(DEADLINE_KEYS)),
        values=fields.Integer(validate=validate.Range(1, 365)),
        required=True,
    )
    overdue_alerts = fields.Dict(
        keys=fields.String(validate=validate.OneOf(OVERDUE_STATES)),
        values=fields.String(validate=validate.OneOf(ALERT_TARGETS)),
        required=True,
    )
    icd10_source = fields.String(required=True)
    diseases = fields.List(fields.Nested(_DiseaseSchema), required=True, validate=validate.Length(min=1))
    money = fields.Nested(_MoneySchema, required=True)
    category_periods = fields.Dict(
        keys=fields.String(validate=validate.OneOf(CATEGORIES)),
        values=fields.Nested(_CategoryPeriodSchema),
        load_default=dict,
    )
    assistance_deadlines_days = fields.Dict(
        keys=fields.String(validate=validate.OneOf(ASSISTANCE_STEPS)),
        values=fields.Integer(validate=validate.Range(1, 365)),
        load_default=dict,
    )
    assumptions = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[a-z_][a-z0-9_]*(\.([a-z0-9_]+|\*))*$")),
        values=fields.String(validate=validate.Length(min=10)),
        load_default=dict,
    )

    @validates_schema
    def _check(self, data: dict[str, Any], **_: Any) -> None:
        region = data.get("region", {})
        if set(region) != {"code", "name"} or not str(region.get("code", "")).isdigit():
            raise ValidationError("needs exactly 'code' (GB/T 2260 digits) and 'name'", "region")
        missing = set(DEADLINE_KEYS) - set(data.get("deadlines_days", {}))
        if missing:
            raise ValidationError(f"missing {sorted(missing)}", "deadlines_days")
        missing = set(OVERDUE_STATES) - set(data.get("overdue_alerts", {}))
        if missing:
            raise ValidationError(f"missing {sorted(missing)}", "overdue_alerts")
        codes = [d.code for d in data.get("diseases", [])]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValidationError(f"duplicate disease codes {duplicates}", "diseases")
        unknown = set((data.get("money") or {}).get("free_treatment_diseases") or ()) - set(codes)
        if unknown:
            raise ValidationError(f"not in the catalogue: {sorted(unknown)}", "money.free_treatment_diseases")
        eligible = set(data.get("eligible_categories", []))
        for category, period in (data.get("category_periods") or {}).items():
            if category not in eligible or (period.then is not None and period.then not in eligible):
                raise ValidationError(f"{category}: the category and its 'then' must be eligible", "category_periods")
        until = data.get("valid_until")
        if until is not None and until < data["valid_from"]:
            raise ValidationError("ends before valid_from", "valid_until")

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> PolicyPack:
        return PolicyPack(
            code=data["code"],
            name=data["name"],
            document=data["document"],
            seed=data["seed"],
            region_code=str(data["region"]["code"]),
            region_name=data["region"]["name"],
            valid_from=data["valid_from"],
            valid_until=data["valid_until"],
            eligible_categories=tuple(data["eligible_categories"]),
            referral_ladder=tuple(data["referral_ladder"]),
            deadlines_days=dict(data["deadlines_days"]),
            overdue_alerts=dict(data["overdue_alerts"]),
            icd10_source=data["icd10_source"],
            diseases={d.code: d for d in data["diseases"]},
            money=data["money"],
            assumptions=dict(data["assumptions"]),
            category_periods=dict(data["category_periods"]),
            assistance_deadlines_days=dict(data["assistance_deadlines_days"]),
        )


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {'; '.join(messages)}"]
    return [f"{prefix}: {messages}"]


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}.{key}".strip("."))]
    if isinstance(tree, list):
        return [leaf for index, value in enumerate(tree) for leaf in _leaves(value, f"{prefix}.{index}")]
    return [(prefix, tree)]


def _resolves(raw: Any, parts: list[str]) -> bool:
    """Whether a dotted path names something in the raw pack (diseases are addressed by code, or *)."""
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    if isinstance(raw, list):  # the disease list
        entries = [e for e in raw if isinstance(e, dict) and (head == "*" or e.get("code") == head)]
        return bool(entries) and all(_resolves(e, rest) for e in entries)
    if isinstance(raw, dict):
        keys = [k for k in raw if head in ("*", str(k))]
        return bool(keys) and all(_resolves(raw[k], rest) for k in keys)
    return False


def load_pack(path: Path) -> PolicyPack:
    """Load and validate one pack; a broken pack raises PolicyPackError naming file and field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PolicyPackError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PolicyPackError(f"{path.name}: a pack is a mapping of fields")
    # YAML reads unquoted 0.90 as a float: refuse it, money must be exact.
    for key, value in _leaves(raw.get("money") or {}):
        if isinstance(value, float):
            raise PolicyPackError(f"{path.name}: money.{key}: write decimals as quoted strings")
    try:
        pack: PolicyPack = _PackSchema().load(raw)
    except ValidationError as exc:
        raise PolicyPackError(f"{path.name}: " + " | ".join(_flatten(exc.messages))) from exc
    unknown = [key for key in pack.assumptions if not _resolves(raw, key.split("."))]
    if unknown:
        raise PolicyPackError(f"{path.name}: assumptions: no such field {unknown}")
    if pack.code != path.stem:
        raise PolicyPackError(f"{path.name}: code: must equal the file name ({path.stem!r})")
    return pack


def load_packs(directory: Path = POLICY_DIR) -> dict[str, PolicyPack]:
    packs = [load_pack(p) for p in sorted(directory.glob("*.yaml"))]
    return {p.code: p for p in packs}


@cache
def packs() -> dict[str, PolicyPack]:
    """The packs shipped with the code, loaded once per process."""
    return load_packs()


def pack_for(region_codes: list[str], day: date, available: dict[str, PolicyPack] | None = None) -> PolicyPack | None:
    """The pack in force on ``day`` for the most specific of ``region_codes`` (county first).

    Among several packs for one region the newest in force wins, so a new policy year replaces
    the old one by being added, not by editing it.
    """
    available = packs() if available is None else available
    for region in region_codes:
        candidates = [p for p in available.values() if p.region_code == region and p.in_force_on(day)]
        if candidates:
            return max(candidates, key=lambda p: p.valid_from)
    return None
