"""The confirm guard against what real discharge records carry (出院诊断, 国家临床版2.0 codes).

Every disease of every pack must accept a record a designated hospital would write for it, and the
diagnoses the seeds exclude (drug-sensitive TB, a single heart lesion named 复杂先心病, F06 without
the epilepsy, intellectual disability without a psychosis) must be refused naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from workflows import case_machine as m
from workflows.case_machine import GuardFailed, HospitalRef
from workflows.event_data import ConfirmData
from workflows.policy_pack import packs

NOW = datetime(2020, 6, 1, 9, 0, tzinfo=UTC)


def rec(code, secondary=None, lesions=None, dst=None):
    data = {"diagnosis_code": code}
    if secondary:
        data["secondary_codes"] = secondary
    if lesions:
        data["lesions"] = lesions
    if dst:
        data["drug_resistance"] = {"method": dst[0], "resistant_to": dst[1], "reported_at": "2020-05-20"}
    return data


# One or more discharge records per catalogue disease, as a county or city hospital codes them.
RECORDS = {
    "acute_myocardial_infarction": [rec("I21.900"), rec("I21.0")],
    "aids_opportunistic_infections": [rec("B20.600"), rec("B20.0"), rec("B22.700"), rec("B24.x01")],
    "bladder_cancer": [rec("C67.900")],
    "breast_cancer": [rec("C50.900x001")],
    "cataract": [rec("H25.900"), rec("Q12.000")],  # age-related; congenital (先天性白内障)
    "cerebral_infarction": [rec("I63.900")],
    "cervical_cancer": [rec("C53.900")],
    "chd_asd": [rec("Q21.100")],
    # 大动脉转位 with a VSD and a PDA; a VSD with a PDA and pulmonary stenosis (合并两种或以上).
    "chd_complex": [rec("Q20.300", lesions=["Q21.000", "Q25.000"]), rec("Q21.000", lesions=["Q25.0", "Q22.1"])],
    "chd_pda": [rec("Q25.000")],
    "chd_pulmonary_stenosis": [rec("Q22.100")],
    "chd_tetralogy": [rec("Q21.300")],
    "chd_vsd": [rec("Q21.000")],
    "childhood_all": [rec("C91.000")],
    "childhood_apl": [rec("C92.400")],
    "childhood_chd": [rec("Q21.100"), rec("Q25.000")],
    "childhood_leukaemia": [rec("C91.000"), rec("C92.000")],
    "childhood_lymphoma": [rec("C83.300")],
    "chronic_myeloid_leukaemia": [rec("C92.100")],
    "cleft_lip_palate": [rec("Q37.900"), rec("Q36.900")],
    "colon_cancer": [rec("C18.700")],
    "copd": [rec("J44.100")],
    # 耐药结核病 (Qidong): isoniazid mono-resistance is drug-resistant TB too.
    "drug_resistant_tb": [
        rec("A15.000", dst=("line_probe_assay", ["isoniazid"])),
        rec("A16.200", secondary=["U84.3"]),
    ],
    "end_stage_renal_disease": [rec("N18.500"), rec("N18.0")],
    "esophageal_cancer": [rec("C15.400"), rec("C15.900x001")],
    "gastric_cancer": [rec("C16.900")],
    "haemophilia": [rec("D66.x00"), rec("D67.x00")],
    "hyperthyroidism": [rec("E05.000")],
    "hypospadias": [rec("Q54.900")],
    "kidney_cancer": [rec("C64.x00")],
    "liver_cancer": [rec("C22.000")],
    "lung_cancer": [rec("C34.900")],
    # 耐多药肺结核: smear-positive TB with rifampicin resistance on Xpert; tuberculous pleurisy with U84.3.
    "mdr_tb": [
        rec("A15.000", dst=("xpert_mtb_rif", ["rifampicin"])),
        rec("A15.000x002", dst=("phenotypic", ["rifampicin", "isoniazid"])),
        rec("A16.500", secondary=["U84.3"]),
        rec("A19.900", dst=("phenotypic", ["rifampicin", "isoniazid", "ethambutol"])),
    ],
    "neuroblastoma": [rec("C74.900")],
    "osteosarcoma": [rec("C40.200")],
    "ovarian_cancer": [rec("C56.x00")],
    "pneumoconiosis": [rec("J62.800"), rec("J60.x00")],
    "rectal_cancer": [rec("C20.x00")],
    "rheumatic_heart_disease": [rec("I05.200")],
    # The six disorders of 严重精神障碍: 精神分裂症, 分裂情感性障碍, 偏执性精神病, 双相情感障碍,
    # 癫痫所致精神障碍 (F06 with the epilepsy beside it), 精神发育迟滞伴发精神障碍 (F7x with a psychosis).
    "severe_mental_illness": [
        rec("F20.000"),
        rec("F25.100"),
        rec("F22.000"),
        rec("F31.200"),
        rec("F06.200", secondary=["G40.900"]),
        rec("F71.100", secondary=["F23.100"]),
    ],
    "stroke": [rec("I61.900"), rec("I63.900")],
    "thalassaemia": [rec("D56.100")],
    "type1_diabetes": [rec("E10.900")],
}

# Records a hospital could send that are not the catalogue disease: the guard names the field.
REFUSED = [
    ("longchuan-2017", "mdr_tb", rec("A15.000"), "drug_resistance"),  # drug-sensitive TB
    ("longchuan-2017", "mdr_tb", rec("A15.000", dst=("line_probe_assay", ["isoniazid"])), "drug_resistance"),
    ("longchuan-2017", "mdr_tb", rec("U84.3"), "diagnosis_code"),  # the resistance code alone is not TB
    ("qidong-2017", "drug_resistant_tb", rec("A15.000"), "drug_resistance"),
    ("longchuan-2017", "chd_complex", rec("Q24.000"), "lesions"),  # one lesion is not 复杂先心病
    ("longchuan-2017", "chd_complex", rec("Q21.000", lesions=["Q21.0"]), "lesions"),  # the same lesion twice
    ("longchuan-2017", "chd_complex", rec("Q21.000", lesions=["I05.2"]), "lesions"),  # not a malformation
    ("longchuan-2017", "severe_mental_illness", rec("F06.300"), "secondary_codes"),  # no epilepsy beside it
    ("longchuan-2017", "severe_mental_illness", rec("F71.100"), "secondary_codes"),  # no psychosis beside it
    ("longchuan-2017", "severe_mental_illness", rec("F71.100", secondary=["E03.9"]), "secondary_codes"),
    ("yancheng-2021", "severe_mental_illness", rec("F32.900"), "diagnosis_code"),  # depression is not one of six
    ("nanning-2019", "aids_opportunistic_infections", rec("Z21.x00"), "diagnosis_code"),  # carrier, no disease
]


@dataclass
class Case:
    disease_code: str
    policy_code: str
    state: str = "screened"
    hospital_code: str | None = None
    referral_group_code: str | None = None
    referred_from: str | None = None
    county_code: str = "533124"
    city_code: str = "533100"
    province_code: str = "530000"
    screened_at: datetime = NOW - timedelta(days=20)


class Refs:
    def hospital(self, code):
        return HospitalRef(code, "county", "533124") if code == "H-county" else None

    def expert_group(self, code):
        return None

    def is_designated(self, *_):
        return True

    def is_partner(self, *_):
        return False


@dataclass
class Actor:
    role: str = "county_coordinator"
    org_unit_code: str = "533124"


def confirm(pack_code: str, disease: str, record: dict) -> Case:
    """Through the event's own schema (as the service parses a request) and the machine."""
    case = Case(disease, pack_code)
    raw = {**record, "diagnosed_by": "H-county", "diagnosed_at": (NOW - timedelta(days=1)).isoformat()}
    data = ConfirmData().load(raw)
    m.trigger(case, "confirm", data, m.EventContext(case, Actor(), data, packs()[pack_code], Refs(), NOW))
    return case


CATALOGUE = [(pack.code, disease) for pack in packs().values() for disease in pack.diseases]


def test_the_table_has_a_discharge_record_for_every_catalogue_disease():
    assert {disease for _, disease in CATALOGUE} - set(RECORDS) == set()


@pytest.mark.parametrize(("pack_code", "disease"), CATALOGUE)
def test_every_catalogue_disease_accepts_the_records_real_patients_carry(pack_code, disease):
    for record in RECORDS[disease]:
        assert confirm(pack_code, disease, record).state == "confirmed", record


@pytest.mark.parametrize(("pack_code", "disease", "record", "field"), REFUSED)
def test_records_that_are_not_the_disease_are_refused_naming_the_field(pack_code, disease, record, field):
    with pytest.raises(GuardFailed) as caught:
        confirm(pack_code, disease, record)
    assert caught.value.field == field


def test_seed_001_article_6_lists_the_six_severe_mental_disorders_under_its_90_percent():
    # Seed 001 (Longchuan 2017) 第6条: "重性精神病和终末期肾病实际报销90%": every one of the six disorders of
    # 严重精神障碍 (精神分裂症, 分裂情感性障碍, 偏执性精神病, 双相情感障碍, 癫痫所致精神障碍,
    # 精神发育迟滞伴发精神障碍) is confirmed as the disease that carries the higher floor.
    disease = packs()["longchuan-2017"].diseases["severe_mental_illness"]
    assert disease.higher_floor
    for code in ("F20", "F25", "F22", "F31", "F06.2", "F71.1"):
        assert disease.matches_icd10(code), code


def test_seed_001_article_6_complex_chd_needs_two_or_more_lesions():
    # Seed 001 第6条: "合并两种或以上的复杂先心病": Q24.0 alone was accepted before; now two lesions are needed.
    with pytest.raises(GuardFailed, match="2 or more"):
        confirm("longchuan-2017", "chd_complex", rec("Q24.000"))
    assert confirm("longchuan-2017", "chd_complex", rec("Q24.000", lesions=["Q21.1"])).state == "confirmed"


def test_the_dst_result_is_kept_with_the_event_data():
    data = ConfirmData().load(
        {**rec("A15.000", dst=("xpert_mtb_rif", ["rifampicin"])), "diagnosed_by": "H", "diagnosed_at": NOW.isoformat()}
    )
    dumped = ConfirmData().dump(data)
    assert dumped["drug_resistance"] == {
        "method": "xpert_mtb_rif",
        "resistant_to": ["rifampicin"],
        "reported_at": "2020-05-20",
    }
    assert "lesions" not in dumped and "secondary_codes" not in dumped


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"drug_resistance": {"method": "guess", "resistant_to": ["rifampicin"]}}, "drug_resistance"),
        ({"drug_resistance": {"method": "phenotypic", "resistant_to": []}}, "drug_resistance"),
        ({"lesions": ["heart"]}, "lesions"),
        ({"secondary_codes": ["G40-9"]}, "secondary_codes"),
    ],
)
def test_malformed_evidence_is_a_validation_error_naming_the_field(extra, field):
    from marshmallow import ValidationError

    with pytest.raises(ValidationError) as caught:
        ConfirmData().load({"diagnosis_code": "A15.0", "diagnosed_by": "H", "diagnosed_at": NOW.isoformat(), **extra})
    assert field in caught.value.messages
