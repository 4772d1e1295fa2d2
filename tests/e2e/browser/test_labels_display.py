"""How labels read: two different features with the same automatic label show their layer (the
Dallas graph has "say Austin" at L4 and at L5, "Texas" at L2 and L3); a weak automatic label (a bare
list of tokens, as the labeller writes when nothing better fits) looks different from a strong one."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.support.browser import Service, shoot
from tests.support.dallas import DALLAS_PROMPT, TRANSCODERS

WEAK = "capital, Austin, Sacramento"  # on "say a capital" (L3 #409), an input of the output Austin


def shown_node_labels(page: Any) -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        "#linkgraph text.node-label",
        "ts => ts.filter((t) => t.style.display !== 'none').map((t) => t.textContent)",
    )


def hover_label(page: Any, node_id: str) -> str:
    page.locator(f"#linkgraph svg.lg-svg [data-id='{node_id}']").hover(force=True)
    tooltip = page.locator("#linkgraph .tooltip .tt-label")
    expect(tooltip).to_be_visible()
    return str(tooltip.inner_text())


def test_same_label_on_two_features_shows_the_layer(page: Any, service: Service) -> None:
    graph_id = service.trace(DALLAS_PROMPT)
    page.goto(f"/graph/{graph_id}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    labels = shown_node_labels(page)
    assert "say Austin · L4" in labels and "say Austin · L5" in labels, labels
    assert "say Austin" not in labels and "Texas" not in labels, labels
    # The tooltip too; "Texas" is at L2 (on Dallas) and L3 (at the end).
    assert hover_label(page, "4_12_10") == "say Austin · L4"
    assert hover_label(page, "5_277_10") == "say Austin · L5"
    assert hover_label(page, "3_88_10") == "Texas · L3"
    assert hover_label(page, "3_409_10") == "say a capital"  # one feature has it: as it is
    # A user's own label for one of them: it no longer collides, so no layer on the other either.
    page.evaluate("window.__attrgraph.store.set({ clerps: [['4_12_10', 'say Austin (early)']] })")
    assert hover_label(page, "5_277_10") == "say Austin"
    # Pinned and grouped, the group's members say which is which.
    page.evaluate(
        "window.__attrgraph.store.set({ clerps: [], pinnedIds: ['4_12_10', '5_277_10'],"
        " supernodes: [['say Austin', '4_12_10', '5_277_10']] })"
    )
    expect(page.locator(".pinned-list li.is-supernode .members")).to_have_text(
        "say Austin · L4, say Austin · L5"
    )
    shoot(page, "labels-same-label-layers")


def test_weak_labels_look_different(page: Any, service: Service) -> None:
    traced = service.trace(DALLAS_PROMPT)
    with httpx.Client(base_url=service.url, timeout=30) as client:
        document = client.get(f"/api/graphs/{traced}").json()
        for node in document["nodes"]:
            if node["node_id"] == "3_409_10":
                node["clerp"] = WEAK
        document["metadata"]["slug"] = "weak-labels"
        reply = client.post(
            "/api/imports", params={"model": "dallas-demo", "transcoders": TRANSCODERS}, json=document
        )
        assert reply.status_code == 201, reply.text
        graph_id = reply.json()["graph_id"]
    austin = next(n["node_id"] for n in document["nodes"] if n.get("is_target_logit"))
    page.goto(f"/graph/{graph_id}?clickedId={austin}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    page.wait_for_selector("body[data-autolabels='done']")  # no redraw after this
    weak = page.locator(".conn-inputs .conn-row[data-id='3_409_10'] .conn-label")
    strong = page.locator(".conn-inputs .conn-row[data-id='4_12_10'] .conn-label")
    expect(weak).to_have_text(WEAK)
    expect(weak).to_have_class("conn-label weak")
    expect(strong).to_have_class("conn-label")
    weak_style, strong_style = page.evaluate(
        "() => ['3_409_10', '4_12_10'].map((id) => { const s = getComputedStyle(document.querySelector("
        "`.conn-inputs .conn-row[data-id='${id}'] .conn-label`)); return [s.fontStyle, s.color]; })"
    )
    assert weak_style[0] == "italic" and strong_style[0] == "normal", (weak_style, strong_style)
    assert weak_style[1] != strong_style[1], (weak_style, strong_style)
    # In the graph: the tooltip (and the node's label, where it has room) marks it.
    assert hover_label(page, "3_409_10") == WEAK
    expect(page.locator("#linkgraph .tooltip .tt-label")).to_have_class("tt-label weak")
    node_label = page.locator("#linkgraph text.node-label[data-id='3_409_10']")
    if node_label.is_visible():
        expect(node_label).to_have_class("node-label weak")
    # A user's label is never weak, even a list of words.
    page.evaluate(f"window.__attrgraph.store.set({{ clerps: [['3_409_10', '{WEAK}']] }})")
    expect(weak).to_have_class("conn-label")
    # Pinned, the subgraph draws it apart too.
    page.evaluate("window.__attrgraph.store.set({ clerps: [], pinnedIds: ['3_409_10', '4_12_10'] })")
    expect(page.locator(".pinned-list li[data-key='3_409_10'] label")).to_have_class("weak")
    expect(page.locator(".pinned-list li[data-key='4_12_10'] label")).not_to_have_class("weak")
    shoot(page, "labels-weak")
