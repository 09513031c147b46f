"""Chinese for the services' and marshmallow's field messages: one table, most specific first.

The services speak English (the API's problem+json carries it); the console shows users Chinese
next to the field. A message the table does not know is shown as it is, behind a Chinese lead.
"""

from __future__ import annotations

import re

_LEVELS = {"municipal": "市级", "provincial": "省级"}

TABLE: list[tuple[str, str]] = [
    # marshmallow
    (r"^Missing data for required field\.$", "必填"),
    (r"^Field may not be null\.$", "必填"),
    (r"^Not a valid (aware )?datetime\.$", "请填写正确的日期时间"),
    (r"^Not a valid date\.$", "请填写正确的日期"),
    (r"^Not a valid integer\.$", "请填写整数"),
    (r"^Not a valid string\.$", "请填写文字"),
    (r"^Must be greater than or equal to (\S+) and less than or equal to (\S+)\.$", r"须在 \1 到 \2 之间"),
    (r"^Shorter than minimum length 1\.$", "不能为空"),
    (r"^Length must be between 1 and (\d+)\.$", r"不能为空，最多 \1 字"),
    (r"^Longer than maximum length (\d+)\.$", r"最多 \1 字"),
    (r"^Must be one of: .*\.$", "请从列表中选择"),
    (r"^Unknown field\.$", "不认识的字段"),
    # the machine's guards
    (r"^not an ICD-10 code", "不是有效的 ICD-10 编码（如 C15.9）"),
    (r"^(\S+) is not \S+ \(ICD-10 (.*)\)$", r"诊断编码 \1 与该病种不符（应为 ICD-10 \2）"),
    (r"^no such hospital$", "没有这家医院"),
    (r"^no such expert group$", "没有这个专家组"),
    (r"is not designated for", "该医院不是此病种在本政策下的定点医院"),
    (r"^the case is already at the top of the referral ladder$", "已是最高一级专家组，不能再上转"),
    (r"^must be the (municipal|provincial) expert group of the case's region$", "须为本地区的{level}专家组"),
    (r"^must be a partner hospital of the expert group", "须为专家组的对口医院，或更高级别的定点医院"),
    (r"^lies in the future$", "不能晚于当前时间"),
    (r"^lies before the case was screened$", "不能早于筛查时间"),
    (r"^lies after discharge$", "不能晚于出院时间"),
    (r"needs a reason$", "请填写理由"),
    (r"cannot happen", "当前状态下不能进行此操作"),
    # persons and screening
    (r"^must be 18 characters, got (\d+)$", r"须为 18 位，现为 \1 位"),
    (r"^must be 17 digits followed by a digit or X$", "须为 17 位数字加一位数字或 X"),
    (r"^area code (\d+) is not a province-level division$", r"地区码 \1 不是省级行政区划"),
    (r"^birth date (\S+) is not a date$", r"出生日期 \1 不是有效日期"),
    (r"^birth date (\S+) is impossible$", r"出生日期 \1 不合理"),
    (r"^check character does not match", "校验位不符（GB 11643 MOD 11-2），请核对号码"),
    (r"^must not be empty$", "不能为空"),
    (r"^no such village$", "没有这个村"),
    (r"^outside your area$", "不在您的辖区内"),
    (r"^no such person in your area$", "辖区内没有此人"),
    (r"^not in the catalogue of", "不在当地救治政策的病种目录中"),
    (r"^category \S+ is not eligible under", "该人员类别不在当地政策救治范围内"),
    (r"covers patients up to (\d+)$", r"该病种只救治 \1 岁及以下的患者"),
    (r"^no policy in force", "筛查时当地没有有效的救治政策"),
    # the assistance review chain
    (r"^exceeds the approved (\S+)$", r"不能超过批准金额 \1 元"),
    (r"has no (second_assistance|charity) rule$", "当地政策没有此类救助"),
    (r"^the person already has a \S+ application for (\d+)$", r"此人 \1 年度已有此类救助申请"),
    (r"^Not a valid number\.$", "请填写金额，如 1234.50"),
    # bills and visits
    (r"^must not be negative$", "不能为负数"),
    (r"^has more than two decimals$", "最多两位小数"),
    (r"^exceeds the total$", "不能超过总费用"),
    (
        r"^layers \((.*)\) \+ own_payment \((.*)\) must equal total \((.*)\)$",
        r"各项报销合计（\1）加个人自付（\2）须等于总费用（\3）",
    ),
    (r"^must come after the visit$", "须晚于本次随访时间"),
    (r"^give yuan as a decimal string", "请填写金额，如 1234.50"),
    (r"^not a decimal amount$", "请填写金额，如 1234.50"),
]

_COMPILED = [(re.compile(pattern), chinese) for pattern, chinese in TABLE]


def in_chinese(message: str) -> str:
    for pattern, chinese in _COMPILED:
        match = pattern.search(message)
        if match:
            if "{level}" in chinese:
                return chinese.format(level=_LEVELS.get(match.group(1), match.group(1)))
            return match.expand(chinese) if "\\" in chinese else chinese
    return f"输入有误：{message}"


def field_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Service errors keyed by the form's field names (``data.plan`` → ``plan``), in Chinese."""
    out: dict[str, list[str]] = {}
    for key, messages in errors.items():
        name = key.removeprefix("data.")
        out.setdefault(name, []).extend(in_chinese(m) for m in messages)
    return out
