"""The policy page: a pack's figures as the console shows them, each marked where the pack assumes it
rather than quotes it from its seed (the pack's ``assumptions``, also served by GET /api/v1/policies/{code})."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows.money import GRADE_LABELS, LAYER_LABELS, LEVEL_LABELS
from workflows.policy_pack import CATEGORY_LABELS, DEADLINE_KEYS, PolicyPack

DEADLINE_LABELS = {
    "screened": "筛查后确诊（天）",
    "confirmed": "确诊后分配医院（天）",
    "assigned": "分配后入院（天）",
    "referred": "专家组处理转诊（天）",
    "settlement_after_discharge": "出院后结算（天）",
    "follow_up_grace": "随访宽限（天）",
    "alert_escalation": "预警升级（天）",
}
ASSISTANCE_STEP_LABELS = {
    "raised": "村（居）审核（天）",
    "village_reviewed": "镇（街道）审核（天）",
    "town_reviewed": "基金审批（天）",
    "approved": "发放（天）",
}
# The first part of a money path: what the figure is about. Nested parts are shown as they are.
MONEY_LABELS = {
    "inpatient_actual_ratio_min": "住院实际报销比例不低于",
    "inpatient_actual_ratio_base": "住院实际报销比例的基数",
    "outpatient_special_ratio_min": "门诊特殊慢性病报销比例不低于",
    "outpatient_special_ratio_min_higher": "门诊报销比例不低于（重性精神病、终末期肾病等）",
    "outpatient_special_ratio_layers": "门诊报销比例计入的保障",
    "own_payment_share_max": "住院个人自付比例上限",
    "own_payment_share_strict": "自付比例须严格小于上限",
    "county_inpatient_actual_ratio_min": "县域内住院实际报销比例不低于（全县统计）",
    "special_treatment_insurance_ratio": "专项救治基本医保+大病保险实际报销",
    "special_treatment_insurance_ratio_higher": "专项救治实际报销（重性精神病、终末期肾病）",
    "inpatient_ratio_by_level": "基本医保住院报销比例（按医院级别）",
    "inpatient_ratio_by_grade": "基本医保住院报销比例（按医院等级）",
    "out_of_county_inpatient_ratio_min": "县域外转诊住院政策范围内报销比例不低于",
    "assistance_share_of_own_payment_min": "医疗救助占政策范围内自付不低于",
    "floor_categories": "适用人员类别",
    "floor_categories_by_floor": "各项要求的适用人员类别",
    "free_treatment_diseases": "免费救治病种",
    "uplifts": "比普通居民的倾斜",
    "rural_income_previous_year": "上年度农村居民人均可支配收入（元）",
    "second_assistance": "二次救助",
    "charity_thresholds": "慈善救助年度自付门槛（元）",
    "chain": "报销顺序与比例",
}


# The parts below a money key, and the values that are codes: in the words of the page.
PART_LABELS = {
    **CATEGORY_LABELS,
    **{level: f"{name}级医院" for level, name in LEVEL_LABELS.items()},
    **{grade: f"{name}医院" for grade, name in GRADE_LABELS.items()},
    "threshold": "起点（元）",
    "ratio": "比例",
    "rate": "比例",
    "cap": "封顶（元）",
    "from": "起",
    "bands": "分段",
    "target_ratio": "目标比例",
    "backstop": "兜底",
    "assistance": "医疗救助",
    "assistance_share": "医疗救助比例",
    "critical_illness": "大病保险",
    "critical_illness_deductible_cut": "大病保险起付线降低",
    "critical_illness_ratio_points": "大病保险报销比例提高（百分点）",
    "inpatient_ratio_points": "住院报销比例提高（百分点）",
    "outpatient_special_ratio_points": "门诊特殊慢性病报销比例提高（百分点）",
    "inpatient_deductible_waived": "免住院起付线",
    "outpatient_special_deductible_waived": "免门诊特殊慢性病起付线",
    "second_reimbursement": "二次报销",
    "annual_cap_by_year": "年度封顶（按年）",
    "deductible_by_year": "起付线（按年）",
    "major_disease": "重大疾病",
    "ordinary": "一般疾病",
    "out_of_policy_rate": "政策范围外费用比例",
}
VALUE_LABELS = {
    **CATEGORY_LABELS,
    **LAYER_LABELS,
    "in_policy": "政策范围内费用",
    "all": "全部",
    "severe_mental_illness": "重性精神病",
}


@dataclass(frozen=True)
class Row:
    path: str  # the pack's own dotted path, as the assumptions name it
    label: str
    value: str
    assumed: str | None  # why, when the pack assumes the figure


def _leaves(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for key, inner in value.items() for leaf in _leaves(inner, f"{path}.{key}")]
    if isinstance(value, list | tuple) and value and isinstance(value[0], dict):
        return [leaf for i, inner in enumerate(value) for leaf in _leaves(inner, f"{path}.{i}")]
    return [(path, value)]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list | tuple):
        return "、".join(_shown(v) for v in value)
    return VALUE_LABELS.get(str(value), str(value))


def deadline_rows(pack: PolicyPack) -> list[Row]:
    rows = [
        Row(f"deadlines_days.{key}", DEADLINE_LABELS[key], str(pack.deadlines_days[key]),
            pack.assumed(f"deadlines_days.{key}"))
        for key in DEADLINE_KEYS
        if key in pack.deadlines_days
    ]  # fmt: skip
    rows += [
        Row(f"assistance_deadlines_days.{key}", ASSISTANCE_STEP_LABELS.get(key, key), str(days),
            pack.assumed(f"assistance_deadlines_days.{key}"))
        for key, days in pack.assistance_deadlines_days.items()
    ]  # fmt: skip
    return rows


def money_rows(pack: PolicyPack) -> list[Row]:
    """Every figure the pack sets (nothing for what it leaves unset), each with its assumption if any."""
    rows = []
    for key, value in pack.money.items():
        if key == "notes" or value is None or value == {} or value == []:
            continue
        for path, leaf in _leaves(value, f"money.{key}"):
            if leaf is None:
                continue
            detail = path.removeprefix(f"money.{key}").lstrip(".")
            parts = " · ".join(PART_LABELS.get(part, part) for part in detail.split(".")) if detail else ""
            label = MONEY_LABELS.get(key, key) + (f"：{parts}" if parts else "")
            rows.append(Row(path, label, _shown(leaf), pack.assumed(path)))
    return rows
