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
    # But 附件2 "住院费用实际自付比例小于10%": 10% of the 20,000 total is 2,000.00, which is not *below* 10%; the
    # largest own payment below it is 1,999.99, so the backstop (第5条) pays 3,800 - 1,999.99 = 1,800.01.
    b = bill("20000.00", "18000.00", basic="16200.00", own="3800.00")
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level="county", higher_floor=False, ytd=YearToDate())
    assert expected == {
        "basic_insurance": D("16200.00"),
        "critical_illness_insurance": D("0.00"),
        "medical_assistance": D("0.00"),
        "government_backstop": D("1800.01"),
        "charity": D("0"),
        "other": D("0"),
        "own_payment": D("1999.99"),
    }
    result = assess(b, LONGCHUAN, category="poor_not_exited", hospital_level="county", higher_floor=False)
    assert result.ratio_on_in_policy == D("0.9000") and result.ratio_on_total == D("0.8100")
    # 90% exactly is met; the own-payment share 19% misses "小于10%" by 3,800 - 1,999.99 = 1,800.01.
    assert floors(result) == {
        "inpatient_actual_ratio": (True, D("0.00")),
        "basic_ratio_by_level": (True, D("0.00")),
        "own_payment_share": (False, D("1800.01")),
    }
    assert result.shortfall == D("1800.01") and result.below_floor


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
    # Own 1,000.00 is exactly 10%, not "小于10%" (附件2): the backstop pays 0.01, own payment 999.99.
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
    ) == (D("7500.00"), D("1000.00"), D("500.00"), D("0.01"), D("999.99"))
    on_target = bill(
        "10000.00", "10000.00", basic="7500.00", critical="1000.00", assistance="500.00", backstop="0.01",
        own="999.99", special=True,
    )
    result = assess(on_target, LONGCHUAN, category="poor_not_exited", hospital_level="municipal", higher_floor=False)
    assert not result.below_floor  # 90.0001% actual, 85% insurance, own share just below 10%: every floor met
    at_ten = bill(
        "10000.00", "10000.00", basic="7500.00", critical="1000.00", assistance="500.00", own="1000.00", special=True
    )
    result = assess(at_ten, LONGCHUAN, category="poor_not_exited", hospital_level="municipal", higher_floor=False)
    assert floors(result)["own_payment_share"] == (False, D("0.01"))  # exactly 10.00% is not "小于10%"
    # The hospital recorded 100 less assistance: 89% actual (short 100.00) and 11% own share (1,100 - 999.99 over).
    short = bill(
        "10000.00", "10000.00", basic="7500.00", critical="1000.00", assistance="400.00", own="1100.00", special=True
    )
    result = assess(short, LONGCHUAN, category="poor_not_exited", hospital_level="municipal", higher_floor=False)
    assert floors(result)["inpatient_actual_ratio"] == (False, D("100.00"))
    assert floors(result)["own_payment_share"] == (False, D("100.01"))
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


@pytest.mark.parametrize("category", ["poor_exited_2014_2015", "poor_exited_unsupported"])
def test_nanning_2014_2015_and_unsupported_exits_keep_the_assistance_floor_only(category):
    # Seed 003 二(四)10: "2014、2015年退出户和不在2年继续扶持期内脱贫户享受基本医保、大病保险、基本医保二次报销、
    # 医疗救助倾斜政策，不再享受财政补助兜底保障政策": no 90% actual floor, but the 80% assistance floor stays.
    # In-policy 25,000 - insurance 10,000 = 15,000 left; 80% is 12,000.00 and nothing was paid: short 12,000.00.
    b = bill("30000.00", "25000.00", basic="10000.00", own="20000.00")
    result = assess(b, NANNING, category=category, hospital_level="county", higher_floor=False)
    assert floors(result) == {"assistance_share": (False, D("12000.00"))}


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


# --- second pass over the seeds (issue 11): every rule below failed or was missing before ------------------

YANCHENG = packs()["yancheng-2021"]


def test_longchuan_own_payment_below_10_percent_is_strict_to_the_fen():
    # Seed 001 附件2: "住院费用实际自付比例小于10%". 10% of 12,345.67 = 1,234.567: the largest own payment *below* it
    # is 1,234.56 (met); 1,234.57 is above 1,234.567 (short 0.01).
    met = bill("12345.67", "12345.67", basic="11111.11", own="1234.56")
    over = bill("12345.67", "12345.67", basic="11111.10", own="1234.57")
    assert floors(assess(met, LONGCHUAN, category="poor_not_exited", hospital_level="county", higher_floor=False))[
        "own_payment_share"
    ] == (True, D("0"))
    assert floors(assess(over, LONGCHUAN, category="poor_not_exited", hospital_level="county", higher_floor=False))[
        "own_payment_share"
    ] == (False, D("0.01"))


def test_longchuan_chain_never_leaves_a_bill_its_own_ceiling_fails():
    # 50,000 total of which 30,000 in-policy at the county hospital (2018): basic 90% = 27,000; 3,000 left is below the
    # 4,931 deductible; 90% target 27,000 met. Own 23,000: above the 9,862 income by 13,138 -> backstop 13,138, own
    # 9,862. Then "小于10%" of 50,000: at most 4,999.99 -> backstop adds 9,862 - 4,999.99 = 4,862.01: 18,000.01.
    b = bill("50000.00", "30000.00")
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level="county", higher_floor=False, ytd=YearToDate())
    assert (expected["government_backstop"], expected["own_payment"]) == (D("18000.01"), D("4999.99"))
    assert sum(expected.values()) == D("50000.00")
    paid = bill("50000.00", "30000.00", basic="27000.00", backstop="18000.01", own="4999.99")
    result = assess(paid, LONGCHUAN, category="poor_not_exited", hospital_level="county", higher_floor=False)
    assert not result.below_floor, floors(result)


@pytest.mark.parametrize(("higher", "required", "short"), [(True, "0.90", "50.00"), (False, "0.80", "0.00")])
def test_longchuan_outpatient_90_percent_for_mental_illness_and_esrd_on_basic_insurance(higher, required, short):
    # Seed 001 第2条: "门诊政策范围内医疗费用报销比例提高到80%（其中重性精神病和终末期肾病门诊报销比例达到90%）", a
    # basic-insurance ratio (落实基本医保倾斜政策). In-policy 2,500: basic 2,200 = 88%. 90% needs 2,250: short 50.00;
    # 80% needs 2,000: met. Critical-illness insurance's 100 (第3条, outpatient 70%) does not count towards it.
    b = bill("3000.00", "2500.00", basic="2200.00", critical="100.00", own="700.00", kind="outpatient_special")
    check = next(
        c
        for c in assess(b, LONGCHUAN, category="poor_not_exited", hospital_level=None, higher_floor=higher).floors
        if c.code == "outpatient_special_ratio"
    )
    assert (check.required, check.actual, check.shortfall) == (D(required), D("0.8800"), D(short))


@pytest.mark.parametrize(("grade", "ratio", "basic", "short"), [
    ("secondary", "0.90", "36000.00", "6000.00"),  # 二级 at prefecture level: 90% of 40,000 = 36,000
    ("tertiary", "0.75", "30000.00", "0.00"),  # 三级: 75% of 40,000 = 30,000
    (None, "0.75", "30000.00", "0.00"),  # grade not entered yet: the level's ratio
])
def test_longchuan_ratio_follows_the_hospitals_grade(grade, ratio, basic, short):
    # Seed 001 第2条: "县级及二级医疗机构报销比例90%、州市级三级医疗机构报销比例75%". The hospital recorded 30,000 of
    # basic insurance on 40,000 in-policy: right at a tertiary hospital, 6,000.00 short at a secondary one.
    b = bill("40000.00", "40000.00", basic="30000.00", own="10000.00")
    expected = expected_layers(
        b, LONGCHUAN, year=2018, hospital_level="municipal", hospital_grade=grade, higher_floor=False, ytd=YearToDate()
    )
    assert expected["basic_insurance"] == D(basic)
    result = assess(
        b, LONGCHUAN, category="poor_not_exited", hospital_level="municipal", hospital_grade=grade, higher_floor=False
    )
    check = next(c for c in result.floors if c.code == "basic_ratio_by_level")
    assert (check.required, check.shortfall) == (D(ratio), D(short))


def test_longchuan_critical_illness_yearly_cap_raised_by_half():
    # Seed 001 第3条: "大病保险起付线降低50%、年度报销限额提高50%" (cap 300,000, see the pack's assumptions).
    # Earlier this year: base 380,000 paid 70% x (50,000 - 4,931) + 80% x 330,000 = 31,548.30 + 264,000 = 295,548.30.
    # This stay, municipal: basic 75% x 140,000 = 105,000; the slice [380,000, 415,000) would pay 80% = 28,000 but
    # only 300,000 - 295,548.30 = 4,451.70 is left under the cap. Assistance: gap to 90% (126,000) is
    # 126,000 - 109,451.70 = 16,548.30, under 75% of the 30,548.30 left: 16,548.30. Own 24,000 exceeds the 2018
    # income 9,862 by 14,138 -> backstop 14,138, own 9,862 (below 10% of 150,000).
    b = bill("150000.00", "140000.00")
    ytd = YearToDate(critical_illness_base=D("380000.00"), critical_illness_paid=D("295548.30"))
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level="municipal", higher_floor=False, ytd=ytd)
    assert (
        expected["basic_insurance"],
        expected["critical_illness_insurance"],
        expected["medical_assistance"],
        expected["government_backstop"],
        expected["own_payment"],
    ) == (D("105000.00"), D("4451.70"), D("16548.30"), D("14138.00"), D("9862.00"))
    assert sum(expected.values()) == D("150000.00")


def test_yancheng_severe_mental_illness_is_free_outpatient_and_inpatient():
    # Seed 002 四(四): "严重精神障碍患者…门诊与住院免费救治": the 500.00 left to the patient is the shortfall.
    stay = bill("8000.00", "7500.00", basic="6000.00", critical="500.00", assistance="1000.00", own="500.00")
    result = assess(
        stay, YANCHENG, category="subsistence", hospital_level="county", higher_floor=True,
        disease_code="severe_mental_illness",
    )
    assert floors(result) == {"free_treatment": (False, D("500.00"))}
    visit = bill("300.00", "300.00", basic="240.00", assistance="60.00", kind="outpatient_special")
    result = assess(
        visit, YANCHENG, category="subsistence", hospital_level=None, higher_floor=True,
        disease_code="severe_mental_illness",
    )
    assert floors(result) == {"free_treatment": (True, D("0"))}
    other = assess(stay, YANCHENG, category="subsistence", hospital_level="county", higher_floor=False,
                   disease_code="lung_cancer")
    assert other.floors == []  # the seed sets no figure for other diseases


def test_qidong_second_assistance_counts_inpatient_own_payment_only():
    # Seed 004 二(三): "因患重大疾病年度住院医疗费用自负1万元以上的给予40%的二次救助，封顶3万元". Own payment this year
    # 25,000 of which 5,000 outpatient: second assistance is on the 20,000 inpatient part, 40% x (20,000 - 10,000)
    # = 4,000.00 (the pack's reading of "1万元以上", marked assumed); the charity threshold counts the whole 25,000.
    position = year_position(QIDONG, 2018, D("25000.00"), "subsistence", inpatient_own_to_date=D("20000.00"))
    assert position.second_assistance_due == D("4000.00")
    assert position.inpatient_own_to_date == D("20000.00")
    assert position.charity_eligible is False  # 25,000 < 30,000 (低保户)


def test_nanning_exit_past_the_support_period_loses_the_90_percent_floor_on_the_day_of_the_stay():
    # Seed 003 二(四)10/11: a 2017-12-20 exit is in the 2-year support period on 2019-12-19 (90% floor) and outside
    # it from 2019-12-20 (assistance floor only). Bill: in-policy 25,000, insurance 20,000, assistance 4,000 = 80% of
    # the 5,000 left (met); reimbursed 24,000 of 25,000 = 96%: both met inside the period; outside only assistance.
    from datetime import date

    b = bill("30000.00", "25000.00", basic="18000.00", critical="2000.00", assistance="4000.00", own="6000.00")
    inside = NANNING.category_on("poor_exited_supported", on=date(2019, 12, 19), category_since=date(2017, 12, 20))
    outside = NANNING.category_on("poor_exited_supported", on=date(2019, 12, 20), category_since=date(2017, 12, 20))
    assert set(floors(assess(b, NANNING, category=inside, hospital_level="county", higher_floor=False))) == {
        "inpatient_actual_ratio",
        "assistance_share",
    }
    assert floors(assess(b, NANNING, category=outside, hospital_level="county", higher_floor=False)) == {
        "assistance_share": (True, D("0.00"))
    }
    lapsed = QIDONG.category_on("poor_exited_supported", on=date(2019, 12, 20), category_since=date(2017, 12, 20))
    assert lapsed is None
    assert assess(b, QIDONG, category=lapsed, hospital_level="county", higher_floor=False).floors == []


def test_qidong_charity_counts_the_own_payment_left_after_second_assistance():
    # Seed 004 二(四): "对城乡居民基本医疗保险、大病保险和医疗救助支付后，自付费用年度累计达到或超过3万元以上的低保户".
    # Own payment 36,000 (all inpatient): second assistance 40% x 26,000 = 10,400 due. Before it is paid, 36,000 >=
    # 30,000: charity. Once 10,400 is paid (medical assistance), 25,600 is left: below 30,000, no charity.
    before = year_position(QIDONG, 2018, D("36000.00"), "subsistence", inpatient_own_to_date=D("36000.00"))
    assert (before.second_assistance_due, before.charity_eligible) == (D("10400.00"), True)
    after = year_position(
        QIDONG,
        2018,
        D("36000.00"),
        "subsistence",
        inpatient_own_to_date=D("36000.00"),
        assistance_paid={"medical_assistance": D("10400.00")},
    )
    assert (after.charity_eligible, after.own_after_assistance) == (False, D("25600.00"))
    assert after.assistance_paid == {"medical_assistance": D("10400.00")}


# --- Longchuan (seed 001 第2条): referred stays outside the county --------------------------------------


def test_longchuan_out_of_county_referred_stay_gets_at_least_70_percent_in_policy():
    # Seed 001 第2条: "对符合转诊转院规范，到县域外住院的，单人单次住院政策范围内报销比例不低于70%". A 2018 stay at a
    # provincial hospital (县域外): in-policy 50,000, basic insurance recorded 34,500 = 69%. 70% of 50,000 = 35,000:
    # short 500.00, on its own line beside the level's 省级 70%; the shortfall is 500.00 once, not twice.
    b = bill("60000.00", "50000.00", basic="34500.00", critical="7048.30", assistance="3451.70", backstop="9000.01",
             own="5999.99")  # fmt: skip
    out = assess(b, LONGCHUAN, category="poor_not_exited", hospital_level="provincial", higher_floor=False,
                 out_of_county=True)  # fmt: skip
    check = next(c for c in out.floors if c.code == "out_of_county_ratio")
    assert (check.label, check.required, check.actual, check.met, check.shortfall) == (
        "县域外转诊住院政策范围内报销比例", D("0.70"), D("0.6900"), False, D("500.00"))
    assert floors(out)["basic_ratio_by_level"] == (False, D("500.00"))
    assert out.shortfall == D("500.00")
    # Not referred by the rules: neither the level's ratio nor the 70% is owed.
    assert "out_of_county_ratio" not in floors(
        assess(bill("60000.00", "50000.00", basic="34500.00", own="25500.00", compliant=False), LONGCHUAN,
               category="poor_not_exited", hospital_level="provincial", higher_floor=False, out_of_county=True))
    # In the county the guarantee is not the 70% but the level's own figure (county 90%).
    inside = assess(b, LONGCHUAN, category="poor_not_exited", hospital_level="county", higher_floor=False)
    assert "out_of_county_ratio" not in floors(inside)
    assert floors(inside)["basic_ratio_by_level"] == (False, D("10500.00"))  # 90% x 50,000 - 34,500


def test_longchuan_out_of_county_70_percent_is_a_floor_not_a_cut():
    # 第2条 "不低于70%" under "州市级三级医疗机构报销比例75%": at the prefecture's tertiary hospital (县域外) 72% of
    # 50,000 = 36,000 meets the 70% and still misses the 75% by 37,500 - 36,000 = 1,500.00; the chain expects 75%.
    b = bill("50000.00", "50000.00", basic="36000.00", own="14000.00")
    result = assess(b, LONGCHUAN, category="poor_not_exited", hospital_level="municipal", higher_floor=False,
                    out_of_county=True)  # fmt: skip
    assert floors(result)["out_of_county_ratio"] == (True, D("0.00"))
    assert floors(result)["basic_ratio_by_level"] == (False, D("1500.00"))
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level="municipal", higher_floor=False,
                               ytd=YearToDate(), out_of_county=True)  # fmt: skip
    assert expected["basic_insurance"] == D("37500.00")


def test_longchuan_out_of_county_70_percent_decides_where_the_level_has_no_figure():
    # A stay outside the county at a hospital whose level the pack prices at nothing (第2条 names township, county,
    # prefecture and provincial institutions only): the 70% is the expected ratio. 2018, in-policy 50,000 of 60,000:
    #   basic 70% x 50,000 = 35,000.00; 15,000 left, above the 4,931 deductible at 70% (第3条):
    #   (15,000 - 4,931) x 0.70 = 7,048.30;
    #   assistance (第4条): 90% target 45,000 - 42,048.30 = 2,951.70, under 75% of the 7,951.70 left: 2,951.70;
    #   ratio backstop 45,000 - 45,000 = 0; own 60,000 - 45,000 = 15,000 exceeds the 2018 income 9,862 by 5,138
    #   (第5条) -> own 9,862, which is not "小于10%" of 60,000 (附件2): at most 5,999.99, backstop 5,138 + 3,862.01
    #   = 9,000.01.
    b = bill("60000.00", "50000.00")
    expected = expected_layers(b, LONGCHUAN, year=2018, hospital_level=None, higher_floor=False, ytd=YearToDate(),
                               out_of_county=True)  # fmt: skip
    assert expected == {
        "basic_insurance": D("35000.00"),
        "critical_illness_insurance": D("7048.30"),
        "medical_assistance": D("2951.70"),
        "government_backstop": D("9000.01"),
        "charity": D("0"),
        "other": D("0"),
        "own_payment": D("5999.99"),
    }
    assert sum(expected.values()) == D("60000.00")
    # The same hospital inside the county: no figure, no chain (rather than a guess, or a crash).
    assert expected_layers(b, LONGCHUAN, year=2018, hospital_level=None, higher_floor=False, ytd=YearToDate()) is None
    paid = bill("60000.00", "50000.00", basic="34999.99", critical="7048.30", assistance="2951.71",
                backstop="9000.01", own="5999.99")  # fmt: skip
    result = assess(paid, LONGCHUAN, category="poor_not_exited", hospital_level=None, higher_floor=False,
                    out_of_county=True)  # fmt: skip
    # One fen short of 35,000: the 70% line alone says so (the level has no line of its own to say it).
    assert floors(result)["out_of_county_ratio"] == (False, D("0.01"))
    assert "basic_ratio_by_level" not in floors(result)


def test_outside_the_county_is_above_county_level_or_outside_its_region():
    from workflows.money import outside_county

    assert outside_county("provincial", "530000", "533124")  # 云南省第一人民医院 for a 陇川县 case
    assert outside_county("municipal", "533100", "533124")  # 德宏州人民医院
    assert outside_county("county", "533103", "533124")  # another county's hospital (芒市)
    assert not outside_county("county", "533124", "533124")  # 陇川县人民医院
    assert not outside_county("township", "533124101", "533124")  # 章凤镇中心卫生院
