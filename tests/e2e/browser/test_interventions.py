"""Interventions from the page: clamp a feature of the Dallas graph, watch " Austin" move; the share
link (the URL) reopens the same interventions and results in a fresh browser context."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.support.browser import VIEWPORT, Console, Service, shoot

TEXAS = "3_88_10"  # "Texas" at the last position (layer 3, feature 88)


def _open(page: Any, path: str) -> None:
    page.goto(path)
    page.wait_for_selector("#explorer[data-interactive='1']")


def _austin(page: Any) -> tuple[str, str]:
    row = page.locator(".iv-bar-row[data-token=' Austin'] .iv-probs")
    text = str(row.inner_text())
    before, after = (part.strip() for part in text.split("→"))
    return before, after


def test_clamp_a_feature_and_share_it(page: Any, service: Service, browser: Any) -> None:
    graph_id = service.trace(max_n_logits=9)  # its own graph id: independent of test order
    _open(page, f"/graph/{graph_id}")
    panel = page.locator("#interventions")
    page.click("#iv-toggle")  # the interventions column takes no room until it is opened
    expect(panel).to_be_visible()
    page.locator(f"svg.lg-svg [data-id='{TEXAS}']").click()
    expect(page.locator("#clicked-label")).to_have_text("Texas")
    panel.locator(".iv-mode").select_option("set")
    panel.locator(".iv-slider").fill("0")
    panel.locator(".iv-add-clicked").click()
    expect(panel.locator(".iv-list li").first).to_contain_text("Texas")
    expect(panel).to_have_attribute("data-state", "done", timeout=15_000)
    before, after = _austin(page)
    assert before != after, (before, after)
    assert float(after.rstrip("%")) < float(before.rstrip("%"))
    expect(panel.locator(".iv-cont-after")).not_to_be_empty()
    page.evaluate("window.__attrgraph.store.flushUrl()")
    expect(page).to_have_url(re.compile(r"interventions="))
    shoot(page, "interventions-clamp")
    url = page.url

    # Clamp higher: Austin goes up instead.
    page.locator(".iv-remove").first.click()
    panel.locator(".iv-slider").fill(str(4 * 5.6))
    panel.locator(".iv-add-clicked").click()
    expect(panel).to_have_attribute("data-state", "done", timeout=15_000)
    page.wait_for_function("document.querySelector('.iv-bar-row[data-token=\" Austin\"]') !== null")
    _, higher = _austin(page)
    assert float(higher.rstrip("%")) > float(before.rstrip("%"))

    # The share link in a fresh browser context: same intervention, same results.
    context = browser.new_context(viewport=VIEWPORT, base_url=service.url)
    fresh = context.new_page()
    console = Console(fresh)
    try:
        _open(fresh, url)
        fresh_panel = fresh.locator("#interventions")
        expect(fresh_panel.locator(".iv-list li").first).to_contain_text("Texas")
        expect(fresh_panel.locator(".iv-how").first).to_have_text("clamp to 0.00")
        expect(fresh_panel).to_have_attribute("data-state", "done", timeout=15_000)
        assert _austin(fresh) == (before, after)
        shoot(fresh, "interventions-shared")
    finally:
        context.close()
    assert not console.problems, console.problems


def test_test_this_subgraph(page: Any, service: Service) -> None:
    graph_id = service.trace(max_n_logits=9)  # its own graph id: independent of test order
    _open(
        page,
        f"/graph/{graph_id}?pinnedIds=3_88_10,4_12_10&supernodes=" + '[["say Austin","4_12_10","5_277_10"]]',
    )
    panel = page.locator("#interventions")
    page.click("#iv-toggle")
    panel.locator(".iv-test").click()
    # Every supernode and every other pinned node: "say Austin", then "Texas" (issue 13).
    expect(panel.locator(".iv-tests li")).to_have_count(2, timeout=15_000)
    expect(panel).to_have_attribute("data-state", re.compile("done|idle"), timeout=15_000)
    text = str(panel.locator(".iv-tests li").first.inner_text())
    assert "say Austin" in text and "→" in text
    texas = str(panel.locator(".iv-tests li").nth(1).inner_text())
    assert "Texas" in texas and "→" in texas
    shoot(page, "interventions-subgraph-test")


def test_a_refused_progress_stream_still_ends_in_the_result(page: Any, service: Service) -> None:
    """The job's event stream answers 503 once (the browser then gives up on it): the page reads
    the job's state and follows it again, and the result arrives as usual."""
    graph_id = service.trace(max_n_logits=9)
    refused: list[str] = []
    job_reads: list[str] = []

    def refuse_once(route: Any) -> None:
        if refused:
            route.continue_()
            return
        refused.append(route.request.url)
        route.fulfill(status=503, content_type="application/json", body='{"detail": "down"}')

    page.route("**/api/jobs/*/events", refuse_once)
    job_url = re.compile(r"/api/jobs/[0-9a-f]{32}$")
    page.on("request", lambda r: job_reads.append(r.url) if job_url.search(r.url) else None)
    _open(page, f"/graph/{graph_id}")
    panel = page.locator("#interventions")
    page.click("#iv-toggle")
    page.locator(f"svg.lg-svg [data-id='{TEXAS}']").click()
    panel.locator(".iv-mode").select_option("set")
    panel.locator(".iv-slider").fill("1.7")
    panel.locator(".iv-add-clicked").click()
    expect(panel).to_have_attribute("data-state", "done", timeout=15_000)
    expect(panel.locator(".iv-bar-row[data-token=' Austin']")).to_be_visible()
    assert len(refused) == 1
    assert job_reads and job_reads[0] == refused[0].removesuffix("/events")
    # The refused stream is the one console error this test expects.
    page.console_problems[:] = [p for p in page.console_problems if "503" not in p or "/events" not in p]
