"""Imports over HTTP: a roster upload answers 202 with a job; the job shows its progress, then its
totals and per-row report.

The request checks what can be refused at once (role, county, a readable file with the columns)
and hands the file to an import process of its own (api/import_jobs.py), so a large roster does
not hold a gevent worker for minutes. The job and its report are kept under the instance folder,
readable by whoever started it.
"""

from __future__ import annotations

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

from api import import_jobs
from api.auth import current_actor
from api.extensions import db
from casework.db import utcnow
from casework.errors import Conflict, Forbidden, NotFound, ValidationFailed
from casework.tabular import CSV, XLSX, UnreadableFile, kind_of

bp = Blueprint("imports", __name__, url_prefix="/api/v1", description="Roster imports and their reports")

MAX_UPLOAD_BYTES = int(os.environ.get("CASEWORK_MAX_UPLOAD_BYTES", 64 * 1024 * 1024))
MEDIA = {
    XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    CSV: "text/csv",  # the report keeps the upload's own encoding (GB18030 or UTF-8 with BOM)
}


class ProgressSchema(Schema):
    rows = fields.Integer(metadata={"description": "rows read so far"})
    total = fields.Integer(allow_none=True, metadata={"description": "rows in the file (CSV); null for .xlsx"})
    rows_per_second = fields.Integer()
    percent = fields.Integer(metadata={"description": "when the total is known"})
    seconds_left = fields.Integer(metadata={"description": "when the total is known"})


class ImportJobSchema(Schema):
    id = fields.String()
    kind = fields.String(metadata={"description": "persons"})
    status = fields.String(
        validate=validate.OneOf(import_jobs.STATUSES),
        metadata={
            "description": "running; done (imported, or a dry run); failed (bad rows and nothing imported, or the "
            "file refused: see summary); error (the import stopped; nothing was kept)"
        },
    )
    file_name = fields.String()
    created_at = fields.AwareDateTime()
    created_by = fields.String()
    updated_at = fields.AwareDateTime(metadata={"description": "the job's last change (progress: each second)"})
    finished_at = fields.AwareDateTime(metadata={"description": "once it is no longer running"})
    progress = fields.Nested(ProgressSchema)
    totals = fields.Dict(
        metadata={"description": "when finished: rows, new, changed, history, unchanged, invalid, committed …"}
    )
    summary = fields.String(metadata={"description": "when finished: the totals (or the refusal) in Chinese"})
    report_url = fields.String(metadata={"description": "when finished: the uploaded file with 结果/错误 columns"})


class TemplateQuerySchema(Schema):
    format = fields.String(load_default=XLSX, validate=validate.OneOf((XLSX, CSV)))


def _load_job(job_id: str) -> tuple[Path, dict[str, Any]]:
    actor = current_actor()
    try:
        folder = import_jobs.job_folder(current_app.instance_path, job_id)
        job = import_jobs.read_job(folder)
    except (ValueError, OSError):
        raise NotFound(f"no import {job_id}") from None
    if actor.role != "admin" and job["created_by"] != actor.username:
        raise NotFound(f"no import {job_id}")  # someone else's import looks like none at all
    return folder, job


def _shown(job: dict[str, Any]) -> dict[str, Any]:
    job = import_jobs.as_seen(job)
    moments = ("created_at", "updated_at", "finished_at")
    return {**job, **{key: datetime.fromisoformat(job[key]) for key in moments if job.get(key)}}


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
    @bp.response(202, ImportJobSchema, description="the import has started: follow the job (Location)")
    @bp.alt_response(422, description="the file cannot be read or lacks a required column; a county not yours")
    def post(self):
        """Import a roster of eligible people (coordinator of the county, or admin); it runs apart."""
        from casework.services.roster import check_roster
        from casework.tabular import count_rows

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
        folder = import_jobs.jobs_dir(current_app.instance_path) / job_id
        folder.mkdir()
        source = folder / f"upload.{kind}"
        upload.save(source)
        try:
            county = check_roster(db.session(), actor, source, (request.form.get("county") or "").strip() or None)
        except ValidationFailed:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            db.session.rollback()  # nothing was written; the import process has its own session
        job = {
            "id": job_id,
            "kind": "persons",
            "status": import_jobs.RUNNING,
            "file_name": name,
            "created_at": utcnow().isoformat(),
            "created_by": actor.username,
            "progress": import_jobs.progress(0, count_rows(source), 0),
            "report_kind": kind,
        }
        import_jobs.write_job(folder, job)
        try:
            import_jobs.start(
                current_app.config["SQLALCHEMY_DATABASE_URI"],
                current_app.instance_path,
                job_id,
                source,
                county=county,
                dry_run=_flag("dry_run"),
                skip_invalid=_flag("skip_invalid"),
            )
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)  # no process, no job: the 500 says so
            raise
        return _shown(job), 202, {"Location": f"/api/v1/imports/{job_id}"}


@bp.route("/imports/persons/template")
class PersonTemplate(MethodView):
    @bp.arguments(TemplateQuerySchema(), location="query")
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
    @bp.alt_response(409, description="the import has not finished, or stopped without a report")
    def get(self, job_id):
        """The uploaded file back, each row with its outcome (结果) and error (错误)."""
        folder, job = _load_job(job_id)
        if not job.get("report_url"):
            raise Conflict("导入尚未完成" if job["status"] == import_jobs.RUNNING else "此次导入没有逐行结果")
        kind = job["report_kind"]
        return send_file(
            folder / f"report.{kind}", mimetype=MEDIA[kind], as_attachment=True, download_name=f"导入结果.{kind}"
        )
