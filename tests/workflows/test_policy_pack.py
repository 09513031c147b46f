"""The shipped packs load and say what their seeds say; a broken pack names its file and field."""

from datetime import date
from pathlib import Path

import pytest
import yaml

from workflows.policy_pack import POLICY_DIR, PolicyPackError, load_pack, load_packs, pack_for

EXPECTED_CATALOGUE_SIZES = {
    "huainan-2019": 25,
    "longchuan-2017": 15,
    "yancheng-2021": 30,
    "nanning-2019": 25,
    "qidong-2017": 20,
}


def test_every_seed_has_a_pack_with_the_seed_catalogue_size():
    packs = load_packs()
    assert {code: len(p.diseases) for code, p in packs.items()} == EXPECTED_CATALOGUE_SIZES


def test_huainan_uses_the_national_25_that_nanning_lists():
    packs = load_packs()
    assert set(packs["huainan-2019"].diseases) == set(packs["nanning-2019"].diseases)


def test_yancheng_is_the_national_25_plus_the_five_of_2020():
    packs = load_packs()
    added = set(packs["yancheng-2021"].diseases) - set(packs["nanning-2019"].diseases)
    names = {packs["yancheng-2021"].diseases[c].name_zh for c in added}
    assert len(added) == 5
    assert {"膀胱癌", "卵巢癌", "肾癌"} <= names


def test_same_disease_same_icd10_across_packs():
    by_code: dict[str, set[tuple[str, ...]]] = {}
    for pack in load_packs().values():
        for disease in pack.diseases.values():
            by_code.setdefault(disease.code, set()).add(disease.icd10)
    inconsistent = {code: codes for code, codes in by_code.items() if len(codes) > 1}
    assert not inconsistent


def test_longchuan_childhood_heart_disease_single_lesions_have_their_own_codes():
    pack = load_packs()["longchuan-2017"]
    # A single lesion names one disease; chd_complex takes any malformation but only with two or more lesions.
    matching = [d.code for d in pack.diseases.values() if d.matches_icd10("Q21.3") and d.lesions_min is None]
    assert len(matching) == 1
    assert pack.diseases[matching[0]].age_max is not None


def test_icd10_prefix_matching():
    pack = load_packs()["longchuan-2017"]
    oesophagus = next(d for d in pack.diseases.values() if d.name_zh == "食管癌")
    assert oesophagus.matches_icd10("C15.9") and oesophagus.matches_icd10("c15.4")
    assert not oesophagus.matches_icd10("C16.0")


def test_pack_for_prefers_the_county_then_city_and_respects_dates():
    packs = load_packs()
    assert pack_for(["533124", "533100", "530000"], date(2018, 5, 1), packs).code == "longchuan-2017"
    assert pack_for(["320921", "320900", "320000"], date(2022, 1, 1), packs).code == "yancheng-2021"
    assert pack_for(["533124", "533100", "530000"], date(2017, 1, 1), packs) is None  # before it was issued


def _write(tmp_path: Path, pack: dict, name: str | None = None) -> Path:
    path = tmp_path / f"{name or pack['code']}.yaml"
    path.write_text(yaml.safe_dump(pack, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def good_pack() -> dict:
    return yaml.safe_load((POLICY_DIR / "longchuan-2017.yaml").read_text(encoding="utf-8"))


def test_a_copy_of_a_shipped_pack_loads(tmp_path, good_pack):
    assert load_pack(_write(tmp_path, good_pack)).code == "longchuan-2017"


def test_adding_a_region_is_adding_a_file(tmp_path, good_pack):
    good_pack.update(code="newtown-2024", region={"code": "533103", "name": "芒市"}, valid_from=date(2024, 1, 1))
    _write(tmp_path, good_pack)
    packs = load_packs(tmp_path)
    assert pack_for(["533103"], date(2024, 6, 1), packs).code == "newtown-2024"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["diseases"][0].update(icd10=["not-a-code"]), "diseases.0.icd10"),
        (lambda p: p["diseases"][1].pop("name_zh"), "diseases.1.name_zh"),
        (lambda p: p["diseases"][0].update(expected_stay_days=0), "diseases.0.expected_stay_days"),
        (lambda p: p.update(eligible_categories=["rich"]), "eligible_categories"),
        (lambda p: p["deadlines_days"].pop("screened"), "deadlines_days"),
        (lambda p: p.update(surprise=1), "surprise"),
        (lambda p: p["diseases"].append(dict(p["diseases"][0])), "diseases"),
        (lambda p: p["money"].update(own_payment_share_max="1.5"), "money.own_payment_share_max"),
        (lambda p: p.update(region={"code": "yunnan"}), "region"),
    ],
)
def test_broken_pack_names_file_and_field(tmp_path, good_pack, mutate, field):
    mutate(good_pack)
    with pytest.raises(PolicyPackError) as caught:
        load_pack(_write(tmp_path, good_pack))
    message = str(caught.value)
    assert message.startswith("longchuan-2017.yaml:")
    assert field in message


def test_float_money_refused(tmp_path, good_pack):
    good_pack["money"]["own_payment_share_max"] = 0.1
    with pytest.raises(PolicyPackError, match=r"money\.own_payment_share_max"):
        load_pack(_write(tmp_path, good_pack))


def test_code_must_match_file_name(tmp_path, good_pack):
    with pytest.raises(PolicyPackError, match="code"):
        load_pack(_write(tmp_path, good_pack, name="other-2017"))


def test_every_pack_marks_its_assumed_figures():
    for pack in load_packs().values():
        # No seed sets per-step limits or clinical stays: every pack says so.
        assert pack.assumed("deadlines_days.screened"), pack.code
        some_disease = next(iter(pack.diseases))
        assert pack.assumed(f"diseases.{some_disease}.expected_stay_days"), pack.code
        assert pack.assumed(f"diseases.{some_disease}.follow_up_interval_days"), pack.code
    longchuan = load_packs()["longchuan-2017"]
    # Seed 001 第5条 names the county's rural income without a figure: assumed; 第6条's 85% is quoted.
    assert longchuan.assumed("money.rural_income_previous_year.2018")
    assert longchuan.assumed("money.special_treatment_insurance_ratio") is None
    assert load_packs()["qidong-2017"].assumed("money.second_assistance.ratio")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["assumptions"].update({"money.no_such_figure": "a reason long enough"}), "no such field"),
        (lambda p: p["assumptions"].update({"diseases.nosuch.age_max": "a reason long enough"}), "no such field"),
        (lambda p: p["assumptions"].update({"deadlines_days": ""}), "assumptions"),
    ],
)
def test_an_assumption_must_name_a_field_of_the_pack_and_give_a_reason(tmp_path, good_pack, mutate, message):
    mutate(good_pack)
    with pytest.raises(PolicyPackError, match=message):
        load_pack(_write(tmp_path, good_pack))


def test_categories_over_time_as_the_seeds_word_them():
    packs = load_packs()
    nanning, qidong, yancheng = packs["nanning-2019"], packs["qidong-2017"], packs["yancheng-2021"]
    exit_day = date(2017, 12, 20)
    # Seed 003 二(四)10: "不在2年继续扶持期内脱贫户" keep insurance and assistance, not the backstop.
    assert nanning.category_on("poor_exited_supported", on=date(2019, 12, 19), category_since=exit_day) == (
        "poor_exited_supported"
    )
    assert nanning.category_on("poor_exited_supported", on=date(2019, 12, 20), category_since=exit_day) == (
        "poor_exited_unsupported"
    )
    # Seed 004 三(三): "脱贫后相关政策延续两年": afterwards Qidong no longer covers the exit.
    assert qidong.covers("poor_exited_supported", on=date(2019, 12, 19), category_since=exit_day)
    assert not qidong.covers("poor_exited_supported", on=date(2019, 12, 20), category_since=exit_day)
    # Seed 002 二(一)/二(二): 建档立卡 until 集中认定 completes (date assumed and marked), then the low-income groups.
    assert yancheng.covers("poor_exited_supported", on=date(2021, 12, 31))
    assert not yancheng.covers("poor_exited_supported", on=date(2022, 1, 1))
    assert yancheng.covers("subsistence", on=date(2022, 1, 1))
    assert yancheng.assumed("category_periods.poor_exited_supported.until")
    # Without the day the category began, a period in years cannot run out: the category stands.
    assert qidong.covers("poor_exited_supported", on=date(2030, 1, 1))
    assert not packs["longchuan-2017"].covers("subsistence", on=date(2018, 1, 1))


def test_a_period_must_end_somehow_and_in_an_eligible_category(tmp_path, good_pack):
    good_pack["category_periods"] = {"poor_exited_supported": {"then": "poor_not_exited"}}
    with pytest.raises(PolicyPackError, match="category_periods"):
        load_pack(_write(tmp_path, good_pack))
    good_pack["category_periods"] = {"poor_exited_supported": {"years": 2, "then": "subsistence"}}
    with pytest.raises(PolicyPackError, match="must be eligible"):
        load_pack(_write(tmp_path, good_pack))


def test_nanning_uplifts_are_data_as_the_seed_words_them():
    # Seed 003 二(四)11: "取消住院基金起付线，报销比例提高5%；29种门诊特殊慢性病取消起付线，
    # 报销比例提高10%；大病保险起付标准降低50%、报销比例提高10%；落实基本医保二次报销政策".
    # Relative to ordinary residents, whose figures the seed does not give: data to show, not notes.
    from decimal import Decimal

    uplifts = load_packs()["nanning-2019"].money["uplifts"]
    assert uplifts == {
        "inpatient_deductible_waived": True,
        "inpatient_ratio_points": Decimal("0.05"),
        "outpatient_special_deductible_waived": True,
        "outpatient_special_ratio_points": Decimal("0.10"),
        "critical_illness_deductible_cut": Decimal("0.50"),
        "critical_illness_ratio_points": Decimal("0.10"),
        "critical_illness_cap_raise": None,  # the seed raises no cap
        "second_reimbursement": True,
    }
