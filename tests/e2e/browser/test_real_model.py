"""The explorer on the real demo model (engine, transcoders, dashboards), when it is built:
trace the Dallas prompt from the home page, click " Austin", walk to a feature, read its examples.

Slow (loads the model and traces on CPU): `pytest -m slow tests/e2e/browser/test_real_model.py`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.browser import CHROMIUM_ARGS, VIEWPORT, Console, chromium_path, shoot
from tests.support.dallas import DALLAS_PROMPT
from tests.support.environment import missing, require_module

sync_api = require_module("playwright.sync_api")
require_module("torch")
expect = sync_api.expect

pytestmark = pytest.mark.slow


def test_demo_model_dallas(demo_url: str) -> None:
    executable = chromium_path()
    if executable is None:
        missing("no Chromium binary (apt-get install chromium, or set ATTRGRAPH_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page: Any = browser.new_page(viewport=VIEWPORT, base_url=demo_url)
        page.set_default_timeout(120_000)
        console = Console(page)
        page.goto("/")
        page.fill("#prompt", DALLAS_PROMPT)
        expect(page.locator(".prediction-list")).to_contain_text("Austin")
        page.click("#submit")
        expect(page.locator("#progress")).to_be_visible()
        page.wait_for_url(re.compile(r"/graph/[0-9a-f]{32}"))
        page.wait_for_selector("#explorer[data-interactive='1']")
        austin = page.locator("svg.lg-svg [aria-label^='Output “ Austin”']")
        austin.click()
        expect(page.locator("#clicked-label")).to_have_text("Output “ Austin”")
        rows = page.locator(".conn-inputs .conn-row")
        assert rows.count() >= 3
        shoot(page, "20-demo-austin")
        # Walk to the strongest input feature and read its dashboard.
        page.locator(".conn-inputs .conn-row:has(.sw-feature)").first.click()
        expect(page.locator("#feature .example").first).to_be_visible()
        shoot(page, "21-demo-feature")
        browser.close()
        assert not console.problems, console.problems
