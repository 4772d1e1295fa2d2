"""The pages under their Content-Security-Policy (the other browser tests bypass it for
Playwright's eval-based waits): home, a traced graph with its panels and the subgraph, and /docs
load and work with no policy violation (a violation is a console error)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import VIEWPORT, Console, Service
from tests.support.dallas import DALLAS_PROMPT
from tests.support.environment import require_module

sync_api = require_module("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture
def strict_page(browser: Any, service: Service) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, base_url=service.url)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    console = Console(pg)
    yield pg
    context.close()
    assert not console.problems, "the page reported errors:\n" + "\n".join(console.problems)


def test_pages_work_under_the_policy(strict_page: Any, service: Service) -> None:
    page = strict_page
    response = page.goto("/")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    expect(page.locator("#model-select")).to_have_value("dallas-demo")
    page.fill("#prompt", DALLAS_PROMPT)
    expect(page.locator(".prediction-list")).to_contain_text("Austin")
    # Settings no other test uses: a graph of its own, traced now (progress over SSE), not cached.
    page.click("details.settings summary")
    page.fill("#node-threshold", "0.79")
    page.click("#submit")
    page.wait_for_url(re.compile(r"/graph/[0-9a-f]{32}"))
    page.wait_for_selector("#explorer[data-interactive='1']")
    page.locator("svg.lg-svg [aria-label^='Output “ Austin”']").click()
    expect(page.locator("#clicked-label")).to_have_text("Output “ Austin”")

    page.goto("/docs")
    expect(page.locator(".opblock-summary-path[data-path='/api/graphs']").first).to_be_visible()
