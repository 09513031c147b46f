"""The ledger (台账) over HTTP: .xlsx (two sheets, written to a temporary file, then streamed) or
CSV (generated row by row as the client reads). Full ID numbers are access-logged first."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Response, send_file, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import current_actor
from api.extensions import db
from casework.db import utcnow
from casework.services.ledger import HEADERS, check_fits_xlsx, ledger_rows, ledger_scope, log_export, write_ledger
from casework.tabular import csv_chunks

bp = Blueprint("ledger", __name__, url_prefix="/api/v1", description="The ledger (台账) for reporting upward")

XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class LedgerQuerySchema(Schema):
    county = fields.String(metadata={"description": "county code; a coordinator's own county by default"})
    format = fields.String(load_default="xlsx", validate=validate.OneOf(("xlsx", "csv")))


@bp.route("/ledger")
class Ledger(MethodView):
    @bp.arguments(LedgerQuerySchema(), location="query")
    @bp.response(200, description="one row per case (Chinese headers); .xlsx adds a per-county totals sheet")
    @bp.alt_response(403, description="your role does not export the ledger")
    @bp.alt_response(404, description="no such county in your area")
    def get(self, query):
        """The ledger of the cases in your area: masked ID numbers unless you may see them in full."""
        session = db.session()
        actor = current_actor()
        scope = ledger_scope(session, actor, query.get("county"))
        if query["format"] == "xlsx":
            check_fits_xlsx(session, scope)  # refused before the access log records an export
        log_export(session, actor, scope)
        now = utcnow()
        stem = f"台账_{query.get('county') or 'all'}_{now:%Y%m%d}"
        if query["format"] == "csv":

            def rows():
                yield HEADERS
                yield from ledger_rows(session, scope, now)

            response = Response(stream_with_context(csv_chunks(rows())), mimetype="text/csv")
            response.headers["Content-Disposition"] = _attachment(f"{stem}.csv")
            return response
        handle, name = tempfile.mkstemp(suffix=".xlsx")
        os.close(handle)
        try:
            write_ledger(session, scope, Path(name), "xlsx", now)
        except BaseException:
            os.unlink(name)
            raise
        response = send_file(name, mimetype=XLSX_MEDIA, as_attachment=True, download_name=f"{stem}.xlsx")
        response.call_on_close(lambda: os.unlink(name))
        return response


def _attachment(filename: str) -> str:
    from urllib.parse import quote

    return f"attachment; filename=ledger.csv; filename*=UTF-8''{quote(filename)}"
