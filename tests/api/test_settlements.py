"""Settlements over HTTP on both engines: exact money, 422s naming fields, floors, alerts, stats."""

from __future__ import annotations

from datetime import timedelta

from api.extensions import db
from casework.db import utcnow
from casework.services.alerts import scan
from tests.api.helpers import HttpCase, iso
from tests.api.test_lifecycle import new_case
from tests.api.test_scoping import SEES
from tests.casework.helpers import Walker
from tests.conftest import at


def treated_case(client, session, logins) -> HttpCase:
    case = new_case(client, session, logins, screened_days_ago=30)
    coordinator, hospital = logins["coordinator"], logins["hospital"]
    case.fire(coordinator, "confirm", {"diagnosis_code": "C15.9", "diagnosed_by": hospital.org_unit,
                                       "diagnosed_at": iso(28)})
    case.fire(coordinator, "assign", {"hospital_id": hospital.org_unit, "plan": "食管癌根治术"})
    case.fire(hospital, "admit", {"admitted_at": iso(25)})
    assert case.fire(hospital, "discharge", {"discharged_at": iso(20), "outcome": "improved"}).status_code == 200
    return case


def post_bill(client, case, who, **over):
    bill = {"discharged_at": iso(20), "admitted_at": iso(25), "referral_compliant": True,
            "special_treatment": False, "total": "20000.00", "in_policy": "18000.00",
            "basic_insurance": "16200.00", "own_payment": "3800.00", **over}
    return client.post(f"/api/v1/cases/{case.id}/settlements", headers=who.headers, json=bill)


def test_bill_round_trips_exactly_and_is_judged(client, session, logins):
    case = treated_case(client, session, logins)
    hospital = logins["hospital"]
    big = post_bill(client, case, hospital, total="987654321.99", in_policy="987654321.99",
                    basic_insurance="888888889.79", critical_illness_insurance="0.01", own_payment="98765432.19")
    assert big.status_code == 201, big.json
    assert big.json["total"] == "987654321.99" and big.json["recorded"]["critical_illness_insurance"] == "0.01"
    listed = client.get(f"/api/v1/cases/{case.id}/settlements", headers=logins["coordinator"].headers).json
    assert listed[0]["recorded"]["basic_insurance"] == "888888889.79"
    assert listed[0]["recorded"]["own_payment"] == "98765432.19"


def test_2018_county_stay_beside_the_expected_chain(client, session, logins):
    """A 2018 stay (a year the Longchuan pack has figures for), recorded over HTTP."""
    walk = Walker(session, at(2018, 6, 1, 9))
    case = walk.discharge(walk.admit(walk.assign(walk.confirm(walk.new_case()))))
    http = HttpCase(client, case.id)
    response = post_bill(client, http, logins["hospital"], discharged_at="2018-05-31T10:00:00+08:00",
                         admitted_at="2018-05-27T10:00:00+08:00", basic_insurance="16000.00", own_payment="4000.00")
    assert response.status_code == 201, response.json
    body = response.json
    # Expected (hand-computed in tests/workflows/test_money.py): basic 16,200.00, backstop 1,800.01 so that the own
    # payment 1,999.99 is below 10% of 20,000 (seed 001 附件2 "小于10%").
    assert body["expected"]["basic_insurance"] == "16200.00" and body["expected"]["own_payment"] == "1999.99"
    assert body["discrepancies"] == {"basic_insurance": "-200.00", "government_backstop": "-1800.01",
                                     "own_payment": "2000.01"}
    floors = {f["code"]: (f["met"], f["shortfall"]) for f in body["floors"]}
    assert floors["inpatient_actual_ratio"] == (False, "200.00")  # 16,000 of 18,000 = 88.89%
    assert floors["own_payment_share"] == (False, "2000.01")  # 4,000 against "below 10%" of 20,000: 1,999.99
    assert body["shortfall"] == "2000.01" and body["below_floor"] is True
    assert body["year"] == {"year": 2018, "own_payment_to_date": "4000.00", "rural_income": "9862.00",
                            "over_rural_income": "0.00", "second_assistance_due": None, "charity_eligible": None,
                            "inpatient_own_to_date": "4000.00", "assistance_paid": {},
                            "own_after_assistance": "4000.00"}


def test_2026_stay_has_no_expected_figures(client, session, logins):
    case = treated_case(client, session, logins)
    body = post_bill(client, case, logins["hospital"]).json
    assert body["expected"] is None and body["discrepancies"] is None
    assert body["ratio_on_in_policy"] == "0.9000" and body["below_floor"] is True


def test_bad_bills_name_their_fields(client, session, logins):
    case = treated_case(client, session, logins)
    hospital = logins["hospital"]
    unbalanced = post_bill(client, case, hospital, own_payment="3000.00")
    assert unbalanced.status_code == 422 and {"total", "own_payment"} <= set(unbalanced.json["errors"])
    negative = post_bill(client, case, hospital, charity="-5.00")
    assert negative.status_code == 422 and "charity" in negative.json["errors"]
    float_money = post_bill(client, case, hospital, total=20000.0)
    assert float_money.status_code == 422 and "total" in float_money.json["errors"]
    fen_fraction = post_bill(client, case, hospital, in_policy="18000.001")
    assert fen_fraction.status_code == 422 and "in_policy" in fen_fraction.json["errors"]
    huge = post_bill(client, case, hospital, total="1359525393304348325150662480.11")  # was a 500 (fuzzing)
    assert huge.status_code == 422 and "total" in huge.json["errors"]
    assert post_bill(client, case, logins["coordinator"]).status_code == 403
    assert client.get(f"/api/v1/cases/{case.id}/settlements", headers=logins["coordinator"].headers).json == []


def test_settlement_ends_the_missing_settlement_alert_and_raises_below_floor(app, client, session, logins):
    case = treated_case(client, session, logins)  # discharged 20 days ago: 14-day settlement deadline passed
    with app.app_context():
        scan(db.session(), utcnow())
    coordinator = logins["coordinator"]
    alerts = client.get(f"/api/v1/alerts?case_id={case.id}", headers=coordinator.headers).json["items"]
    assert [(a["rule"], a["status"]) for a in alerts] == [("settlement_missing", "open")]
    post_bill(client, case, logins["hospital"])
    with app.app_context():
        scan(db.session(), utcnow() + timedelta(seconds=1))
    alerts = client.get(f"/api/v1/alerts?case_id={case.id}", headers=coordinator.headers).json["items"]
    assert sorted((a["rule"], a["status"], a["org_unit"]) for a in alerts) == [
        ("below_floor", "open", coordinator.org_unit), ("settlement_missing", "resolved", logins["hospital"].org_unit)]
    assert case.get(coordinator).json["due_at"] is None


def test_stats_are_scoped(client, session, logins):
    case = treated_case(client, session, logins)
    post_bill(client, case, logins["hospital"])
    sees = {name for name, visible in SEES.items() if visible} - {"city_expert"}  # never referred here
    for name, login in logins.items():
        response = client.get("/api/v1/stats", headers=login.headers)
        assert response.status_code == 200, name
        counties = {row["county"]: row for row in response.json}
        assert ("533124" in counties) is (name in sees), name
    [row] = client.get("/api/v1/stats", headers=logins["coordinator"].headers).json
    assert row["cases_by_state"] == {"treated": 1} and row["settlements"] == 1
    assert row["mean_actual_ratio"] == "0.9000"
    assert row["shortfalls"] == {"count": 1, "total": "1800.01"}
    # Seed 001 第2条 "确保县域内住院实际报销比例不低于70%": 16,200 of 20,000 at the county hospital = 81%.
    assert row["county_inpatient_actual_ratio"] == {"actual": "0.8100", "floor": "0.7000", "met": True}


def test_second_stay_of_the_year_uses_the_first_for_bands_and_income(client, session, logins):
    """Year-to-date figures come from SQL sums over earlier bills: checked with non-zero ones."""
    walk = Walker(session, at(2018, 9, 1, 9))
    case = walk.discharge(walk.admit(walk.assign(walk.confirm(walk.new_case()))))
    http = HttpCase(client, case.id)
    first = post_bill(client, http, logins["hospital"], discharged_at="2018-08-30T10:00:00+08:00",
                      admitted_at=None, total="20000.00", in_policy="18000.00", basic_insurance="16200.00",
                      own_payment="3800.00")
    assert first.status_code == 201, first.json
    # Second stay: 10,000 in-policy at the county hospital, 9,000 basic, 1,000 left. With the first stay's 1,800,
    # the year's base is 2,800: still under the 4,931 deductible, so no critical-illness payment; own 1,000
    # brings the year to 4,800.00 (under the 9,862 rural income).
    second = post_bill(client, http, logins["hospital"], discharged_at="2018-08-31T10:00:00+08:00",
                       admitted_at=None, total="10000.00", in_policy="10000.00", basic_insurance="9000.00",
                       own_payment="1000.00")
    assert second.json["expected"]["critical_illness_insurance"] == "0.00"
    assert second.json["year"]["own_payment_to_date"] == "4800.00"


def test_stay_at_a_hospital_outside_the_county_is_judged_against_the_70_percent(client, session, logins):
    """Seed 001 第2条 "对符合转诊转院规范，到县域外住院的，单人单次住院政策范围内报销比例不低于70%": the service
    tells a provincial hospital from the county's own by where it sits (hand-computed in test_money.py)."""
    from tests.api.conftest import add_login
    from tests.casework.helpers import designated_hospital

    provincial = designated_hospital(session, "provincial")
    walk = Walker(session, at(2018, 6, 1, 9))
    case = walk.confirm(walk.new_case())
    case = walk.fire(case, "assign", {"hospital_id": provincial, "plan": "转省级医院手术治疗"})
    case = walk.discharge(walk.admit(case))
    who = add_login(session, "province_hospital", "hospital", provincial)
    body = post_bill(client, HttpCase(client, case.id), who, discharged_at="2018-05-31T10:00:00+08:00",
                     admitted_at="2018-05-20T10:00:00+08:00", total="60000.00", in_policy="50000.00",
                     basic_insurance="34500.00", critical_illness_insurance="7048.30",
                     medical_assistance="3451.70", government_backstop="9000.01", own_payment="5999.99").json
    floors = {f["code"]: (f["required"], f["met"], f["shortfall"]) for f in body["floors"]}
    assert floors["out_of_county_ratio"] == ("0.7000", False, "500.00")  # 70% of 50,000 - 34,500
    assert body["expected"]["basic_insurance"] == "35000.00"
    # The county's own hospital is not 县域外: no such line (test_2018_county_stay_beside_the_expected_chain's bill).
    session.rollback()  # end the session's read: SQLite cannot write from a snapshot older than the bill
    walk = Walker(session, at(2018, 6, 1, 9))
    home = walk.discharge(walk.admit(walk.assign(walk.confirm(walk.new_case()))))
    body = post_bill(client, HttpCase(client, home.id), logins["hospital"], discharged_at="2018-05-31T10:00:00+08:00",
                     admitted_at="2018-05-27T10:00:00+08:00").json
    assert "out_of_county_ratio" not in {f["code"] for f in body["floors"]}
