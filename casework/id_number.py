"""Resident ID numbers (居民身份证号码, GB 11643-1999): 18 characters, ISO 7064 MOD 11-2 check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from operator import mul

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARACTERS = "10X98765432"
_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")
# First two digits: the province-level divisions of GB/T 2260 (incl. 71 Taiwan, 81/82 HK/Macau).
_PROVINCES = {
    "11",
    "12",
    "13",
    "14",
    "15",
    "21",
    "22",
    "23",
    "31",
    "32",
    "33",
    "34",
    "35",
    "36",
    "37",
    "41",
    "42",
    "43",
    "44",
    "45",
    "46",
    "50",
    "51",
    "52",
    "53",
    "54",
    "61",
    "62",
    "63",
    "64",
    "65",
    "71",
    "81",
    "82",
}


class InvalidIdNumber(ValueError):
    pass


@dataclass(frozen=True)
class ResidentId:
    number: str
    area_code: str
    birth_date: date
    sex: str  # "M" or "F": the sequence's last digit is odd for men


def check_character(first17: str) -> str:
    total = sum(map(mul, map(int, first17), _WEIGHTS))  # bulk imports check millions of these
    return _CHECK_CHARACTERS[total % 11]


def parse_id_number(value: str, today: date | None = None) -> ResidentId:
    """Validate and decode an ID number; a lowercase x is accepted and stored as X."""
    number = value.strip().upper()
    if len(number) != 18:
        raise InvalidIdNumber(f"must be 18 characters, got {len(number)}")
    if not _SHAPE.match(number):
        raise InvalidIdNumber("must be 17 digits followed by a digit or X")
    if number[:2] not in _PROVINCES:
        raise InvalidIdNumber(f"area code {number[:6]} is not a province-level division")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdNumber(f"birth date {number[6:14]} is not a date") from None
    if birth.year < 1900 or birth > (today or date.today()):
        raise InvalidIdNumber(f"birth date {birth.isoformat()} is impossible")
    if number[17] != check_character(number[:17]):
        raise InvalidIdNumber("check character does not match (GB 11643 MOD 11-2)")
    return ResidentId(number, number[:6], birth, "M" if int(number[16]) % 2 else "F")


def make_id_number(area_code: str, birth: date, sequence: int) -> str:
    """A well-formed ID number, for fixtures and the demo (``sequence`` 0–999; odd = male)."""
    first17 = f"{area_code}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def mask_id_number(number: str) -> str:
    """First 6 and last 4 shown: enough to tell people apart on a ledger, not to identify them."""
    return number[:6] + "*" * 8 + number[-4:]
