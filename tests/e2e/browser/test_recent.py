"""The home page's recent graphs: each entry shows the graph's target, its settings and when it was
made, and a graph asked for twice is listed once."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.support.browser import Service, shoot

PROMPT = "Fact: the capital of the state containing Waco is"


def trace(service: Service, body: dict[str, Any]) -> str:
    """Submit a trace request as the page does and wait for its graph."""
    with httpx.Client(base_url=service.url, timeout=30) as client:
        reply = client.post("/api/graphs", json=body)
        reply.raise_for_status()
        accepted = reply.json()
        deadline = time.monotonic() + 30
        while accepted.get("status") != "ready" and time.monotonic() < deadline:
            if client.get(f"/api/jobs/{accepted['job_id']}").json()["state"] == "done":
                break
            time.sleep(0.05)
        return str(accepted["graph_id"])


def test_recent_graphs_show_target_settings_and_time_once_each(page: Any, service: Service) -> None:
    small = trace(service, {"prompt": PROMPT, "settings": {"max_feature_nodes": 50, "node_threshold": 0.7}})
    large = trace(service, {"prompt": PROMPT, "settings": {"max_feature_nodes": 60}})
    texas = trace(
        service, {"prompt": PROMPT, "target": {"tokens": [" Texas"]}, "settings": {"max_feature_nodes": 50}}
    )
    again = trace(service, {"prompt": PROMPT, "settings": {"max_feature_nodes": 50, "node_threshold": 0.7}})
    assert again == small and len({small, large, texas}) == 3

    page.goto("/")
    entries = page.locator("#recent-list li")
    expect(entries.first).to_be_visible()
    # One entry per graph: the graph asked for twice is listed once, and no id twice.
    ids = entries.evaluate_all("ls => ls.map((l) => l.dataset.graphId)")
    assert len(ids) == len(set(ids)), ids
    assert ids.count(small) == 1

    first = page.locator(f"#recent-list li[data-graph-id='{small}']")
    expect(first.locator(".recent-link")).to_have_text(PROMPT)
    # The target: the graph's own (the top output) where none was asked for, else the one asked for.
    expect(first.locator(".recent-target")).to_have_text("explains “·Austin”")
    expect(page.locator(f"#recent-list li[data-graph-id='{texas}'] .recent-target")).to_have_text(
        "explains “·Texas”"
    )
    # The settings it was traced with tell the two graphs of one prompt apart.
    expect(first.locator(".recent-settings")).to_contain_text("≤ 50 features")
    expect(first.locator(".recent-settings")).to_contain_text("node 0.7")
    second = page.locator(f"#recent-list li[data-graph-id='{large}'] .recent-settings")
    expect(second).to_contain_text("≤ 60 features")
    expect(second).to_contain_text("node 0.8")
    # When: relative, with the exact time in the element.
    when = first.locator("time.recent-time")
    expect(when).to_have_text("just now")
    stamp = when.get_attribute("datetime")
    made = page.evaluate("(s) => new Date(s).getTime() / 1000", stamp)
    assert abs(made - time.time()) < 120, stamp
    shoot(page, "recent-graphs")
