"""Share links: save a view, read it back, open /v/{id}; the graph is pinned."""

from __future__ import annotations

import pytest

from attrgraph.settings import Settings
from tests.support.collab import TRANSCODERS, a_feature, store_example
from tests.support.services import http

USER = {"X-Attrgraph-User": "ada"}


def test_save_open_and_pin(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    layer, index, node_id = a_feature()
    query = f"?clickedId={node_id}&pinnedIds={node_id}&pruningThreshold=0.5"
    with http(api) as client:
        client.put(
            f"/api/labels/{TRANSCODERS}/{layer}/{index}", json={"value": "then", "version": 0}, headers=USER
        )
        assert client.get(f"/api/graphs/{gid}/summary").json()["pinned"] is False
        saved = client.post(
            "/api/views", json={"graph_id": gid, "query": query, "state": {"x": 1}}, headers=USER
        )
        assert saved.status_code == 201, saved.text
        view = saved.json()
        assert len(view["id"]) == 8 and view["url"] == f"/v/{view['id']}"
        assert view["labels"] == {f"{layer}_{index}": "then"} and view["author"] == "ada"
        assert client.get(f"/api/graphs/{gid}/summary").json()["pinned"] is True

        # Labels change later; the view keeps them as they were.
        client.put(
            f"/api/labels/{TRANSCODERS}/{layer}/{index}", json={"value": "now", "version": 1}, headers=USER
        )
        again = client.get(f"/api/views/{view['id']}").json()
        assert again["labels"] == {f"{layer}_{index}": "then"} and again["query"] == query
        assert again["state"] == {"x": 1}

        opened = client.get(f"/v/{view['id']}", follow_redirects=False)
        assert opened.status_code == 302
        assert opened.headers["location"] == f"/graph/{gid}{query}&view={view['id']}"
        assert client.get("/api/views/AAAAAAAA").status_code == 404
        assert client.post("/api/views", json={"graph_id": "e" * 32}, headers=USER).status_code == 404


@pytest.mark.parametrize("query", ["", "clickedId=x"])
def test_query_forms(api: str, settings: Settings, query: str) -> None:
    gid = store_example(settings)
    with http(api) as client:
        view = client.post("/api/views", json={"graph_id": gid, "query": query}).json()
        location = client.get(f"/v/{view['id']}", follow_redirects=False).headers["location"]
        expected = (
            f"/graph/{gid}?view={view['id']}" if not query else f"/graph/{gid}?{query}&view={view['id']}"
        )
        assert location == expected


def _deep(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "body",
    [
        '{"graph_id": "%s", "state": {"n": 123456789012345678901234567890}}',
        '{"graph_id": "%s", "state": {"s": "\\ud800"}}',
        '{"graph_id": "%s", "state": ' + "[" * 300 + "]" * 300 + "}",
    ],
    ids=["int beyond 64 bits", "lone surrogate", "nested 300 levels"],
)
def test_unstorable_state_is_422(api: str, settings: Settings, body: str) -> None:
    gid = store_example(settings)
    with http(api) as client:
        raw = (body % gid).encode()
        response = client.post(
            "/api/views", content=raw, headers={**USER, "content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert client.get(f"/api/graphs/{gid}/summary").json()["pinned"] is False


def test_export_of_a_view_with_broken_supernodes_is_422(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    with http(api) as client:
        for supernodes, status in (("%5B%5B%22a%22%5D%5D", 200), ("%7Bnope", 422), ("3", 422)):
            view = client.post(
                "/api/views", json={"graph_id": gid, "query": f"supernodes={supernodes}"}, headers=USER
            ).json()
            exported = client.get(f"/api/graphs/{gid}/export", params={"view": view["id"]})
            assert exported.status_code == status, exported.text
        assert exported.json()["detail"].endswith("not a JSON list")
