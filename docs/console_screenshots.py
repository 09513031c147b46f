"""Screenshots of the console for the README: one home page per role on the living demo.

    casework db upgrade && casework demo
    .venv/bin/python docs/console_screenshots.py [DATABASE_URL] [OUT_DIR]

Serves the app on a loopback port and drives Debian's Chromium with Playwright (dev extras).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from api.app import create_app
from api.config import database_url

ROLES = ("coordinator", "hospital", "expert", "supervisor")


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else database_url(str(Path("instance").resolve()))
    out = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).parent)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "screenshots"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for role in ROLES:
            context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 860})
            page = context.new_page()
            page.goto(base + "/login")
            page.fill("input[name=username]", f"longchuan.{role}")
            page.fill("input[name=password]", "casework-demo")
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            page.screenshot(path=str(out / f"console-{role}.png"))
            context.close()
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main()
