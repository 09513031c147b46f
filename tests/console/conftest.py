"""A live console on a loopback port (werkzeug in a thread) and Debian's Chromium under Playwright.

Without a browser the browser tests skip, except in CI (CI=true), where they fail as a missing
PostgreSQL does: `make test` installs chromium when it can.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from api.app import create_app

CHROMIUM = Path(os.environ.get("CASEWORK_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture
def app(db_url, session):
    """The console's app for page tests through Flask's test client."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "TESTING": True, "SECRET_KEY": "page-tests"})
    yield app
    with app.app_context():
        from api.extensions import db

        db.engine.dispose()


@pytest.fixture
def live_server(db_url, session):
    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "TESTING": True, "SECRET_KEY": "browser-tests"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    with app.app_context():
        from api.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not CHROMIUM.exists():
        _missing(f"no browser at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)")
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses its sandbox when run as root, as in CI containers.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def _missing(why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests need a browser in CI: {why}")
    pytest.skip(why)


class Shots:
    """Numbered full-page screenshots of every page a test visits, per engine."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        SHOTS.mkdir(exist_ok=True)

    def __call__(self, page, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(SHOTS / f"{self.prefix}-{self.count:02d}-{name}.png"), full_page=True)


@pytest.fixture
def shots(engine_name, request):
    return Shots(f"{engine_name}-{request.node.originalname}")
