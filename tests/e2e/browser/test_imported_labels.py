"""A graph imported from circuit-tracer or Neuronpedia JSON whose feature nodes are not named `L_f_p`
(their ids are Cantor numbers, or only their jsNodeId says which feature they are) gets labels that
the page and the API agree on: a label written on the page reads back through the API under the
feature's `layer_index` key, and a fresh page shows it on every node of that feature.

The graph is the Dallas service's own graph with its feature ids rewritten, imported under the
service's transcoder set so the page finds each feature's dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from attrgraph.format.node_ids import cantor_pair
from tests.support.browser import VIEWPORT, Console, Service, shoot
from tests.support.dallas import TRANSCODERS
from tests.support.services import clear_prefix

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def import_service(browser_redis_url: str) -> Iterator[Service]:
    """A service of its own (own key prefix): the labels written here stay out of other tests."""
    svc = Service(browser_redis_url)
    with svc.api, svc.worker:
        yield svc
    clear_prefix(browser_redis_url, svc.settings.key_prefix)


def renamed_features(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The graph with every feature node renamed: even ones to `{Cantor number}_{position}` (no
    jsNodeId), odd ones to an opaque id (only the jsNodeId names the feature); no attrgraph extras.
    Returns it and new id -> feature key."""
    renames: dict[str, str] = {}
    keys: dict[str, str] = {}
    nodes = []
    k = 0
    for node in document["nodes"]:
        if node["feature_type"] == "cross layer transcoder":
            layer, index, pos = (int(x) for x in node["node_id"].split("_"))
            if k % 2 == 0:
                new_id = f"{cantor_pair(layer, index)}_{pos}"
                node = {**node, "node_id": new_id, "feature": cantor_pair(layer, index), "jsNodeId": "-"}
            else:
                new_id = f"feature-{k}"
                node = {**node, "node_id": new_id, "feature": -1, "jsNodeId": f"{layer}_{index}-0"}
            renames[f"{layer}_{index}_{pos}"] = new_id
            keys[new_id] = f"{layer}_{index}"
            k += 1
        nodes.append(node)
    links = [
        {
            **link,
            "source": renames.get(link["source"], link["source"]),
            "target": renames.get(link["target"], link["target"]),
        }
        for link in document["links"]
    ]
    metadata = {key: value for key, value in document["metadata"].items() if key != "attrgraph"}
    return {**document, "metadata": metadata, "nodes": nodes, "links": links}, keys


@pytest.fixture(scope="module")
def imported(import_service: Service) -> tuple[str, dict[str, str]]:
    """(graph id, renamed feature node id -> feature key) of the imported graph."""
    traced = import_service.trace()
    with httpx.Client(base_url=import_service.url, timeout=30) as client:
        document = client.get(f"/api/graphs/{traced}").json()
        graph, keys = renamed_features(document)
        reply = client.post(
            "/api/imports", params={"model": "dallas-demo", "transcoders": TRANSCODERS}, json=graph
        )
        assert reply.status_code == 201, reply.text
    return str(reply.json()["graph_id"]), keys


@pytest.fixture
def pages(browser: Any, import_service: Service) -> Iterator[list[Any]]:
    contexts: list[Any] = []
    consoles: list[Console] = []
    found: list[Any] = []

    def new_page() -> Any:
        context = browser.new_context(viewport=VIEWPORT, base_url=import_service.url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        consoles.append(Console(page))
        return page

    found.extend([new_page(), new_page()])
    yield found
    for context in contexts:
        context.close()
    problems = [p for c in consoles for p in c.problems]
    assert not problems, "the pages reported errors:\n" + "\n".join(problems)


def open_graph(page: Any, path: str) -> None:
    page.goto(path)
    page.wait_for_selector("#explorer[data-interactive='1']")


def test_label_written_on_the_page_reads_back_through_the_api(
    pages: list[Any], imported: tuple[str, dict[str, str]], import_service: Service
) -> None:
    graph_id, keys = imported
    writer, reader = pages
    open_graph(writer, f"/graph/{graph_id}")
    # The page reads the renamed nodes as the features they are.
    read = writer.evaluate(
        "(ids) => ids.map((id) => { const n = window.__attrgraph.graph.byId.get(id);"
        " return n.featureLayer + '_' + n.featureIndex })",
        list(keys),
    )
    assert dict(zip(keys, read, strict=True)) == keys

    cantor_node = next(i for i in keys if not i.startswith("feature-"))
    js_node = next(i for i in keys if i.startswith("feature-"))
    for node_id, text in ((cantor_node, "Named by its Cantor number"), (js_node, "Named by its jsNodeId")):
        writer.evaluate("(id) => window.__attrgraph.store.set({ clickedId: id, trail: [id] })", node_id)
        expect(writer.locator("#feature .feature-label")).to_be_visible()
        writer.locator("#feature .label-row button").click()
        field = writer.locator("#feature .rename-input")
        field.fill(text)
        field.press("Enter")
        expect(writer.locator("#feature-label")).to_have_text(text)

    # The API holds both under the features' layer_index keys, for this graph and for the set.
    with httpx.Client(base_url=import_service.url, timeout=10) as client:
        labels = client.get(f"/api/graphs/{graph_id}/labels").json()["labels"]
        assert labels[keys[cantor_node]]["value"] == "Named by its Cantor number"
        assert labels[keys[js_node]]["value"] == "Named by its jsNodeId"
        layer, index = keys[js_node].split("_")
        item = client.get(f"/api/labels/{TRANSCODERS}/{layer}/{index}").json()
        assert item["value"] == "Named by its jsNodeId"
        exported = client.get(f"/api/graphs/{graph_id}/export").json()
    clerps = dict(exported["qParams"]["clerps"])
    assert clerps[cantor_node] == "Named by its Cantor number" and clerps[js_node] == "Named by its jsNodeId"

    # A fresh page loads the labels from the API onto every node of those features.
    open_graph(reader, f"/graph/{graph_id}?clickedId={js_node}")
    for node_id, text in ((cantor_node, "Named by its Cantor number"), (js_node, "Named by its jsNodeId")):
        same_feature = [i for i, key in keys.items() if key == keys[node_id]]
        reader.wait_for_function(
            "([ids, t]) => ids.every((id) => window.__attrgraph.graph.byId.get(id).label === t)",
            arg=[same_feature, text],
        )
    expect(reader.locator("#feature-label")).to_have_text("Named by its jsNodeId")
    shoot(reader, "imported-graph-labels")
