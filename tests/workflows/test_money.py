"""Hand-computed bills against the seeds' money rules, exact to the fen.

Each expected figure is worked out in the comment above it from the seed's article, so a change in
the code or the pack that moves a fen fails here.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from workflows.money import Bill, YearToDate, assess, bill_errors, expected_layers, year_position
from workflows.policy_pack import packs

LONGCHUAN, NANNING, QIDONG = packs()["longchuan-2017"], packs()["nanning-2019"], packs()["qidong-2017"]


def bill(
    total,
    in_policy,
    basic="0",
    critical="0",
    assistance="0",
    backstop="0",
    charity="0",
    other="0",
    own="0",
    kind="inpatient",
    compliant=True,
    special=False,
) -> Bill:
    return Bill(
        kind,
        D(total),
        D(in_policy),
        {
            "basic_insurance": D(basic),
            "critical_illness_insurance": D(critical),
            "medical_assistance": D(assistance),
            "government_backstop": D(backstop),
            "charity": D(charity),
            "other": D(other),
        },
        D(own),
        compliant,
        special,
    )


def floors(assessment):
    return {c.code: (c.met, c.shortfall) for c in assessment.floors}


# --- Longchuan (seed 001): the whole chain ----------------------------------------------------------


def test_longchuan_county_stay_sits_exactly_on_the_90_percent_floor():
    # County hospital 90% of 18,000 in-policy = 16,200 (第2条, no deductible). 1,800 left < 2018 deductible 4,931:
    # no critical-illness payment. Assistance tops up to 90% of in-policy: already there. Own 3,800 < 9,862.
    b = bill("20000.00", "18000.00", basic="16200.00", own="3800.00")
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level="county", higher_floor=False, ytd=YearToDate())
    assert expected == {
        "basic_insurance": D("16200.00"),
        "critical_illness_insurance": D("0.00"),
        "medical_assistance": D("0.00"),
        "government_backstop": D("0.00"),
        "charity": D("0"),
        "other": D("0"),
        "own_payment": D("3800.00"),
    }
    result = assess(b, LONGCHUAN, category="poor_not_exited", hospital_level="county", higher_floor=False)
    assert result.ratio_on_in_policy == D("0.9000") and result.ratio_on_total == D("0.8100")
    # 90% exactly is met; the own-payment share 19% misses the 10% ceiling by 3,800 - 2,000 = 1,800.00.
    assert floors(result) == {
        "inpatient_actual_ratio": (True, D("0.00")),
        "basic_ratio_by_level": (True, D("0.00")),
        "own_payment_share": (False, D("1800.00")),
    }
    assert result.shortfall == D("1800.00") and result.below_floor


def test_longchuan_stay_across_the_50000_critical_illness_band():
    # Municipal 75% of 140,000 = 105,000; 35,000 left, on top of 30,000 earlier this year: the slice
    # [30,000, 65,000) pays 70% up to 50,000 (14,000) and 80% above (12,000) = 26,000 (第3条).
    # 90% target 126,000 < 131,000 paid: no assistance, no ratio backstop. Own 19,000 exceeds the 2018
    # rural income 9,862 by 9,138: the backstop covers it (第5条), own payment 9,862.00.
    b = bill("150000.00", "140000.00")
    ytd = YearToDate(critical_illness_base=D("30000.00"))
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level="municipal", higher_floor=False, ytd=ytd)
    assert (
        expected["basic_insurance"],
        expected["critical_illness_insurance"],
        expected["medical_assistance"],
        expected["government_backstop"],
        expected["own_payment"],
    ) == (D("105000.00"), D("26000.00"), D("0.00"), D("9138.00"), D("9862.00"))
    assert sum(expected.values()) == D("150000.00")


def test_longchuan_critical_illness_deductible_and_fen_rounding():
    # Township 95% of 123,456.78 = 117,283.941 -> 117,283.94; 6,172.84 left, of which 6,172.84 - 4,931 = 1,241.84
    # above the deductible at 70% = 869.288 -> 869.29.
    b = bill("123456.78", "123456.78")
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level="township", higher_floor=False, ytd=YearToDate())
    assert (expected["basic_insurance"], expected["critical_illness_insurance"]) == (D("117283.94"), D("869.29"))


def test_longchuan_special_treatment_stay_and_its_discrepancies():
    # 单病种 oesophageal cancer at the municipal hospital: basic 75% of 10,000 = 7,500; basic + critical pay 85%
    # (第6条) so critical 1,000. Major-disease assistance: gap to 90% is 500, 60% of the 1,500 left is 900: 500.
    b = bill("10000.00", "10000.00", special=True)
    expected = expected_layers(
        b, LONGCHUAN, year=2018, hospital_level="municipal", higher_floor=False, ytd=YearToDate()
    )
    assert (
        expected["basic_insurance"],
        expected["critical_illness_insurance"],
        expected["medical_assistance"],
        expected["government_backstop"],
        expected["own_payment"],
    ) == (D("7500.00"), D("1000.00"), D("500.00"), D("0.00"), D("1000.00"))
    on_target = bill(
        "10000.00", "10000.00", basic="7500.00", critical="1000.00", assistance="500.00", own="1000.00", special=True
    )
    result = assess(on_target, LONGCHUAN, category="poor_not_exited", hospital_level="municipal", higher_floor=False)
    assert not result.below_floor  # 90% actual, 85% insurance, own share 10% exactly: every floor met at its edge
    # The hospital recorded 100 less assistance: 89% actual (short 100.00) and 11% own share (100.00 over).
    short = bill(
        "10000.00", "10000.00", basic="7500.00", critical="1000.00", assistance="400.00", own="1100.00", special=True
    )
    result = assess(short, LONGCHUAN, category="poor_not_exited", hospital_level="municipal", higher_floor=False)
    assert floors(result)["inpatient_actual_ratio"] == (False, D("100.00"))
    assert floors(result)["own_payment_share"] == (False, D("100.00"))
    assert floors(result)["special_treatment_insurance"] == (True, D("0.00"))


def test_longchuan_higher_floor_for_end_stage_renal_disease():
    # 90% from basic + critical for 终末期肾病: at 88% the insurers are 200.00 short on a 10,000 bill.
    b = bill(
        "10000.00", "10000.00", basic="8000.00", critical="800.00", assistance="200.00", own="1000.00", special=True
    )
    result = assess(b, LONGCHUAN, category="poor_not_exited", hospital_level="county", higher_floor=True)
    assert floors(result)["special_treatment_insurance"] == (False, D("200.00"))


def test_longchuan_no_chain_outside_referral_rules():
    b = bill("1000.00", "1000.00", compliant=False)
    assert (
        expected_layers(b, LONGCHUAN, year=2018, hospital_level="county", higher_floor=False, ytd=YearToDate()) is None
    )


def test_longchuan_year_over_rural_income():
    position = year_position(LONGCHUAN, 2018, D("12000.00"), "poor_not_exited")
    assert (position.rural_income, position.over_rural_income) == (D("9862.00"), D("2138.00"))


# --- Nanning (seed 003): floors for 未脱贫 and the continued-support period ------------------------------


def test_nanning_assistance_exactly_at_80_percent():
    # In-policy own payment after insurance 25,000 - 20,000 = 5,000; assistance 4,000 = 80%: met at the edge.
    b = bill(
        "30000.00",
        "25000.00",
        basic="18000.00",
        critical="2000.00",
        assistance="4000.00",
        backstop="500.00",
        own="5500.00",
    )
    result = assess(b, NANNING, category="poor_not_exited", hospital_level="county", higher_floor=False)
    assert floors(result) == {"inpatient_actual_ratio": (True, D("0.00")), "assistance_share": (True, D("0.00"))}
    assert result.ratio_on_in_policy == D("0.9800")


def test_nanning_assistance_short_by_1000():
    b = bill(
        "30000.00",
        "25000.00",
        basic="18000.00",
        critical="2000.00",
        assistance="3000.00",
        backstop="500.00",
        own="6500.00",
    )
    result = assess(b, NANNING, category="poor_exited_supported", hospital_level="county", higher_floor=False)
    assert floors(result)["assistance_share"] == (False, D("1000.00"))
    assert floors(result)["inpatient_actual_ratio"] == (True, D("0.00"))  # 23,500 / 25,000 = 94%


def test_nanning_floors_do_not_cover_2014_2015_exits():
    b = bill("30000.00", "25000.00", basic="10000.00", own="20000.00")
    assert (
        assess(b, NANNING, category="poor_exited_2014_2015", hospital_level="county", higher_floor=False).floors == []
    )


def test_nanning_special_chronic_outpatient_80_percent():
    # 1,500 of 2,000 = 75%: 100.00 short of 80%; assistance 300 of the 800 left = 37.5%: 340.00 short of 80%.
    b = bill("2000.00", "2000.00", basic="1200.00", assistance="300.00", own="500.00", kind="outpatient_special")
    result = assess(b, NANNING, category="poor_not_exited", hospital_level=None, higher_floor=False)
    assert floors(result) == {
        "outpatient_special_ratio": (False, D("100.00")),
        "assistance_share": (False, D("340.00")),
    }
    assert result.shortfall == D("340.00")


# --- Qidong (seed 004): assistance 70%, second assistance, charity ----------------------------------------


def test_qidong_assistance_at_70_percent_and_one_fen_below():
    at_floor = bill("50000.00", "45000.00", basic="30000.00", critical="5000.00", assistance="7000.00", own="8000.00")
    assert floors(assess(at_floor, QIDONG, category="subsistence", hospital_level="county", higher_floor=False)) == {
        "assistance_share": (True, D("0.00"))
    }
    one_fen = bill("50000.00", "45000.00", basic="30000.00", critical="5000.00", assistance="6999.99", own="8000.01")
    assert floors(assess(one_fen, QIDONG, category="subsistence", hospital_level="county", higher_floor=False)) == {
        "assistance_share": (False, D("0.01"))
    }


@pytest.mark.parametrize(
    ("category", "own", "second", "charity"),
    [
        ("subsistence", "35000.00", "10000.00", True),  # 40% of 25,000 over 10,000; 低保户 charity from 30,000
        ("poor_not_exited", "35000.00", "10000.00", False),  # 低收入户 need 60,000
        ("poor_not_exited", "90000.00", "30000.00", True),  # 40% of 80,000 = 32,000, capped 30,000
        ("subsistence", "9000.00", "0.00", False),  # below the 10,000 threshold
    ],
)
def test_qidong_year_position(category, own, second, charity):
    position = year_position(QIDONG, 2018, D(own), category)
    assert (position.second_assistance_due, position.charity_eligible) == (D(second), charity)
    assert position.rural_income is None  # the seed sets no income threshold: unknown, not invented


# --- bills that cannot be right --------------------------------------------------------------------


def test_layers_must_add_up_and_nothing_negative():
    assert set(bill_errors(bill("100.00", "100.00", basic="50.00", own="40.00"))) == {"total", "own_payment"}
    assert "basic_insurance" in bill_errors(bill("100.00", "100.00", basic="-1.00", own="101.00"))
    assert "in_policy" in bill_errors(bill("100.00", "120.00", own="100.00"))
    assert "total" in bill_errors(bill("100.001", "100.00", own="100.001"))
    assert bill_errors(bill("100.00", "90.00", basic="81.00", own="19.00")) == {}


def test_longchuan_chain_has_no_figures_for_a_year_the_pack_does_not_cover():
    b = bill("1000.00", "1000.00")
    assert expected_layers(b, LONGCHUAN, year=2026, hospital_level="county", higher_floor=False,
                           ytd=YearToDate()) is None
