"""What the console's page and browser tests do alike: read a form's CSRF token, log in."""

from __future__ import annotations

import re

from tests.api.conftest import PASSWORD


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def browser_log_in(page, base: str, username: str) -> None:
    """Log in through the form, as a person does, in a Playwright page."""
    page.goto(base + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
