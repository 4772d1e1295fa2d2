"""Open a graph JSON from the home page, by the file picker or by dropping the file on the page: the
file is stored through POST /api/imports and the page goes to the new graph. The graph here has no
feature labels (as circuit-tracer writes them): its features are labelled as soon as it opens, from
their dashboards, without a click. Opening the same file again leads to the same graph, listed once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.support.browser import Service, shoot
from tests.support.dallas import DALLAS_PROMPT

PLACEHOLDER = re.compile(r"^L\d+ #\d+$")


def unlabelled_graph(service: Service, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The Dallas graph as exported, every feature's label removed, in a file."""
    graph_id = service.trace(DALLAS_PROMPT)
    with httpx.Client(base_url=service.url, timeout=30) as client:
        document = client.get(f"/api/graphs/{graph_id}").json()
    for node in document["nodes"]:
        if node["feature_type"] == "cross layer transcoder":
            node["clerp"] = ""
    document["metadata"]["slug"] = "opened-from-a-file"  # not the traced graph's content
    path = tmp_path / "dallas-unlabelled.json"
    path.write_text(json.dumps(document))
    return path, document


def opened_graph_id(page: Any) -> str:
    page.wait_for_url(re.compile(r"/graph/[0-9a-f]{32}"))
    page.wait_for_selector("#explorer[data-interactive='1']")
    return str(page.url.rsplit("/", 1)[-1].split("?")[0])


def test_open_a_graph_file_by_picker_and_by_drop(page: Any, service: Service, tmp_path: Path) -> None:
    path, document = unlabelled_graph(service, tmp_path)
    page.goto("/")
    page.set_input_files("#open-file", str(path))
    graph_id = opened_graph_id(page)
    expect(page.locator(".prompt-title")).to_have_text(DALLAS_PROMPT)

    # Labelled as soon as it opens: every feature has its dashboard's label, nobody clicked.
    page.wait_for_selector("body[data-autolabels='done']")
    page.wait_for_function(
        "() => window.__attrgraph.graph.nodes.filter((n) => n.kind === 'feature')"
        ".every((n) => !/^L\\d+ #\\d+$/.test(n.label))"
    )
    shown = page.eval_on_selector_all(
        "#linkgraph text.node-label",
        "ts => ts.filter((t) => t.style.display !== 'none').map((t) => t.textContent)",
    )
    assert shown and not any(PLACEHOLDER.match(t) for t in shown), shown
    assert any(t.startswith("say Austin") for t in shown), shown
    shoot(page, "opened-graph-file")

    # Dropping the same file on the home page opens the same graph.
    page.goto("/")
    text = path.read_text()
    transfer = page.evaluate_handle(
        """(text) => { const dt = new DataTransfer();
             dt.items.add(new File([text], 'dropped.json', { type: 'application/json' })); return dt; }""",
        text,
    )
    page.dispatch_event("body", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("body.dropping")).to_have_count(1)
    shoot(page, "open-graph-dragging")
    page.dispatch_event("body", "drop", {"dataTransfer": transfer})
    assert opened_graph_id(page) == graph_id
    # Listed once on the home page.
    page.goto("/")
    expect(page.locator(f"#recent-list li[data-graph-id='{graph_id}']")).to_have_count(1)
    assert document["metadata"]["prompt"] == DALLAS_PROMPT


def test_a_file_that_is_not_a_graph_is_refused_on_the_page(page: Any, tmp_path: Path) -> None:
    page.goto("/")
    bad = tmp_path / "notes.json"
    bad.write_text("this is not JSON")
    page.set_input_files("#open-file", str(bad))
    expect(page.locator("#open-status")).to_have_text(
        "Could not open notes.json: notes.json is not a JSON file"
    )
    other = tmp_path / "list.json"
    other.write_text("[1, 2, 3]")
    page.set_input_files("#open-file", str(other))
    expect(page.locator("#open-status")).to_contain_text('not a graph (no "nodes" list)')
    assert page.url.endswith("/")
