"""The application object: Flask, with whether each hook or view is a coroutine function asked once
(api/app.py ``CaseworkFlask``)."""

from __future__ import annotations

from flask.views import MethodView

from api.app import CaseworkFlask


class Cases(MethodView):
    def get(self) -> str:
        return "ok"


async def later() -> str:
    return "ok"


def test_plain_functions_come_back_as_they_are_and_the_answer_is_kept_per_function():
    app = CaseworkFlask("casework_test")
    # A MethodView's method is bound to a new instance on each request: one entry for all of them.
    for _ in range(3):
        method = Cases().get
        assert app.ensure_sync(method) is method
    assert list(app._coroutine_function) == [Cases.get]


def test_coroutine_functions_still_go_through_flask_async_to_sync(monkeypatch):
    app = CaseworkFlask("casework_test")
    wrapped = []
    monkeypatch.setattr(app, "async_to_sync", lambda func: wrapped.append(func) or "wrapped")
    assert app.ensure_sync(later) == "wrapped"
    assert app.ensure_sync(later) == "wrapped"  # asked again from the kept answer, wrapped again
    assert wrapped == [later, later]


def test_the_app_asks_once_per_hook_and_view(app):
    """Two requests: each hook and the view is asked about once, then answered from what was kept."""
    from api import auth

    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    asked = dict(app._coroutine_function)
    assert auth.authenticate_request in asked and asked[auth.authenticate_request] is False
    assert client.get("/healthz").status_code == 200
    assert app._coroutine_function == asked
