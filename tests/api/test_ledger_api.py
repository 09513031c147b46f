"""GET /api/v1/ledger: streamed CSV and .xlsx, masking by who asks, 404 outside one's area."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from casework.models import AccessLog
from tests.data_io.county import CountyBuilder
from tests.data_io.files import read_any


def test_the_county_coordinator_streams_the_csv_with_full_ids_logged(client, logins, session, tmp_path):
    CountyBuilder(session, date.today() - timedelta(days=120)).build()

    answer = client.get("/api/v1/ledger?format=csv", headers=logins["coordinator"].headers)

    assert answer.status_code == 200 and answer.mimetype == "text/csv" and answer.is_streamed
    (tmp_path / "l.csv").write_bytes(answer.data)
    rows = read_any(tmp_path / "l.csv")
    assert rows[0][:3] == ["身份证号", "姓名", "性别"] and len(rows) == 12
    assert all(row[0][:17].isdigit() for row in rows[1:])
    session.rollback()  # a fresh snapshot: the request committed in its own session
    assert session.scalar(select(func.count()).select_from(AccessLog).where(AccessLog.username == "coordinator")) == 11


def test_a_supervisor_gets_masked_ids_and_the_totals_sheet(client, logins, session, tmp_path):
    CountyBuilder(session, date.today() - timedelta(days=120)).build()
    logged_before = session.scalar(select(func.count()).select_from(AccessLog))  # the builder's own full reads

    answer = client.get("/api/v1/ledger?county=533124&format=xlsx", headers=logins["city_supervisor"].headers)

    assert answer.status_code == 200
    (tmp_path / "l.xlsx").write_bytes(answer.data)
    assert all("********" in row[0] for row in read_any(tmp_path / "l.xlsx")[1:])
    assert read_any(tmp_path / "l.xlsx", sheet=1)[1][0] == "533124"
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AccessLog)) == logged_before


def test_outside_ones_area_the_county_does_not_exist_and_doctors_may_not(client, logins):
    other = client.get("/api/v1/ledger?county=533124", headers=logins["other_coordinator"].headers)
    missing = client.get("/api/v1/ledger?county=999999", headers=logins["other_coordinator"].headers)
    assert other.status_code == missing.status_code == 404
    assert other.get_json()["detail"].replace("533124", "") == missing.get_json()["detail"].replace("999999", "")
    assert client.get("/api/v1/ledger", headers=logins["doctor"].headers).status_code == 403
    assert client.get("/api/v1/ledger?format=pdf", headers=logins["coordinator"].headers).status_code == 422


def test_an_xlsx_ledger_longer_than_a_sheet_is_refused_on_format_and_nothing_logged(
    client, logins, session, monkeypatch
):
    CountyBuilder(session, date.today() - timedelta(days=120)).build()
    session.commit()
    logged_before = session.scalar(select(func.count()).select_from(AccessLog))
    monkeypatch.setattr("casework.services.ledger.XLSX_MAX_ROWS", 11)  # a sheet of 10 rows below its header

    refused = client.get("/api/v1/ledger?format=xlsx", headers=logins["coordinator"].headers)
    csv = client.get("/api/v1/ledger?format=csv", headers=logins["coordinator"].headers)

    assert refused.status_code == 422 and refused.mimetype == "application/problem+json"
    assert "CSV" in refused.get_json()["errors"]["format"][0]
    assert csv.status_code == 200 and len(csv.data.decode("utf-8-sig").splitlines()) == 12
    session.rollback()
    assert session.scalar(select(func.count()).select_from(AccessLog)) == logged_before + 11  # the CSV's only
