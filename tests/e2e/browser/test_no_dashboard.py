"""A feature without a dashboard: the panel says so and shows the command that builds one, instead
of an empty panel or an error."""

from __future__ import annotations

import json
from typing import Any

from tests.support.browser import Service, shoot
from tests.support.environment import require_module

sync_api = require_module("playwright.sync_api")
expect = sync_api.expect


def test_missing_dashboard_shows_the_build_command(page: Any, service: Service) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    # What the API answers for a set or feature with no dashboard (routes/features.py, worker 404).
    page.route(
        "**/api/features/**",
        lambda route: route.fulfill(
            status=404, content_type="application/json", body=json.dumps({"detail": "no such feature"})
        ),
    )
    page.goto(f"/graph/{graph_id}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    page.locator("svg.lg-svg [data-id='0_17_9']").click()
    panel = page.locator("#no-dashboard")
    expect(panel).to_contain_text("No dashboard yet")
    expect(panel.locator("code")).to_have_text(
        "attrgraph dashboards build --model dallas-demo --transcoders dallas-plt --corpus FILE"
    )
    expect(page.locator("#feature .top-examples")).to_have_count(0)
    expect(page.locator("#feature p.error")).to_have_count(0)
    shoot(page, "no-dashboard")
    # The browser logs the 404 it was told to expect; anything else still fails the test.
    page.console_problems[:] = [p for p in page.console_problems if "404" not in p]
