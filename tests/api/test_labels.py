"""Feature labels and notes: create, edit, history, revert, conflicts, search, live events, export."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import jsonschema
import orjson

from attrgraph.settings import Settings
from tests.support.collab import SCHEMA, TRANSCODERS, a_feature, example_graph, store_example
from tests.support.services import http

USER = {"X-Attrgraph-User": "ada"}


def label_url(layer: int, index: int, suffix: str = "") -> str:
    return f"/api/labels/{TRANSCODERS}/{layer}/{index}{suffix}"


def test_create_edit_history_revert(api: str, settings: Settings) -> None:
    store_example(settings)
    layer, index, _ = a_feature()
    url = label_url(layer, index)
    with http(api) as client:
        empty = client.get(url).json()
        assert empty["version"] == 0 and empty["value"] == ""
        created = client.put(url, json={"value": "Texas", "version": 0}, headers=USER)
        assert created.status_code == 200, created.text
        assert created.json()["version"] == 1 and created.json()["author"] == "ada"
        assert created.headers["etag"] == '"1"'
        edited = client.put(
            url, json={"value": "Texas (state)"}, headers={"If-Match": '"1"', "X-Attrgraph-User": "bob"}
        )
        assert edited.status_code == 200 and edited.json()["version"] == 2
        current = client.get(url).json()
        assert current["value"] == "Texas (state)" and current["author"] == "bob" and current["time"] > 0

        history = client.get(url + "/history").json()["versions"]
        assert [(v["version"], v["value"], v["author"]) for v in history] == [
            (1, "Texas", "ada"),
            (2, "Texas (state)", "bob"),
        ]
        reverted = client.post(url + "/revert", json={"to_version": 1, "version": 2}, headers=USER)
        assert reverted.status_code == 200, reverted.text
        assert reverted.json()["value"] == "Texas" and reverted.json()["version"] == 3
        assert reverted.json()["action"] == "revert:1"
        assert len(client.get(url + "/history").json()["versions"]) == 3  # nothing lost
        assert client.post(url + "/revert", json={"to_version": 9}, headers=USER).status_code == 404


def test_conflicting_edit_gets_409_with_current_value(api: str, settings: Settings) -> None:
    layer, index, _ = a_feature()
    url = label_url(layer, index)
    with http(api) as client:
        assert client.put(url, json={"value": "first", "version": 0}, headers=USER).status_code == 200
        # Both read version 1; the second writer loses and gets the winner's value.
        assert client.put(url, json={"value": "alice's", "version": 1}, headers=USER).status_code == 200
        stale = client.put(url, json={"value": "bob's", "version": 1}, headers=USER)
        assert stale.status_code == 409
        assert stale.json()["current"]["value"] == "alice's" and stale.json()["current"]["version"] == 2
        # No version at all on an existing item is a conflict too (never a blind overwrite).
        assert client.put(url, json={"value": "blind"}, headers=USER).status_code == 409
        assert client.get(url).json()["value"] == "alice's"


def test_concurrent_writers_exactly_one_wins(api: str, settings: Settings) -> None:
    layer, index, _ = a_feature()
    url = api + label_url(layer, index)
    results: list[int] = []

    def put(n: int) -> None:
        results.append(httpx.put(url, json={"value": f"v{n}", "version": 0}, headers=USER).status_code)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * 7


def test_label_shared_across_graphs_search_and_usage(api: str, settings: Settings) -> None:
    first = store_example(settings)
    second = store_example(settings, graph_id="b" * 32)
    layer, index, _ = a_feature()
    with http(api) as client:
        client.put(label_url(layer, index), json={"value": "Capital cities", "version": 0}, headers=USER)
        for gid in (first, second):
            labels = client.get(f"/api/graphs/{gid}/labels").json()["labels"]
            assert labels[f"{layer}_{index}"]["value"] == "Capital cities"
        found = client.get(f"/api/labels/{TRANSCODERS}", params={"q": "capital"}).json()["results"]
        assert found == [
            {"feature": f"{layer}_{index}", "layer": layer, "index": index, "label": "Capital cities"}
        ]
        assert client.get(f"/api/labels/{TRANSCODERS}", params={"q": "nope"}).json()["results"] == []
        using = client.get(label_url(layer, index, "/graphs")).json()["graphs"]
        assert sorted(g["graph_id"] for g in using) == sorted([first, second])
        assert client.get(label_url(99, 99, "/graphs")).json()["graphs"] == []


def test_notes_on_graph_node_and_supernode(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    _, _, node_id = a_feature()
    with http(api) as client:
        for target in ("graph", f"node:{node_id}", "supernode:Texas things"):
            put = client.put(
                f"/api/graphs/{gid}/note",
                params={"target": target},
                json={"value": f"about {target}"},
                headers=USER,
            )
            assert put.status_code == 200, put.text
        notes = client.get(f"/api/graphs/{gid}/notes").json()["notes"]
        assert (
            notes["graph"] == "about graph"
            and notes["supernode:Texas things"] == "about supernode:Texas things"
        )
        hist = client.get(f"/api/graphs/{gid}/note/history", params={"target": "graph"}).json()["versions"]
        assert hist[0]["author"] == "ada"
        assert client.get(f"/api/graphs/{gid}/summary").json()["pinned"] is True  # notes pin the graph
        bad = client.put(f"/api/graphs/{gid}/note", params={"target": "nonsense"}, json={"value": "x"})
        assert bad.status_code == 422
        missing = client.put(f"/api/graphs/{'d' * 32}/note", params={"target": "graph"}, json={"value": "x"})
        assert missing.status_code == 404


def test_length_limits_and_inert_storage(api: str, settings: Settings) -> None:
    layer, index, _ = a_feature()
    url = label_url(layer, index)
    payload = '<img src=x onerror="window.__xss=1">'
    with http(api) as client:
        too_long = client.put(
            url, json={"value": "x" * (settings.max_label_chars + 1), "version": 0}, headers=USER
        )
        assert too_long.status_code == 422
        assert client.put(url, json={"value": payload, "version": 0}, headers=USER).status_code == 200
        assert client.get(url).json()["value"] == payload  # stored verbatim; the page renders it as text
        long_name = client.get("/api/me", headers={"X-Attrgraph-User": "n" * 500}).json()["name"]
        assert len(long_name) == 64


def test_live_events_reach_a_subscriber(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    layer, index, _ = a_feature()
    received: list[tuple[str, dict[str, Any]]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{api}/api/graphs/{gid}/live", timeout=10) as response:
            name = "message"
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    received.append((name, orjson.loads(line[6:])))
                    if name == "ready":
                        ready.set()
                    if name == "note":
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(5)
    with http(api) as client:
        start = time.monotonic()
        client.put(label_url(layer, index), json={"value": "live!", "version": 0}, headers=USER)
        client.put(f"/api/graphs/{gid}/note", params={"target": "graph"}, json={"value": "hi"}, headers=USER)
    thread.join(5)
    assert time.monotonic() - start < 2
    kinds = [(n, d.get("value")) for n, d in received]
    assert ("label", "live!") in kinds and ("note", "hi") in kinds


def test_export_validates_and_reimports_with_labels(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    layer, index, node_id = a_feature()
    schema = json.loads(SCHEMA.read_text())
    with http(api) as client:
        client.put(label_url(layer, index), json={"value": "Say a capital", "version": 0}, headers=USER)
        exported = client.get(f"/api/graphs/{gid}/export", params={"labels": 1})
        assert exported.status_code == 200
        graph = exported.json()
        jsonschema.validate(graph, schema)
        node = next(n for n in graph["nodes"] if n["node_id"] == node_id)
        assert node["clerp"] == "Say a capital"
        assert [node_id, "Say a capital"] in graph["qParams"]["clerps"]
        plain = client.get(f"/api/graphs/{gid}/export", params={"labels": 0}).json()
        assert plain["nodes"] == example_graph()["nodes"]

        # Import into another transcoder set: the labels travel with the graph.
        imported = client.post(
            "/api/imports",
            params={"model": "fake", "transcoders": "other-set"},
            content=exported.content,
            headers={**USER, "content-type": "application/json"},
        )
        assert imported.status_code == 201, imported.text
        body = imported.json()
        assert body["labels_written"] >= 1
        labels = client.get(f"/api/graphs/{body['graph_id']}/labels").json()
        assert labels["transcoders"] == "other-set"
        assert labels["labels"][f"{layer}_{index}"]["value"] == "Say a capital"
        again = client.get(f"/api/graphs/{body['graph_id']}/export").json()
        jsonschema.validate(again, schema)
        assert next(n for n in again["nodes"] if n["node_id"] == node_id)["clerp"] == "Say a capital"


def test_imports_take_whole_graphs_other_routes_stay_small(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    with http(api) as client:
        document = client.get(f"/api/graphs/{gid}/export", params={"labels": 1}).json()
        # Real graphs run to megabytes: far past the 64 KB bound every other route keeps.
        document["metadata"]["info"] = {"description": "x" * (4 * settings.max_request_bytes)}
        body = json.dumps(document).encode()
        imported = client.post(
            "/api/imports",
            params={"model": "fake", "transcoders": "big-set"},
            content=body,
            headers={**USER, "content-type": "application/json"},
        )
        assert imported.status_code == 201, imported.text
        too_big = client.post(
            "/api/graphs", content=body, headers={**USER, "content-type": "application/json"}
        )
        assert too_big.status_code == 413 and str(settings.max_request_bytes) in too_big.text


def test_imported_graph_with_cantor_and_js_ids_keys_labels_by_feature(api: str, settings: Settings) -> None:
    """Feature nodes named by a Cantor number or only by their jsNodeId: the clerps become labels
    under `layer_index`, the graph's label list finds them, and the export writes them back."""
    graph = example_graph()
    renames = {"20_15589_5": "121843834_5", "14_2268_4": "feature-b"}
    for node in graph["nodes"]:
        if node["node_id"] == "20_15589_5":
            node["jsNodeId"] = "-"  # only the Cantor-paired `feature` says which feature it is
        node["node_id"] = renames.get(node["node_id"], node["node_id"])
    for link in graph["links"]:
        link["source"] = renames.get(link["source"], link["source"])
        link["target"] = renames.get(link["target"], link["target"])
    graph["qParams"]["clerps"] = [["121843834_5", "say Austin"], ["feature-b", "Texas"]]
    with http(api) as client:
        first = client.post("/api/imports", params={"transcoders": "renamed-set"}, json=graph, headers=USER)
        assert first.status_code == 201, first.text
        assert first.json()["labels_written"] == 2
        gid = first.json()["graph_id"]
        labels = client.get(f"/api/graphs/{gid}/labels").json()["labels"]
        assert {k: v["value"] for k, v in labels.items()} == {"20_15589": "say Austin", "14_2268": "Texas"}
        assert client.get("/api/labels/renamed-set/14/2268").json()["value"] == "Texas"
        assert client.get("/api/labels/renamed-set/20/15589/graphs").json()["graphs"][0]["graph_id"] == gid
        exported = client.get(f"/api/graphs/{gid}/export").json()
        clerps = dict(exported["qParams"]["clerps"])
        assert clerps == {"121843834_5": "say Austin", "feature-b": "Texas"}
        # The same graph again: stored once, nothing new to write.
        again = client.post("/api/imports", params={"transcoders": "renamed-set"}, json=graph, headers=USER)
        assert again.json()["graph_id"] == gid and again.json()["labels_written"] == 0


def test_hostile_values_and_versions_are_4xx(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    layer, index, _ = a_feature()
    raw = {**USER, "content-type": "application/json"}
    with http(api) as client:
        surrogate = b'{"value": "x\\ud800y", "version": 0}'
        assert client.put(label_url(layer, index), content=surrogate, headers=raw).status_code == 422
        note = client.put(
            f"/api/graphs/{gid}/note", params={"target": "graph"}, content=surrogate, headers=raw
        )
        assert note.status_code == 422
        assert client.get(label_url(layer, index)).json()["version"] == 0
        client.put(label_url(layer, index), json={"value": "one", "version": 0}, headers=USER)
        for to_version in (2**64, 2**63, 2**53 + 1):
            revert = client.post(
                label_url(layer, index) + "/revert", json={"to_version": to_version}, headers=USER
            )
            assert revert.status_code == 422, revert.text
        missing = client.post(label_url(layer, index) + "/revert", json={"to_version": 2**53}, headers=USER)
        assert missing.status_code == 404
        huge_etag = client.put(
            label_url(layer, index), json={"value": "two"}, headers={**USER, "If-Match": '"' + "9" * 30 + '"'}
        )
        assert huge_etag.status_code == 400
