"""Answering with a view the domain already shaped (casework/views.py).

A case view is a dict of the very fields ``CaseSchema`` declares, with datetimes and dates where
the schema has them; running it through marshmallow again cost about half the CPU of a page of 50
cases and a twentieth of a transition, to produce the same JSON. So the case endpoints encode their
views directly, and keep their schemas in ``@bp.response`` for the OpenAPI document;
tests/api/test_responses.py proves, for every shape a case view takes (masked and not, with and
without hospital and referral, in a list and in the referral queue), that the body is exactly what
the schema would have dumped.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from flask import Response, current_app


def view_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as JSON, datetimes and dates in ISO 8601 as marshmallow writes them."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=_iso)
    return current_app.response_class(text, status=status, headers=headers, mimetype="application/json")


def _iso(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not part of a view")
