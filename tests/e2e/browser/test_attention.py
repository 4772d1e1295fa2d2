"""Attention from the page (scripted Dallas backend): the heads of a Dallas -> " is" edge, the top
head's QK pairs with one clicked into the graph, and ablating that head from the page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.browser import VIEWPORT, Console, Service, shoot
from tests.support.dallas import DALLAS_PROMPT
from tests.support.services import sse_events

TEXAS_AT_IS = "3_88_10"  # "Texas" at " is" (layer 3, feature 88)
DALLAS_CITIES = "1_233_9"  # "Dallas/Houston (Texas cities)" at " Dallas"


def test_heads_qk_and_head_ablation(page: Any, service: Service) -> None:
    graph_id = service.trace(max_n_logits=8)  # its own graph id: independent of test order
    page.goto(f"/graph/{graph_id}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    page.locator(f"svg.lg-svg [data-id='{TEXAS_AT_IS}']").click()
    expect(page.locator("#clicked-label")).to_have_text("Texas")

    # The edge from " Dallas" into " is": which heads carried it.
    inputs = page.locator("#connections .conn-inputs")
    row = inputs.locator("li", has=page.locator(f".conn-row[data-id='{DALLAS_CITIES}']"))
    row.locator(".conn-heads").click()
    panel = page.locator(".attention-panel")
    expect(panel).to_have_attribute("data-state", "edge", timeout=15_000)
    heads = panel.locator(".att-head")
    expect(heads).to_have_count(3)
    top = heads.first
    expect(top).to_have_attribute("data-layer", "0")
    expect(top).to_have_attribute("data-head", "3")
    expect(top.locator(".att-share")).to_have_text("78.0%")
    expect(top.locator(".att-pattern")).to_contain_text("attn 0.730")
    shoot(page, "attention-heads")

    # The top head's QK pairs; one entry clicked walks the graph to that node.
    top.locator(".att-qk").click()
    expect(panel).to_have_attribute("data-state", "head", timeout=15_000)
    expect(panel.locator(".att-head-qk")).to_have_attribute("data-head", "3")
    entries = panel.locator(".att-qk-entry")
    assert entries.count() >= 3
    expect(panel.locator(".att-node.outside").first).to_contain_text("outside")
    first = panel.locator(".att-qk-entry .att-node.link-button").first
    target = str(first.get_attribute("data-id"))
    first.click()
    page.wait_for_function(f"window.__attrgraph.store.get().clickedId === '{target}'")
    shoot(page, "attention-qk")

    # Ablate the head from the page: the interventions column opens and " Austin" falls.
    panel.locator(".att-head-qk .att-ablate").click()
    ivs = page.locator("#interventions")
    expect(ivs.locator("li.iv-head")).to_have_attribute("data-head", "3")
    expect(ivs).to_have_attribute("data-state", "done", timeout=15_000)
    austin = ivs.locator(".iv-bar-row[data-token=' Austin'] .iv-probs").inner_text()
    before, after = (float(part.strip().rstrip("%")) for part in str(austin).split("→"))
    assert after < before / 2, (before, after)
    shoot(page, "attention-ablate")


@pytest.mark.slow
def test_real_model_head_ablation_matches_the_card(browser: Any, demo_url: str) -> None:
    """The shipped demo model through the worker: the strongest Dallas -> " is" edge is carried by
    head 0.3 (docs/demo-model.md, "Why ' is' attends to ' Dallas'"), and ablating it from the page
    takes p(" Austin") from 100% to under 1% (the card: 0.9999 -> 0.0036)."""
    with httpx.Client(base_url=demo_url, timeout=120) as client:
        body = client.post("/api/graphs", json={"prompt": DALLAS_PROMPT}).json()
        if body["status"] != "ready":
            assert sse_events(client, body["events_url"])[-1][0] == "done"
    context = browser.new_context(viewport=VIEWPORT, base_url=demo_url, bypass_csp=True)
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        console = Console(page)
        page.goto(f"/graph/{body['graph_id']}")
        page.wait_for_selector("#explorer[data-interactive='1']")
        edge = page.evaluate(STRONGEST_CROSSING_EDGE)
        page.evaluate(f"window.__attrgraph.store.set({{clickedId: '{edge['target']}'}})")
        row = page.locator(
            "#connections .conn-inputs li", has=page.locator(f".conn-row[data-id='{edge['source']}']")
        )
        row.locator(".conn-heads").click()
        panel = page.locator(".attention-panel")
        expect(panel).to_have_attribute("data-state", "edge")
        top = panel.locator(".att-head").first
        expect(top).to_have_attribute("data-layer", "0")
        expect(top).to_have_attribute("data-head", "3")
        top.locator(".att-qk").click()
        expect(panel).to_have_attribute("data-state", "head")
        expect(panel.locator(".att-qk-entry").first).to_contain_text("Emb")
        panel.locator(".att-head-qk .att-ablate").click()
        ivs = page.locator("#interventions")
        expect(ivs).to_have_attribute("data-state", "done")
        probs = str(ivs.locator(".iv-bar-row[data-token=' Austin'] .iv-probs").inner_text())
        before, after = (float(part.strip().rstrip("%")) for part in probs.split("→"))
        assert before > 99.9 and after < 1.0, probs
        shoot(page, "attention-demo-ablate")
        assert not console.problems, console.problems
    finally:
        context.close()


# The strongest link in the page's graph from the " Dallas" position (9) into a feature at " is" (10).
STRONGEST_CROSSING_EDGE = """() => {
  const g = window.__attrgraph.graph;
  let best = null;
  for (let e = 0; e < g.links.n; e++) {
    const s = g.nodes[g.links.src[e]], t = g.nodes[g.links.tgt[e]];
    const w = Math.abs(g.links.weight[e]);
    const crossing = s.ctx === 9 && t.ctx === 10 && t.kind === "feature";
    if (crossing && (!best || w > best.w)) best = { source: s.id, target: t.id, w };
  }
  return best;
}"""
