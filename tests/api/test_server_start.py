"""What `casework serve` does before gunicorn forks its workers (api/server.py ``_serve``)."""

from __future__ import annotations

import pytest

from api import server
from workflows import policy_pack
from workflows.policy_pack import PolicyPackError, packs


class _NotStarted(Exception):
    pass


def _refuse_to_start(options, factory):
    class NoServer:
        def run(self):
            raise _NotStarted(packs.cache_info().currsize)

    return NoServer()


def test_the_packs_are_read_before_the_workers_are_forked(monkeypatch):
    monkeypatch.setattr(server, "_Server", _refuse_to_start)
    packs.cache_clear()
    with pytest.raises(_NotStarted) as started:
        server._serve("127.0.0.1", 0, 1, lambda: None)
    assert started.value.args == (1,)  # the workers inherit the loaded packs
    assert "longchuan-2017" in packs()


def test_a_broken_pack_stops_the_start(monkeypatch, tmp_path):
    (tmp_path / "broken.yaml").write_text("code: broken\nname: [unclosed\n", encoding="utf-8")
    read = policy_pack.load_packs
    monkeypatch.setattr(server, "_Server", _refuse_to_start)
    monkeypatch.setattr(policy_pack, "load_packs", lambda: read(tmp_path))
    packs.cache_clear()
    try:
        with pytest.raises(PolicyPackError):
            server._serve("127.0.0.1", 0, 1, lambda: None)
    finally:
        packs.cache_clear()
