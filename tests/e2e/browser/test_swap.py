"""Swap from the page: the panel lists exactly which features it turns down (the pinned ones) and
up (the donor graph's features matching them by layer and position, as chosen), with labels and
layers; the intervention request the page sends holds those and nothing else, one intervention per
feature and place (a pinned feature the donor has at the same place is set, not also ablated); the
result shows where it can be seen without scrolling."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import expect

from tests.support.browser import Service, shoot
from tests.support.dallas import DALLAS_PROMPT

DONOR_PROMPT = "Fact: the capital of the state containing Houston is"
PINNED = ["3_88_10", "4_12_10"]  # "Texas" (L3) and "say Austin" (L4) at the last position


def test_swap_lists_and_sends_exactly_its_changes(page: Any, service: Service) -> None:
    graph_id = service.trace(DALLAS_PROMPT, max_n_logits=9)
    donor_id = service.trace(DONOR_PROMPT, max_n_logits=9)
    assert donor_id != graph_id
    requests: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            requests.append(json.loads(r.post_data or "{}"))
            if r.url.endswith("/api/interventions") and r.method == "POST"
            else None
        ),
    )
    page.goto(f"/graph/{graph_id}?pinnedIds={','.join(PINNED)}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    page.click("#iv-toggle")
    panel = page.locator("#interventions")
    panel.locator(".iv-swap summary").click()
    # (Other tests' graphs mention Houston too: search for this one.)
    panel.locator(".iv-donor-search").fill("containing Houston")
    panel.locator(".iv-donor-search").press("Enter")
    panel.locator(".iv-donor", has_text="containing Houston").click()

    # Turned down: the two pinned features, with labels and layers.
    down = panel.locator(".iv-down li")
    expect(down).to_have_count(2)
    expect(down.nth(0)).to_contain_text("Texas")
    expect(down.nth(0)).to_contain_text("L3")
    expect(down.nth(1)).to_contain_text("say Austin")
    # Turned up by default: the donor's features at a pinned one's layer and position only.
    donor = page.evaluate(
        """async (id) => (await (await fetch(`/api/graphs/${id}`)).json()).nodes
             .filter((n) => n.feature_type === 'cross layer transcoder')
             .map((n) => ({id: n.node_id, layer: +n.layer, pos: n.ctx_idx, act: n.activation}))""",
        donor_id,
    )
    last = max(n["pos"] for n in donor)
    expected_up = {
        f"{n['layer']}/{n['id'].split('_')[1]}/{n['pos']}"
        for n in donor
        if n["pos"] == last and n["layer"] in (3, 4)
    }
    offered = panel.locator(".iv-up li")
    assert offered.count() == sum(1 for n in donor if n["pos"] == last)  # every feature there is offered
    chosen = set(
        panel.locator(".iv-up li[data-chosen='1']").evaluate_all("ls => ls.map((l) => l.dataset.key)")
    )
    assert chosen == expected_up, (chosen, expected_up)
    # The donor has both pinned features at the same place: they are offered and chosen.
    assert {"3/88/10", "4/12/10"} <= chosen
    # The user takes one out (not one of those two).
    dropped = sorted(chosen - {"3/88/10", "4/12/10"})[0]
    panel.locator(f".iv-up li[data-key='{dropped}'] input").uncheck()
    chosen.discard(dropped)
    expect(panel.locator(".iv-up li[data-chosen='1']")).to_have_count(len(chosen))
    # A pinned feature the donor has at the same place is set to the donor's value, not ablated
    # too: the panel says so. Unchecking the donor's copy turns it back into an ablation.
    expect(panel.locator(".iv-down li[data-replaced='1']")).to_have_count(2)
    expect(panel.locator(".iv-down li[data-key='3/88/10'] .iv-replaced")).to_be_visible()
    panel.locator(".iv-up li[data-key='4/12/10'] input").uncheck()
    chosen.discard("4/12/10")
    expect(panel.locator(".iv-down li[data-replaced='1']")).to_have_count(1)
    listed_down = set(
        panel.locator(".iv-down li:not([data-replaced='1'])").evaluate_all(
            "ls => ls.map((l) => l.dataset.key)"
        )
    )
    assert listed_down == {"4/12/10"}
    shoot(page, "swap-plan")

    panel.locator(".iv-do-swap").click()
    expect(panel).to_have_attribute("data-state", "done", timeout=15_000)
    assert requests, "no intervention request"
    sent = requests[-1]["interventions"]
    ablated = {f"{i['layer']}/{i['feature']}/{i['position']}" for i in sent if i["mode"] == "ablate"}
    raised = {f"{i['layer']}/{i['feature']}/{i['position']}" for i in sent if i["mode"] == "set"}
    assert ablated == listed_down == {"4/12/10"}
    assert raised == chosen and "3/88/10" in raised
    # One intervention per feature and place: "3/88/10" is set only, never ablated first.
    places = [f"{i['layer']}/{i['feature']}/{i['position']}" for i in sent]
    assert len(places) == len(set(places)), places
    assert len(sent) == len(ablated) + len(raised)
    # The results show the change in log-probability (or logit) beside the probabilities.
    expect(panel.locator(".iv-bar-row .iv-dlogit").first).to_have_text(re.compile(r"^[+−]\d"))
    # The newest result is in sight without scrolling: inside the panel's visible box.
    results = panel.locator(".iv-results")
    expect(results).to_be_in_viewport()
    shown = results.bounding_box()
    frame = panel.bounding_box()
    assert (
        frame["y"] - 1 <= shown["y"]
        and shown["y"] + min(shown["height"], 120) <= frame["y"] + frame["height"] + 1
    ), (shown, frame)
    shoot(page, "swap-result")
