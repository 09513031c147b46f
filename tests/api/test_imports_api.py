"""The roster upload over HTTP: a job with totals and a downloadable per-row report; the template."""

from __future__ import annotations

import io

from tests.data_io.files import read_any, write_csv
from tests.data_io.test_roster import good_rows


def upload(client, who, path, **form):
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **form}
    return client.post("/api/v1/imports/persons", headers=who.headers, data=data, content_type="multipart/form-data")


def test_a_coordinator_uploads_a_gb18030_roster_and_downloads_the_report(client, logins, tmp_path):
    rows = [*good_rows(), ["12345", "坏行", "迭撒村", "建档立卡未脱贫", "2016-03-01"]]
    path = write_csv(tmp_path / "名册.csv", rows, "gb18030")

    answer = upload(client, logins["coordinator"], path)

    assert answer.status_code == 201, answer.get_json()
    job = answer.get_json()
    assert job["status"] == "failed" and job["totals"]["invalid"] == 1 and job["totals"]["new"] == 0
    report = client.get(job["report_url"], headers=logins["coordinator"].headers)
    assert report.status_code == 200
    (tmp_path / "r.csv").write_bytes(report.data)
    back = read_any(tmp_path / "r.csv")
    assert back[-1][-2] == "错误" and "身份证号" in back[-1][-1]
    # someone else's import does not exist for them
    assert client.get(f"/api/v1/imports/{job['id']}", headers=logins["other_coordinator"].headers).status_code == 404

    again = upload(client, logins["coordinator"], path, skip_invalid="true")
    assert again.get_json()["status"] == "done" and again.get_json()["totals"]["new"] == 3
    person = client.get("/api/v1/cases", headers=logins["coordinator"].headers)
    assert person.status_code == 200


def test_roles_that_may_not_import_get_403_and_bad_files_422(client, logins, tmp_path):
    path = write_csv(tmp_path / "名册.csv", good_rows(), "utf-8-sig")
    assert upload(client, logins["doctor"], path).status_code == 403
    answer = upload(client, logins["coordinator"], path, county="320921")
    assert answer.status_code == 422 and "county" in answer.get_json()["errors"]
    bad = tmp_path / "名册.pdf"
    bad.write_bytes(b"%PDF")
    answer = upload(client, logins["coordinator"], bad)
    assert answer.status_code == 422 and answer.headers["Content-Type"] == "application/problem+json"


def test_the_template_downloads_as_xlsx_and_csv(client, logins, tmp_path):
    for fmt in ("xlsx", "csv"):
        answer = client.get(f"/api/v1/imports/persons/template?format={fmt}", headers=logins["coordinator"].headers)
        assert answer.status_code == 200
        (tmp_path / f"t.{fmt}").write_bytes(answer.data)
        assert read_any(tmp_path / f"t.{fmt}")[0] == ["身份证号", "姓名", "村/社区", "类别", "认定日期"]
