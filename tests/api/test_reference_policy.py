"""Reference data over HTTP: what a pack assumes is shown as assumed, hospitals carry their grade."""

from __future__ import annotations


def test_policy_shows_what_it_assumes_with_the_reason(client, logins):
    body = client.get("/api/v1/policies/longchuan-2017", headers=logins["doctor"].headers).json
    assumptions = body["assumptions"]
    # Seed 001 第5条 "陇川县上年度农村居民人均可支配收入" has no figure: the pack's is assumed, with its source.
    assert "统计公报" in assumptions["money.rural_income_previous_year"]
    # Seed 001 第3条 "年度报销限额提高50%": the base cap is not in the seed.
    assert "200,000" in assumptions["money.chain.critical_illness.annual_cap_by_year"]
    assert "docs/domain.md" in assumptions["deadlines_days"]
    assert "diseases.*.expected_stay_days" in assumptions
    # Quoted figures are not marked: 第4/5条 "实际补偿比例达到90%".
    assert "money.inpatient_actual_ratio_min" not in assumptions
    assert body["money"]["inpatient_actual_ratio_min"] == "0.90"


def test_qidong_marks_its_reading_of_second_assistance(client, logins):
    body = client.get("/api/v1/policies/qidong-2017", headers=logins["doctor"].headers).json
    # Seed 004 二(三): "自负1万元以上的给予40%的二次救助" - the pack reads it as 40% of the part above 10,000.
    assert "read as 40% of the part above 10,000" in body["assumptions"]["money.second_assistance"]


def test_hospitals_carry_their_grade(client, logins):
    rows = client.get("/api/v1/hospitals?region=533124", headers=logins["doctor"].headers).json
    grades = {row["level"]: row["grade"] for row in rows}
    # Seed 001 第13条: 县人民医院 "二级甲等"; township centres are 一级 in the demo region.
    assert grades == {"county": "secondary", "township": "primary"}


def test_policy_shows_category_periods_and_review_deadlines(client, logins):
    body = client.get("/api/v1/policies/qidong-2017", headers=logins["doctor"].headers).json
    # Seed 004 三(三): "脱贫后相关政策延续两年".
    assert body["category_periods"] == {"poor_exited_supported": {"years": 2, "until": None, "then": None}}
    assert body["assistance_deadlines_days"]["raised"] == 10
    assert "assistance_deadlines_days" in body["assumptions"]


def test_policy_says_what_a_confirm_must_carry(client, logins):
    body = client.get("/api/v1/policies/longchuan-2017", headers=logins["doctor"].headers).json
    diseases = {d["code"]: d for d in body["diseases"]}
    # Seed 001 第6条 "合并两种或以上的复杂先心病", "耐多药肺结核", "重性精神病".
    assert diseases["chd_complex"]["lesions_min"] == 2
    assert diseases["mdr_tb"]["resistance"] == "rifampicin"
    epilepsy = diseases["severe_mental_illness"]["with_secondary"][0]
    assert (epilepsy["codes"], epilepsy["any_of"]) == (["F06"], ["G40"])
