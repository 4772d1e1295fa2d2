"""The explorer in a real browser: trace from the home page, walk the graph, build a subgraph,
reload the URL, read a feature. Every test fails on any console error (see conftest.page)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.browser import Service, shoot
from tests.support.dallas import DALLAS_PROMPT, label_for
from tests.support.environment import require_module

sync_api = require_module("playwright.sync_api")
expect = sync_api.expect


def open_graph(page: Any, path: str) -> None:
    page.goto(path)
    page.wait_for_selector("#explorer[data-interactive='1']")


def output_node(page: Any, token: str) -> Any:
    return page.locator(f"svg.lg-svg [aria-label^='Output “{token}”']")


def clicked_label(page: Any) -> str:
    return str(page.locator("#clicked-label").inner_text())


def input_rows(page: Any) -> Any:
    return page.locator(".conn-inputs .conn-row")


def test_dallas_walkthrough(page: Any, service: Service) -> None:
    # Home: prompt, token preview with predictions, submit, progress, then the graph.
    page.goto("/")
    expect(page.locator("#model-select")).to_have_value("dallas-demo")
    page.fill("#prompt", DALLAS_PROMPT)
    expect(page.locator(".prediction-list")).to_contain_text("Austin")
    expect(page.locator("#tokens")).to_contain_text("Dallas")
    shoot(page, "01-home-preview")
    page.click("#submit")
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#progress-phase")).to_have_text(
        re.compile("Queued|Starting|Forward pass|Attributing features|Pruning|Done")
    )
    page.wait_for_function("document.querySelector('#progress-fill').style.width !== '0%'")
    shoot(page, "02-progress")
    page.wait_for_url(re.compile(r"/graph/[0-9a-f]{32}"))
    page.wait_for_selector("#explorer[data-interactive='1']")
    expect(output_node(page, " Austin")).to_be_visible()
    shoot(page, "03-graph")

    # Click an output: its inputs are listed, strongest first, and its edges light up.
    output_node(page, " Texas").click()
    expect(page.locator("#clicked-label")).to_have_text("Output “ Texas”")
    output_node(page, " Austin").click()
    expect(page.locator("#clicked-label")).to_have_text("Output “ Austin”")
    expect(input_rows(page).first).to_contain_text("say Austin")
    expect(page.locator(".conn-inputs")).to_contain_text("say a capital")
    lit = page.evaluate("document.querySelectorAll('svg.lg-top .n.lit').length")
    assert lit >= 5
    shoot(page, "04-austin-inputs")

    # Walk back three steps through the panel: say Austin (L5) <- say Austin (L4) <- Texas.
    expected = ["say Austin", "say Austin", "Texas"]
    for label in expected:
        row = input_rows(page).filter(has_text=label).first
        row.click()
        expect(page.locator("#clicked-label")).to_have_text(label)
    crumbs = page.locator(".crumbs li")
    expect(crumbs).to_have_count(4)
    expect(crumbs.last).to_have_text("Texas")
    shoot(page, "05-walk")
    # Backspace goes back one step; the keyboard walks forward again.
    page.keyboard.press("Backspace")
    expect(crumbs).to_have_count(3)
    page.keyboard.press("ArrowDown")
    expect(page.locator(".conn-row.cursor")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(crumbs).to_have_count(4)
    expect(page.locator("#clicked-label")).to_have_text("Texas")

    # Pin two nodes (P on the clicked node, shift-click in the graph), group them, name the group.
    page.keyboard.press("p")
    page.locator("svg.lg-svg [data-id='4_12_10']").click(modifiers=["Shift"])
    items = page.locator(".pinned-list li")
    expect(items).to_have_count(2)
    for item in range(2):
        items.nth(item).locator("input[type=checkbox]").check()
    page.click("#sg-group")
    rename = page.locator("#sg-rename-input")
    expect(rename).to_be_focused()
    rename.fill("Texas → say Austin")
    rename.press("Enter")
    expect(page.locator(".pinned-list li.is-supernode")).to_contain_text("Texas → say Austin")
    expect(page.locator("#sg-replacement")).to_have_text(re.compile(r"\d+(\.\d)?%"))
    expect(page.locator(".sg-svg .sg-item")).to_have_count(1)
    # Raise the pruning threshold a little: part of the view state too.
    page.locator("#prune-slider").fill("0.9")
    page.evaluate("window.__attrgraph.store.flushUrl()")
    shoot(page, "06-supernode")

    # Reload the URL: the same view comes back.
    url = page.url
    assert "supernodes=" in url and "pinnedIds=" in url and "trail=" in url
    page.reload()
    page.wait_for_selector("#explorer[data-interactive='1']")
    assert page.url == url
    expect(page.locator("#clicked-label")).to_have_text("Texas")
    expect(page.locator(".crumbs li")).to_have_count(4)
    expect(page.locator(".pinned-list li.is-supernode")).to_contain_text("Texas → say Austin")
    expect(page.locator("#prune-slider")).to_have_value("0.9")
    expect(page.locator("svg.lg-top .n.clicked")).to_have_count(1)
    shoot(page, "07-reloaded")

    # The feature panel of the clicked feature: label, examples with highlighted tokens, histogram,
    # logit effects and the other position where the same feature is active.
    feature = page.locator("#feature")
    expect(feature.locator("#feature-label")).to_have_text("Texas")
    expect(feature.locator(".example").first).to_be_visible()
    assert feature.locator(".example").count() >= 6
    assert feature.locator(".example .tok.peak").count() >= 6
    expect(feature.locator(".histogram .bar").first).to_be_attached()
    expect(feature.locator(".logits")).to_contain_text("Austin")
    expect(feature.locator(".other-positions")).to_contain_text("state")
    feature.locator(".top-examples").scroll_into_view_if_needed()
    shoot(page, "08-feature")


def test_feature_from_graph_click(page: Any, service: Service) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    open_graph(page, f"/graph/{graph_id}")
    page.locator("svg.lg-svg [data-id='0_17_9']").click()  # "Dallas" at " Dallas"
    expect(page.locator("#feature-label")).to_have_text("Dallas")
    expect(page.locator("#feature .example").first).to_contain_text("Dallas")
    # Walk to the other position of a feature from the panel.
    page.locator("svg.lg-svg [data-id='3_88_10']").click()
    page.locator("#feature .other-positions button").first.click()
    expect(page.locator("#clicked-label")).to_have_text("Texas")
    expect(page).to_have_url(re.compile("clickedId=3_88_7"))


def test_labels_from_dashboards(page: Any, service: Service) -> None:
    """A feature the graph file leaves unlabelled takes its dashboard's label once clicked."""
    graph_id = service.trace(max_feature_nodes=4000)
    document = httpx.get(f"{service.url}/api/graphs/{graph_id}").json()
    unlabelled = next(
        n for n in document["nodes"] if n["feature_type"] == "cross layer transcoder" and not n["clerp"]
    )
    layer, index, _ = (int(x) for x in unlabelled["node_id"].split("_"))
    open_graph(page, f"/graph/{graph_id}?pruningThreshold=1")
    page.locator(f"svg.lg-svg [data-id='{unlabelled['node_id']}']").click()
    expect(page.locator("#clicked-label")).to_have_text(label_for(layer, index))
    expect(page.locator(".crumb.current")).to_have_text(label_for(layer, index))


def test_search_errors_and_threshold(page: Any, service: Service) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    open_graph(page, f"/graph/{graph_id}?hideErrors=1")
    assert page.locator("svg.lg-svg .n-error:visible").count() == 0
    page.locator("#errors-toggle").check()
    expect(page.locator("svg.lg-svg .n-error").first).to_be_visible()
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    page.keyboard.type("capital")
    expect(page.locator(".search-info")).to_contain_text("matches")
    assert page.locator("svg.lg-top .n.match").count() >= 2
    page.keyboard.press("Enter")
    expect(page.locator("#clicked-label")).to_contain_text("capital")
    before = page.evaluate("window.__attrgraph.linkGraph.visibleCount()")
    page.locator("#prune-slider").fill("0.3")
    page.wait_for_function(f"window.__attrgraph.linkGraph.visibleCount() < {before}")
    shoot(page, "09-search-pruned")


def test_export_subgraph(page: Any, service: Service, tmp_path: Any) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    open_graph(page, f"/graph/{graph_id}?pinnedIds=2_88_9,4_12_10,5_277_10&clickedId=4_12_10")
    expect(page.locator(".sg-svg .sg-item")).to_have_count(3)
    with page.expect_download() as svg_download:
        page.click("#sg-export-svg")
    svg_path = tmp_path / "subgraph.svg"
    svg_download.value.save_as(svg_path)
    text = svg_path.read_text()
    assert text.startswith("<svg") and "say Austin" in text and DALLAS_PROMPT in text
    with page.expect_download() as png_download:
        page.click("#sg-export-png")
    png_path = tmp_path / "subgraph.png"
    png_download.value.save_as(png_path)
    data = png_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_subgraph_rename_ungroup_unpin(page: Any, service: Service) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    groups = quote(json.dumps([["Texas group", "2_88_9", "3_88_10"]]))
    open_graph(page, f"/graph/{graph_id}?pinnedIds=2_88_9,3_88_10,4_12_10&supernodes={groups}")
    items = page.locator(".pinned-list li")
    expect(items).to_have_count(2)
    supernode = page.locator(".pinned-list li.is-supernode")
    expect(supernode).to_contain_text("Texas group")
    supernode.locator("input[type=checkbox]").check()
    page.click("#sg-rename")
    page.locator("#sg-rename-input").fill("Texas, two layers")
    page.keyboard.press("Enter")
    expect(supernode).to_contain_text("Texas, two layers")
    expect(page.locator(".sg-svg")).to_contain_text("Texas, two layers")
    expect(page).to_have_url(re.compile("Texas%2C\\+two\\+layers|Texas%2C%20two%20layers"))
    page.click("#sg-ungroup")
    expect(items).to_have_count(3)
    expect(page.locator(".sg-svg .sg-item")).to_have_count(3)
    items.first.locator("input[type=checkbox]").check()
    page.click("#sg-unpin")
    expect(items).to_have_count(2)
    expect(page).not_to_have_url(re.compile("supernodes="))


def test_missing_graph_and_narrow_window(page: Any, service: Service) -> None:
    response = page.goto("/graph/" + "0" * 32)
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_contain_text("No graph")
    page.console_problems.clear()  # the 404 document itself is logged by Chromium; it is the point here
    graph_id = service.trace(max_feature_nodes=4000)
    page.set_viewport_size({"width": 760, "height": 900})
    open_graph(page, f"/graph/{graph_id}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 760, "the page must not scroll sideways on a narrow window"
    shoot(page, "10-narrow")


def test_thinned_large_graph(page: Any, service: Service) -> None:
    """Graphs over the shipping limit arrive thinned; the clicked node's edges come from the API."""
    graph_id = service.trace(max_feature_nodes=4000)
    open_graph(page, f"/graph/{graph_id}?maxLinks=200&clickedId=4_12_10")
    assert page.evaluate("window.__attrgraph.graph.thinned") is True
    expect(page.locator(".toolbar")).to_contain_text("strongest of")
    expect(page.locator(".conn-inputs .conn-row").first).to_contain_text("Texas")
