"""POST /api/imports under hostile input: only application/json from the server's own origin,
validated field by field (422 naming the field, nothing stored), labels written through the
versioned, rate-limited path (conflicts reported, not overwritten)."""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx
import pytest
import redis

from attrgraph.protocol.keys import RATE_WINDOW_S
from attrgraph.protocol.records import text
from attrgraph.settings import Settings
from tests.support.collab import example_graph
from tests.support.services import ApiServer, clear_prefix, http, make_settings

USER = {"X-Attrgraph-User": "ada"}
SET = "import-set"


def graph_with_features(n: int, label: str = "imported") -> dict[str, Any]:
    """The example graph plus `n` feature nodes (layer 1, index i), each labelled by a clerp."""
    graph = example_graph()
    template = graph["nodes"][0]
    extra = [{**template, "node_id": f"1_{i}_0", "jsNodeId": f"1_{i}-0", "feature": None} for i in range(n)]
    graph["nodes"] = graph["nodes"] + extra
    graph["qParams"]["clerps"] = [[f"1_{i}_0", f"{label} {i}"] for i in range(n)]
    return graph


def stored_graphs(settings: Settings) -> list[bytes]:
    client = redis.Redis.from_url(settings.redis_url or "")
    try:
        return list(client.scan_iter(match=f"{settings.key_prefix}graph:*:meta"))
    finally:
        client.close()


def post(client: httpx.Client, graph: Any, **headers: str) -> httpx.Response:
    return client.post("/api/imports", params={"transcoders": SET}, json=graph, headers={**USER, **headers})


def test_text_plain_and_foreign_origins_are_refused(api: str, settings: Settings) -> None:
    graph = graph_with_features(2)
    body = httpx.Request("POST", "/", json=graph).content
    with http(api) as client:
        form = client.post(
            "/api/imports",
            params={"transcoders": SET},
            content=body,
            headers={**USER, "content-type": "text/plain"},
        )
        assert form.status_code == 415, form.text
        bare = client.post("/api/imports", params={"transcoders": SET}, content=body, headers=USER)
        assert bare.status_code == 415
        foreign = post(client, graph, origin="https://evil.example")
        assert foreign.status_code == 403 and "cross-origin" in foreign.text
        rebound = post(client, graph, host="evil.example:8000", origin="http://evil.example:8000")
        assert rebound.status_code == 403 and "ATTRGRAPH_ALLOWED_HOSTS" in rebound.text
        assert stored_graphs(settings) == []
        assert client.get(f"/api/labels/{SET}/1/0").json()["version"] == 0
        own = post(client, graph, origin=api)  # the page's own origin
        assert own.status_code == 201, own.text
        assert own.json()["labels_written"] == 2


def test_a_label_someone_else_wrote_is_reported_not_overwritten(api: str, settings: Settings) -> None:
    with http(api) as client:
        mine = client.put(
            f"/api/labels/{SET}/1/0",
            json={"value": "hers", "version": 0},
            headers={"X-Attrgraph-User": "bea"},
        )
        assert mine.status_code == 200
        imported = post(client, graph_with_features(3))
        assert imported.status_code == 201, imported.text
        body = imported.json()
        assert body["labels_written"] == 2
        [conflict] = body["label_conflicts"]
        assert conflict["key"] == "1_0" and conflict["imported"] == "imported 0"
        assert conflict["current"]["value"] == "hers" and conflict["current"]["author"] == "bea"
        label = client.get(f"/api/labels/{SET}/1/0").json()
        assert (label["value"], label["author"], label["version"]) == ("hers", "bea", 1)
        written = client.get(f"/api/labels/{SET}/1/1").json()
        assert (written["value"], written["author"], written["action"]) == ("imported 1", "ada", "import")
        # A second import of the same graph changes nothing.
        again = post(client, graph_with_features(3)).json()
        assert again["labels_written"] == 0 and len(again["label_conflicts"]) == 1


def test_label_writes_count_against_the_write_limit(redis_url: str) -> None:
    settings = make_settings(redis_url, write_rate_per_minute=50)
    with ApiServer(settings) as server, http(server.url) as client:
        window = _early_in_a_rate_window(margin_s=30)
        too_many = post(client, graph_with_features(60))
        assert too_many.status_code == 429, too_many.text
        assert too_many.json()["labels_pending"] == 60 and "Retry-After" in too_many.headers
        assert client.get(f"/api/labels/{SET}/1/0").json()["version"] == 0
        ok = post(client, graph_with_features(30))
        assert ok.status_code == 201 and ok.json()["labels_written"] == 30
        # 2 imports + 30 labels spent: 18 writes are left this minute.
        statuses = [
            client.put(f"/api/labels/{SET}/2/{i}", json={"value": "x"}, headers=USER).status_code
            for i in range(19)
        ]
        assert int(time.time() // RATE_WINDOW_S) == window, "the writes outlasted their rate window"
        assert statuses == [200] * 18 + [429]


def test_twenty_thousand_labels_are_twenty_thousand_writes(redis_url: str) -> None:
    settings = make_settings(redis_url, write_rate_per_minute=20_010)
    with ApiServer(settings) as server, http(server.url) as client:
        window = _early_in_a_rate_window(margin_s=45)
        imported = post(client, graph_with_features(20_000))
        assert imported.status_code == 201, imported.text
        assert imported.json()["labels_written"] == 20_000
        left = [client.put(f"/api/labels/{SET}/2/{i}", json={"value": "x"}, headers=USER) for i in range(10)]
        assert int(time.time() // RATE_WINDOW_S) == window, "the import outlasted its rate window"
        assert [r.status_code for r in left] == [200] * 9 + [429]


def _early_in_a_rate_window(margin_s: float) -> int:
    """The current rate window, after waiting for a fresh one if fewer than `margin_s` seconds of
    this one are left: the write limit counts per clock minute, and a slow run that crosses a
    boundary resets the count mid-test (seen under load). Returns the window's number."""
    if RATE_WINDOW_S - time.time() % RATE_WINDOW_S < margin_s:
        time.sleep(RATE_WINDOW_S - time.time() % RATE_WINDOW_S + 0.05)
    return int(time.time() // RATE_WINDOW_S)


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _case(name: str) -> dict[str, Any]:
    graph = graph_with_features(1)
    if name == "non-dict node":
        graph["nodes"].append("not a node")
    elif name == "node without node_id":
        del graph["nodes"][0]["node_id"]
    elif name == "link without weight":
        del graph["links"][0]["weight"]
    elif name == "string weight":
        graph["links"][0]["weight"] = "0.5"
    elif name == "integer prompt_tokens":
        graph["metadata"]["prompt_tokens"] = 7
    elif name == "list qParams":
        graph["qParams"] = [1, 2]
    elif name == "deep nesting":
        graph["metadata"]["info"] = _deep(300)
    elif name == "path as scan":
        graph["metadata"]["scan"] = "../../etc/passwd"
    elif name == "huge prompt":
        graph["metadata"]["prompt"] = "x" * 1_200_000
    elif name == "too many prompt tokens":
        graph["metadata"]["prompt_tokens"] = ["x"] * 10_000
    elif name == "non-list links":
        graph["links"] = {"a": 1}
    elif name == "negative cantor feature":
        graph["nodes"][0].update(node_id="99", jsNodeId="x", feature=-5)
    return graph


CASES = [
    ("non-dict node", ["nodes"]),
    ("node without node_id", ["nodes", 0, "node_id"]),
    ("link without weight", ["links", 0, "weight"]),
    ("string weight", ["links", 0, "weight"]),
    ("integer prompt_tokens", ["metadata", "prompt_tokens"]),
    ("list qParams", ["qParams"]),
    ("deep nesting", []),
    ("path as scan", ["metadata", "scan"]),
    ("huge prompt", ["metadata", "prompt"]),
    ("too many prompt tokens", ["metadata", "prompt_tokens"]),
    ("non-list links", ["links"]),
]


@pytest.mark.parametrize(("name", "where"), CASES, ids=[c[0] for c in CASES])
def test_invalid_graphs_get_422_naming_the_field(
    api: str, settings: Settings, name: str, where: list[str | int]
) -> None:
    big = settings.max_import_bytes if name == "huge prompt" else None
    assert big is None or big > 1_300_000
    with http(api) as client:
        params = {} if name == "path as scan" else {"transcoders": SET}
        response = client.post("/api/imports", params=params, json=_case(name), headers=USER)
        assert response.status_code == 422, response.text
        locs = [e["loc"] for e in response.json()["detail"]]
        assert any(loc[: len(where) + 1] == ["body", *where] for loc in locs), locs
    assert stored_graphs(settings) == []


def test_odd_but_valid_graphs_import(api: str, settings: Settings) -> None:
    with http(api) as client:
        response = post(client, _case("negative cantor feature"))
        assert response.status_code == 201, response.text
        unnamed = copy.deepcopy(example_graph())
        unnamed["metadata"].pop("scan")
        named = client.post("/api/imports", json=unnamed, headers=USER)
        assert named.status_code == 201 and named.json()["model"] == "imported"
        assert (
            client.post(
                "/api/imports", content=b"{nope", headers={**USER, "content-type": "application/json"}
            ).status_code
            == 400
        )


def test_feature_index_shrinks_with_the_cache(redis_url: str) -> None:
    """100 graphs with distinct features through a cache that holds a few: the index (features:*)
    names only the graphs still stored, one entry per feature of each."""
    from attrgraph.protocol import stored_graph
    from attrgraph.protocol.keys import Keys
    from attrgraph.protocol.store import GraphWriter

    probe = stored_graph.encode(graph_with_features(50), graph_id="0" * 32, model="m", transcoders=SET)
    one = len(probe[1]) + sum(len(k) + len(v) for k, v in probe[2].items())
    settings = make_settings(redis_url, graph_cache_bytes=one * 5)
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(redis_url)
    writer = GraphWriter(client, keys, settings.graph_cache_bytes)
    try:
        with ApiServer(settings) as server, http(server.url) as api:
            for n in range(100):
                graph = graph_with_features(50)
                for node in graph["nodes"][-50:]:  # features 1_(100n + i): no two graphs share one
                    i = int(node["node_id"].split("_")[1])
                    node["node_id"] = node["jsNodeId"] = f"1_{100 * n + i}_0"
                gid = f"{n:032x}"
                writer.put(*stored_graph.encode(graph, graph_id=gid, model="m", transcoders=SET))
                assert api.get(f"/api/graphs/{gid}/labels").status_code == 200  # indexes it
            stored = {m.decode().split(":")[-2] for m in client.scan_iter(match=f"{keys.prefix}graph:*:meta")}
            assert 1 <= len(stored) <= 6
            entries: dict[str, set[str]] = {}
            for key in client.scan_iter(match=keys.feature_graphs(SET, "*")):
                entries[key.decode()] = {text(m) for m in client.smembers(key)}
            named = set().union(*entries.values())
            assert named == stored
            per_graph = len(example_features()) + 50
            shared = len(example_features())  # the example's own features are in every graph
            assert len(entries) == shared + 50 * len(stored)
            assert sum(len(m) for m in entries.values()) == per_graph * len(stored)
            indexed = {text(m) for m in client.smembers(keys.features_indexed)}
            assert indexed == stored
    finally:
        client.close()
        clear_prefix(redis_url, settings.key_prefix)


def example_features() -> set[str]:
    from attrgraph.format.feature_keys import feature_key_text

    return {k for n in example_graph()["nodes"] if (k := feature_key_text(n)) is not None}
