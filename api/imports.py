"""Imports over HTTP: a roster upload answers a job with its status, totals and per-row report.

The import runs inside the request (a county's roster of tens of thousands of rows takes seconds);
the job and its report file are kept under the instance folder, readable by whoever started it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app, request, send_file
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import current_actor
from api.extensions import db
from casework.db import utcnow
from casework.errors import Forbidden, NotFound, ValidationFailed
from casework.tabular import CSV, XLSX, UnreadableFile, kind_of

bp = Blueprint("imports", __name__, url_prefix="/api/v1", description="Roster imports and their reports")

MAX_UPLOAD_BYTES = int(os.environ.get("CASEWORK_MAX_UPLOAD_BYTES", 64 * 1024 * 1024))
MEDIA = {
    XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    CSV: "text/csv",  # the report keeps the upload's own encoding (GB18030 or UTF-8 with BOM)
}


class ImportJobSchema(Schema):
    id = fields.String()
    kind = fields.String(metadata={"description": "persons"})
    status = fields.String(validate=validate.OneOf(("done", "failed")))
    file_name = fields.String()
    created_at = fields.AwareDateTime()
    created_by = fields.String()
    totals = fields.Dict(metadata={"description": "rows, new, changed, history, unchanged, invalid, committed …"})
    summary = fields.String(metadata={"description": "the totals in one Chinese sentence"})
    report_url = fields.String(metadata={"description": "the uploaded file with 结果/错误 columns"})


class TemplateQuerySchema(Schema):
    format = fields.String(load_default=XLSX, validate=validate.OneOf((XLSX, CSV)))


def _jobs_dir() -> Path:
    path = Path(current_app.instance_path) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_job(job_id: str) -> tuple[Path, dict[str, Any]]:
    actor = current_actor()
    try:
        folder = _jobs_dir() / str(uuid.UUID(job_id))
        job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        raise NotFound(f"no import {job_id}") from None
    if actor.role != "admin" and job["created_by"] != actor.username:
        raise NotFound(f"no import {job_id}")  # someone else's import looks like none at all
    return folder, job


def _shown(job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "created_at": datetime.fromisoformat(job["created_at"])}


def _flag(name: str) -> bool:
    return (request.form.get(name) or "").strip().lower() in ("1", "true", "yes", "on")


@bp.route("/imports/persons")
class PersonImports(MethodView):
    @bp.doc(
        requestBody={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary", "description": ".xlsx or .csv"},
                            "county": {"type": "string", "description": "admins: the county the roster is for"},
                            "dry_run": {"type": "boolean"},
                            "skip_invalid": {"type": "boolean"},
                        },
                    }
                }
            },
        }
    )
    @bp.response(201, ImportJobSchema)
    @bp.alt_response(422, description="the file cannot be read or lacks a required column")
    def post(self):
        """Import a roster of eligible people (coordinator of the county, or admin)."""
        from casework.services.roster import describe, import_persons, write_report

        actor = current_actor()
        if actor.role not in ("admin", "county_coordinator"):
            raise Forbidden(f"role {actor.role} may not import rosters")
        request.max_content_length = MAX_UPLOAD_BYTES
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ValidationFailed.field("file", "请上传文件（字段名 file）")
        name = Path(upload.filename).name
        try:
            kind = kind_of(Path(name))
        except UnreadableFile as exc:
            raise ValidationFailed.field("file", str(exc)) from None
        job_id = str(uuid.uuid4())
        folder = _jobs_dir() / job_id
        folder.mkdir()
        source = folder / f"upload.{kind}"
        upload.save(source)
        try:
            report = import_persons(
                db.session(),
                actor,
                source,
                county=(request.form.get("county") or "").strip() or None,
                dry_run=_flag("dry_run"),
                skip_invalid=_flag("skip_invalid"),
            )
        except ValidationFailed:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        write_report(source, report, folder / f"report.{kind}")
        source.unlink()  # the registry's personal data is kept once, in the database
        job = {
            "id": job_id,
            "kind": "persons",
            "status": "done" if report.committed or report.dry_run else "failed",
            "file_name": name,
            "created_at": utcnow().isoformat(),
            "created_by": actor.username,
            "totals": report.totals(),
            "summary": describe(report),
            "report_url": f"/api/v1/imports/{job_id}/report",
            "report_kind": kind,
        }
        (folder / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
        return _shown(job), 201, {"Location": f"/api/v1/imports/{job_id}"}


@bp.route("/imports/persons/template")
class PersonTemplate(MethodView):
    @bp.arguments(TemplateQuerySchema, location="query")
    @bp.response(200, description="the roster template (.xlsx or UTF-8 CSV with BOM)")
    def get(self, query):
        """Download the roster template: the header row and one example row."""
        from casework.services.roster import write_template

        kind = query["format"]
        handle, name = tempfile.mkstemp(suffix=f".{kind}")
        os.close(handle)
        write_template(Path(name), kind)
        response = send_file(name, mimetype=MEDIA[kind], as_attachment=True, download_name=f"名册模板.{kind}")
        response.call_on_close(lambda: os.unlink(name))
        return response


@bp.route("/imports/<job_id>")
class ImportJob(MethodView):
    @bp.response(200, ImportJobSchema)
    @bp.alt_response(404, description="no such import of yours")
    def get(self, job_id):
        """An import job: status, totals and where its report is."""
        return _shown(_load_job(job_id)[1])


@bp.route("/imports/<job_id>/report")
class ImportReport(MethodView):
    @bp.response(200, description="the uploaded file with 结果/错误 columns")
    @bp.alt_response(404, description="no such import of yours")
    def get(self, job_id):
        """The uploaded file back, each row with its outcome (结果) and error (错误)."""
        folder, job = _load_job(job_id)
        kind = job["report_kind"]
        return send_file(
            folder / f"report.{kind}", mimetype=MEDIA[kind], as_attachment=True, download_name=f"导入结果.{kind}"
        )
