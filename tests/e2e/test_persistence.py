"""Restart Redis (SIGKILL, AOF) and the API: every label, note, its history and share link remain."""

from __future__ import annotations

from attrgraph.settings import Settings
from tests.support.collab import TRANSCODERS, a_feature, store_example
from tests.support.services import ApiServer, RedisServer, http, make_settings

USER = {"X-Attrgraph-User": "ada"}


def test_everything_survives_restarts(own_redis: RedisServer) -> None:
    settings: Settings = make_settings(own_redis.url, graph_cache_bytes=1024)
    gid = store_example(settings)
    layer, index, node_id = a_feature()
    label = f"/api/labels/{TRANSCODERS}/{layer}/{index}"
    with ApiServer(settings) as api, http(api.url) as client:
        client.put(label, json={"value": "one", "version": 0}, headers=USER)
        client.put(label, json={"value": "two", "version": 1}, headers=USER)
        client.put(
            f"/api/graphs/{gid}/note", params={"target": f"node:{node_id}"}, json={"value": "n"}, headers=USER
        )
        view = client.post(
            "/api/views", json={"graph_id": gid, "query": f"?clickedId={node_id}"}, headers=USER
        ).json()

    own_redis.kill()
    own_redis.start()
    # Other graphs arrive and push the cache past its (tiny) bound: the pinned graph stays.
    for n in range(3):
        store_example(settings, graph_id=f"{n}" * 32)

    with ApiServer(settings) as api, http(api.url) as client:
        current = client.get(label).json()
        assert current["value"] == "two" and current["version"] == 2 and current["author"] == "ada"
        assert [v["value"] for v in client.get(label + "/history").json()["versions"]] == ["one", "two"]
        assert client.get(f"/api/graphs/{gid}/notes").json()["notes"] == {f"node:{node_id}": "n"}
        saved = client.get(f"/api/views/{view['id']}").json()
        assert saved["graph_id"] == gid and saved["query"] == f"?clickedId={node_id}"
        assert client.get(f"/api/graphs/{gid}").status_code == 200
        assert client.get(f"/v/{view['id']}", follow_redirects=False).status_code == 302
        found = client.get(f"/api/labels/{TRANSCODERS}", params={"q": "two"}).json()["results"]
        assert len(found) == 1
