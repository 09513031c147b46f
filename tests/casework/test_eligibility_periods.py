"""Screening asks the pack whether it covers the person's category on the day of screening."""

from __future__ import annotations

from datetime import date

import pytest

from casework.errors import ValidationFailed
from casework.services.cases import screen
from tests.conftest import actor_for_unit, at, new_person

QIDONG = "320681"


def _qidong_exit(session, since: date):
    person = new_person(session, QIDONG, category="poor_exited_supported")
    person.category_since = since
    session.commit()
    return person


def test_qidong_exit_is_covered_for_two_years_then_refused(session):
    # Seed 004 三(三): "脱贫后相关政策延续两年（包括2016年脱贫的对象）".
    coordinator = actor_for_unit(session, "county_coordinator", QIDONG)
    recent = _qidong_exit(session, date(2016, 12, 1))
    case = screen(session, coordinator, person_id=recent.id, disease_code="lung_cancer", source="health_check",
                  screened_at=at(2018, 6, 1, 9), now=at(2018, 6, 2, 9))
    assert case["category"] == "poor_exited_supported"
    lapsed = _qidong_exit(session, date(2016, 1, 1))  # two years ended on 2018-01-01
    with pytest.raises(ValidationFailed) as caught:
        screen(session, coordinator, person_id=lapsed.id, disease_code="lung_cancer", source="health_check",
               screened_at=at(2018, 6, 1, 9), now=at(2018, 6, 2, 9))
    assert "person_id" in caught.value.errors
