"""Money rules of the seeds, computed exactly (Decimal, to the fen, half up).

A bill is what a designated hospital records for one stay: total cost, the in-policy part, what
each layer paid and the patient's own payment. From it and the case's policy pack this module
computes the actual reimbursement ratios, checks each floor the pack sets (with the shortfall in
yuan where one is missed), and, for packs that give the whole chain (Longchuan), what each layer
should have paid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from workflows.policy_pack import PolicyPack

FEN = Decimal("0.01")
ZERO = Decimal("0")
LAYERS = (
    "basic_insurance",  # 基本医保
    "critical_illness_insurance",  # 大病保险
    "medical_assistance",  # 医疗救助
    "government_backstop",  # 兜底保障
    "charity",  # 慈善
    "other",  # 补充 and anything else
)
KINDS = ("inpatient", "outpatient_special")
# The layers as the people who pay them call them (the console, the policy page).
LAYER_LABELS = {
    "basic_insurance": "基本医保",
    "critical_illness_insurance": "大病保险",
    "medical_assistance": "医疗救助",
    "government_backstop": "兜底保障",
    "charity": "慈善救助",
    "other": "其他补充",
}


def fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    return None if denominator == 0 else (numerator / denominator).quantize(Decimal("0.0001"), ROUND_HALF_UP)


@dataclass(frozen=True)
class Bill:
    kind: str
    total: Decimal
    in_policy: Decimal
    layers: dict[str, Decimal]
    own_payment: Decimal
    referral_compliant: bool
    special_treatment: bool

    @property
    def reimbursed(self) -> Decimal:
        return sum(self.layers.values(), ZERO)

    @property
    def insurance(self) -> Decimal:
        return self.layers["basic_insurance"] + self.layers["critical_illness_insurance"]

    @property
    def own_in_policy_after_insurance(self) -> Decimal:
        """The in-policy cost insurance left to the patient: what assistance floors are measured on."""
        return max(ZERO, self.in_policy - self.insurance)


def bill_errors(bill: Bill) -> dict[str, list[str]]:
    """Field → messages for a bill that cannot be right; empty when it adds up."""
    errors: dict[str, list[str]] = {}
    amounts = {"total": bill.total, "in_policy": bill.in_policy, "own_payment": bill.own_payment, **bill.layers}
    for name, value in amounts.items():
        if value < 0:
            errors[name] = ["must not be negative"]
        elif value != fen(value):
            errors[name] = ["has more than two decimals"]
    if bill.in_policy > bill.total:
        errors.setdefault("in_policy", []).append("exceeds the total")
    if not errors and bill.reimbursed + bill.own_payment != bill.total:
        message = f"layers ({bill.reimbursed}) + own_payment ({bill.own_payment}) must equal total ({bill.total})"
        for name in ("total", "own_payment"):
            errors[name] = [message]
    return errors


@dataclass(frozen=True)
class FloorCheck:
    code: str
    label: str
    required: Decimal  # the floor (a minimum) or the ceiling (own payment share)
    actual: Decimal | None
    met: bool
    shortfall: Decimal  # yuan missing to reach the floor; 0 when met


@dataclass(frozen=True)
class Assessment:
    ratio_on_total: Decimal | None
    ratio_on_in_policy: Decimal | None
    own_payment_share: Decimal | None
    floors: list[FloorCheck] = field(default_factory=list)

    @property
    def shortfall(self) -> Decimal:
        """The largest shortfall: paying it makes every floor met (the floors overlap, they do not add)."""
        return max((check.shortfall for check in self.floors), default=ZERO)

    @property
    def below_floor(self) -> bool:
        return any(not check.met for check in self.floors)


def _minimum(code: str, label: str, floor: Decimal, numerator: Decimal, base: Decimal) -> FloorCheck:
    actual = _ratio(numerator, base)
    missing = fen(max(ZERO, floor * base - numerator))
    return FloorCheck(code, label, floor, actual, missing == 0, missing)


def own_payment_allowed(money: dict[str, Any], total: Decimal) -> Decimal | None:
    """The largest own payment the pack's ceiling lets a bill keep, to the fen (None: no ceiling).

    "小于10%" (seed 001 附件2) is strict: on a 10,000.00 bill 1,000.00 is not below 10%, 999.99 is.
    """
    ceiling = money.get("own_payment_share_max")
    if ceiling is None:
        return None
    limit = ceiling * total
    if money.get("own_payment_share_strict"):
        return max(ZERO, limit.quantize(FEN, rounding=ROUND_CEILING) - FEN)
    return fen(limit)


def basic_ratio(
    money: dict[str, Any], level: str | None, grade: str | None, out_of_county: bool = False
) -> Decimal | None:
    """Basic insurance's in-policy inpatient ratio for a hospital: by level, unless the pack gives its
    grade at that level another (seed 001 第2条: "县级及二级医疗机构 90%", "州市级三级医疗机构 75%"). A
    referred stay outside the county never gets less than the pack's out-of-county floor (第2条 "到县域外
    住院的，单人单次住院政策范围内报销比例不低于70%"), whatever the level's figure, or where it has none."""
    by_level = money.get("inpatient_ratio_by_level") or {}
    by_grade = (money.get("inpatient_ratio_by_grade") or {}).get(level) or {}
    ratio = by_grade[grade] if grade in by_grade else by_level.get(level)
    floor = money.get("out_of_county_inpatient_ratio_min") if out_of_county else None
    if floor is not None and (ratio is None or ratio < floor):
        return floor
    return ratio


# 县域内: hospitals of the county itself and below. Anything above county level is outside it, and so is a
# hospital whose region the county's code does not prefix (GB/T 2260 and 统计用区划代码 nest by prefix).
IN_COUNTY_LEVELS = ("village_clinic", "township", "county")


def outside_county(level: str, region_code: str, county_code: str) -> bool:
    """Whether a stay at a hospital of ``level`` in ``region_code`` is 县域外 for a case of ``county_code``."""
    return level not in IN_COUNTY_LEVELS or not region_code.startswith(county_code)


GRADE_LABELS = {"primary": "一级", "secondary": "二级", "tertiary": "三级"}
LEVEL_LABELS = {"village_clinic": "村", "township": "乡镇", "county": "县", "municipal": "州市", "provincial": "省"}


def covered_by_floor(pack: PolicyPack, floor: str, category: str | None) -> bool:
    """Whether a floor of the pack covers the category: each floor may name its own categories
    (seed 003 二(四)10: 2014/2015 exits keep the assistance preference but not the 90% backstop); without
    a list, every category the pack covers. ``None`` is a person the pack no longer covers on that day."""
    if category is None:
        return False
    own = (pack.money.get("floor_categories_by_floor") or {}).get(floor)
    categories = own if own is not None else pack.money.get("floor_categories")
    return category in (pack.eligible_categories if categories is None else categories)


def assess(
    bill: Bill,
    pack: PolicyPack,
    *,
    category: str | None,
    hospital_level: str | None,
    higher_floor: bool,
    hospital_grade: str | None = None,
    disease_code: str | None = None,
    out_of_county: bool = False,
) -> Assessment:
    """Ratios of one bill and every floor of the pack that applies to it. ``category`` is what the person
    counts as on the day of the stay (:meth:`PolicyPack.category_on`); None: no floor applies.
    ``out_of_county``: the hospital lies outside the case's county (:func:`outside_county`)."""
    money: dict[str, Any] = pack.money
    checks: list[FloorCheck] = []

    def applies(floor: str) -> bool:
        return covered_by_floor(pack, floor, category)

    if bill.kind == "inpatient" and bill.referral_compliant:
        floor = money.get("inpatient_actual_ratio_min")
        if floor is not None and applies("inpatient_actual_ratio"):
            base = bill.total if money.get("inpatient_actual_ratio_base") == "total" else bill.in_policy
            checks.append(_minimum("inpatient_actual_ratio", "住院实际补偿比例", floor, bill.reimbursed, base))
        ratio = basic_ratio(money, hospital_level, hospital_grade)
        if ratio is not None and applies("basic_ratio_by_level"):
            where = LEVEL_LABELS.get(hospital_level or "", "") + GRADE_LABELS.get(hospital_grade or "", "")
            checks.append(
                _minimum(
                    "basic_ratio_by_level",
                    f"基本医保{where}医疗机构住院报销比例",
                    ratio,
                    bill.layers["basic_insurance"],
                    bill.in_policy,
                )
            )
        out_floor = money.get("out_of_county_inpatient_ratio_min")
        if out_of_county and out_floor is not None and applies("out_of_county_ratio"):
            # Its own line beside the level's: the seed gives it as a separate guarantee per person and stay,
            # and it decides alone where the level's figure is lower or missing. Measured like the level ratios
            # of the same sentence, on basic insurance (第2条 is 落实基本医保倾斜政策).
            checks.append(
                _minimum(
                    "out_of_county_ratio",
                    "县域外转诊住院政策范围内报销比例",
                    out_floor,
                    bill.layers["basic_insurance"],
                    bill.in_policy,
                )
            )
        if bill.special_treatment and applies("special_treatment_insurance"):
            key = "special_treatment_insurance_ratio_higher" if higher_floor else "special_treatment_insurance_ratio"
            if money.get(key) is not None:
                checks.append(
                    _minimum(
                        "special_treatment_insurance",
                        "大病专项救治基本医保+大病保险实际报销",
                        money[key],
                        bill.insurance,
                        bill.total,
                    )
                )
        allowed = own_payment_allowed(money, bill.total)
        if allowed is not None and bill.total > 0 and applies("own_payment_share"):
            excess = max(ZERO, bill.own_payment - allowed)
            checks.append(
                FloorCheck(
                    "own_payment_share",
                    "个人自付比例" + ("（小于）" if money.get("own_payment_share_strict") else ""),
                    money["own_payment_share_max"],
                    _ratio(bill.own_payment, bill.total),
                    excess == 0,
                    excess,
                )
            )
    outpatient_key = "outpatient_special_ratio_min_higher" if higher_floor else "outpatient_special_ratio_min"
    outpatient_floor = money.get(outpatient_key)
    if outpatient_floor is None:
        outpatient_floor = money.get("outpatient_special_ratio_min")
    if bill.kind == "outpatient_special" and outpatient_floor is not None and applies("outpatient_special_ratio"):
        # Seed 001 第2条 sets the outpatient ratio inside 基本医保倾斜政策: basic insurance's own ratio; seed
        # 003's "门诊特殊慢性病医疗费用实际报销比例" is the actual ratio, every layer together.
        on_basic = money.get("outpatient_special_ratio_layers") == "basic_insurance"
        checks.append(
            _minimum(
                "outpatient_special_ratio",
                "门诊政策范围内基本医保报销比例" if on_basic else "门诊特殊慢性病实际报销比例",
                outpatient_floor,
                bill.layers["basic_insurance"] if on_basic else bill.reimbursed,
                bill.in_policy,
            )
        )
    free = disease_code is not None and disease_code in (money.get("free_treatment_diseases") or ())
    if free and applies("free_treatment"):
        # Seed 002 四(四): "门诊与住院免费救治": nothing is left to the patient, outpatient or inpatient.
        checks.append(
            FloorCheck(
                "free_treatment",
                "免费救治（个人自付为零）",
                ZERO,
                _ratio(bill.own_payment, bill.total),
                bill.own_payment == 0,
                bill.own_payment,
            )
        )
    assistance_floor = money.get("assistance_share_of_own_payment_min")
    if applies("assistance_share") and assistance_floor is not None and bill.own_in_policy_after_insurance > 0:
        checks.append(
            _minimum(
                "assistance_share",
                "医疗救助占政策范围内自付比例",
                assistance_floor,
                bill.layers["medical_assistance"],
                bill.own_in_policy_after_insurance,
            )
        )
    return Assessment(
        ratio_on_total=_ratio(bill.reimbursed, bill.total),
        ratio_on_in_policy=_ratio(bill.reimbursed, bill.in_policy),
        own_payment_share=_ratio(bill.own_payment, bill.total),
        floors=checks,
    )


# --- the year: own payment to date against the thresholds of the pack ---------------------------


@dataclass(frozen=True)
class YearPosition:
    year: int
    own_payment_to_date: Decimal
    rural_income: Decimal | None  # the county's previous-year rural per-capita disposable income
    over_rural_income: Decimal | None  # how far the own payment exceeds it (None when unknown)
    second_assistance_due: Decimal | None  # Qidong: 40% of yearly inpatient own payment over 10,000, capped
    charity_eligible: bool | None  # Qidong: yearly own payment at the category's threshold
    inpatient_own_to_date: Decimal | None = None  # what second assistance is measured on, when it differs
    # Paid by the assistance review chain this year, by layer (second assistance: medical_assistance; charity).
    assistance_paid: dict[str, Decimal] = field(default_factory=dict)
    own_after_assistance: Decimal | None = None  # the own payment less what the chain paid back


def year_position(
    pack: PolicyPack,
    year: int,
    own_to_date: Decimal,
    category: str | None,
    *,
    inpatient_own_to_date: Decimal | None = None,
    assistance_paid: dict[str, Decimal] | None = None,
) -> YearPosition:
    """Where a person stands in the year. ``inpatient_own_to_date`` is the own payment of the
    catalogue disease's inpatient stays only (seed 004 二(三) "年度住院医疗费用自负"): second
    assistance is measured on it; without it, on the whole own payment. ``assistance_paid`` is what
    the review chain paid, by layer: charity counts the own payment left after medical assistance
    (二(四) "医疗救助支付后，自付费用年度累计"), second assistance included."""
    paid = {layer: fen(amount) for layer, amount in (assistance_paid or {}).items() if amount}
    money = pack.money
    income = (money.get("rural_income_previous_year") or {}).get(year)
    over = None if income is None else fen(max(ZERO, own_to_date - income))
    second = money.get("second_assistance")
    second_due = None
    if second:
        base = own_to_date if inpatient_own_to_date is None else inpatient_own_to_date
        second_due = fen(min(second["cap"], max(ZERO, base - second["threshold"]) * second["ratio"]))
    thresholds = money.get("charity_thresholds") or {}
    after_assistance = own_to_date - paid.get("medical_assistance", ZERO)
    charity = None if category not in thresholds else after_assistance >= thresholds[category]
    inpatient = None if inpatient_own_to_date is None else fen(inpatient_own_to_date)
    own_after = fen(max(ZERO, own_to_date - sum(paid.values(), ZERO)))
    return YearPosition(year, fen(own_to_date), income, over, second_due, charity, inpatient, paid, own_after)


# --- the chain of a pack that gives it whole (Longchuan) ------------------------------------------


@dataclass(frozen=True)
class YearToDate:
    """What earlier stays of the calendar year used up, for the chain's yearly bands and caps."""

    critical_illness_base: Decimal = ZERO  # in-policy cost left after basic insurance, summed
    assistance_paid: Decimal = ZERO
    own_payment: Decimal = ZERO
    critical_illness_paid: Decimal = ZERO  # against the yearly cap of critical-illness insurance
    inpatient_own_payment: Decimal = ZERO  # own payment of inpatient stays only (seed 004 二(三))


def _band_amount(start: Decimal, end: Decimal, bands: list[dict[str, Decimal]]) -> Decimal:
    """Pay the slice [start, end) of the year's cumulative base, band by band."""
    paid = ZERO
    for index, band in enumerate(bands):
        low = band["from"]
        high = bands[index + 1]["from"] if index + 1 < len(bands) else None
        overlap_start = max(start, low)
        overlap_end = end if high is None else min(end, high)
        if overlap_end > overlap_start:
            paid += (overlap_end - overlap_start) * band["ratio"]
    return paid


def expected_layers(
    bill: Bill,
    pack: PolicyPack,
    *,
    year: int,
    hospital_level: str,
    higher_floor: bool,
    ytd: YearToDate,
    hospital_grade: str | None = None,
    out_of_county: bool = False,
) -> dict[str, Decimal] | None:
    """What each layer should pay under the pack's chain, or None where the pack gives no chain
    (or the stay falls outside it: outpatient, or not following the referral rules)."""
    chain = pack.money.get("chain")
    if not chain or bill.kind != "inpatient" or not bill.referral_compliant:
        return None
    if year not in chain["critical_illness"]["deductible_by_year"]:
        return None  # the pack has no figures for that year: nothing to compare against, rather than a guess
    ratio = basic_ratio(pack.money, hospital_level, hospital_grade, out_of_county)
    if ratio is None:
        return None  # a hospital level the pack gives no basic-insurance ratio for: no chain to compute
    basic = fen(bill.in_policy * ratio)
    left = bill.in_policy - basic
    if bill.special_treatment:
        # 单病种: basic + critical-illness insurance together pay the special-treatment ratio of the cost.
        key = "special_treatment_insurance_ratio_higher" if higher_floor else "special_treatment_insurance_ratio"
        critical = fen(max(ZERO, pack.money[key] * bill.total - basic))
    else:
        critical_rules = chain["critical_illness"]
        deductible = critical_rules["deductible_by_year"][year]
        bands = [{"from": deductible, "ratio": critical_rules["bands"][0]["ratio"]}, *critical_rules["bands"][1:]]
        start = ytd.critical_illness_base
        critical = fen(_band_amount(start, start + left, bands))
    cap = (chain["critical_illness"].get("annual_cap_by_year") or {}).get(year)
    if cap is not None:
        critical = max(ZERO, min(critical, cap - ytd.critical_illness_paid))
    assistance_rules = chain["assistance"]
    track = assistance_rules["major_disease" if bill.special_treatment else "ordinary"]
    target = assistance_rules["target_ratio"] * bill.in_policy
    gap = max(ZERO, target - basic - critical)
    remaining_own = max(ZERO, bill.in_policy - basic - critical)
    assistance = min(gap, track["rate"] * remaining_own)
    if bill.special_treatment and track.get("out_of_policy_rate") is not None:
        assistance += track["out_of_policy_rate"] * (bill.total - bill.in_policy)
    assistance = fen(max(ZERO, min(assistance, track["cap"] - ytd.assistance_paid)))
    backstop = fen(max(ZERO, chain["backstop"]["target_ratio"] * bill.in_policy - basic - critical - assistance))
    own = bill.total - basic - critical - assistance - backstop
    income = (pack.money.get("rural_income_previous_year") or {}).get(year)
    if income is not None and ytd.own_payment + own > income:
        over = min(own, ytd.own_payment + own - income)
        backstop += over
        own -= over
    # The backstop also meets the pack's own-payment ceiling (附件2 "实际自付比例小于10%", screened per patient
    # with the 差额 counted): the chain must never leave a bill its own floors call short.
    allowed = own_payment_allowed(pack.money, bill.total)
    if allowed is not None and own > allowed:
        backstop += own - allowed
        own = allowed
    return {
        "basic_insurance": basic,
        "critical_illness_insurance": critical,
        "medical_assistance": assistance,
        "government_backstop": fen(backstop),
        "charity": ZERO,
        "other": ZERO,
        "own_payment": fen(own),
    }
