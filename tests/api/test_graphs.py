"""Submit, follow, fetch: the main path through the API with a (fake-backend) worker."""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
import redis

from attrgraph.format.synthetic import synthetic_graph
from attrgraph.protocol import store as store_module
from attrgraph.protocol import stored_graph
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.store import GraphWriter
from attrgraph.settings import Settings
from tests.support.services import WorkerThread, http, sse_events, torch_tracer_settings, wait_until


def test_submit_events_and_fetch(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        response = client.post("/api/graphs", json={"prompt": "The capital of Texas is"})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "queued" and accepted["joined"] is False
        events = sse_events(client, accepted["events_url"])
        kinds = [name for name, _ in events]
        assert "progress" in kinds and kinds[-1] == "done", kinds
        progress = [data for name, data in events if name == "progress"]
        assert progress[-1]["percent"] == 100.0 and progress[-1]["phase"] == "attribution"
        assert events[-1][1]["graph_id"] == accepted["graph_id"]

        job = client.get(accepted["job_url"]).json()
        assert job["state"] == "done" and job["percent"] == 100.0

        graph_url = f"/api/graphs/{accepted['graph_id']}"
        raw = httpx.get(api + graph_url, headers={"Accept-Encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        graph = raw.json()  # httpx decompresses
        assert graph["metadata"]["prompt"] == "The capital of Texas is"
        plain = client.get(graph_url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.json() == graph
        assert (
            client.get(graph_url, headers={"If-None-Match": f'"{accepted["graph_id"]}"'}).status_code == 304
        )

        node = graph["nodes"][-1]  # the logit: it has incoming edges
        detail = client.get(f"{graph_url}/nodes/{node['node_id']}").json()
        assert detail["graph_id"] == accepted["graph_id"] and detail["node"] == node
        expected_in = sum(1 for link in graph["links"] if link["target"] == node["node_id"])
        assert len(detail["incoming"]) == expected_in > 0
        weights = [abs(e["weight"]) for e in detail["incoming"]]
        assert weights == sorted(weights, reverse=True)
        assert client.get(f"{graph_url}/nodes/99_99_99").status_code == 404

        summary = client.get(f"{graph_url}/summary").json()
        assert summary["n_nodes"] == len(graph["nodes"]) and summary["n_links"] == len(graph["links"])
        recent = client.get("/api/graphs").json()["graphs"]
        assert [g["graph_id"] for g in recent] == [accepted["graph_id"]]


def test_identical_request_is_served_from_cache(api: str, worker: WorkerThread) -> None:
    body: dict[str, Any] = {"prompt": "The opposite of hot is", "settings": {"max_n_logits": 5}}
    with http(api) as client:
        first = client.post("/api/graphs", json=body).json()
        sse_events(client, first["events_url"])
        again = client.post("/api/graphs", json=body)
        assert again.status_code == 200
        assert again.json() == {
            "status": "ready",
            "graph_id": first["graph_id"],
            "graph_url": f"/api/graphs/{first['graph_id']}",
        }
        # Spelling out a default is the same request: same content address, no new job.
        explicit = {**body, "settings": {**body["settings"], "desired_logit_prob": 0.95}}
        assert client.post("/api/graphs", json=explicit).json()["graph_id"] == first["graph_id"]
        # Different text, same tokens (the fake tokenizer splits on whitespace): same graph.
        spaced = {**body, "prompt": "The  opposite of hot is "}
        reply = client.post("/api/graphs", json=spaced)
        assert reply.status_code == 200 and reply.json()["graph_id"] == first["graph_id"]
    assert worker.tracer.traces == 1


def test_concurrent_identical_requests_compute_once(api: str, worker: WorkerThread) -> None:
    worker.tracer.step_s = 0.05  # long enough that all ten arrive while the job is live
    body = {"prompt": "When Mary and John went to the store", "target": {"tokens": ["Mary"]}}
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: httpx.post(api + "/api/graphs", json=body, timeout=30), range(10)))
    assert all(r.status_code in (200, 202) for r in replies), [r.text for r in replies]
    jobs = {r.json().get("job_id") for r in replies if r.status_code == 202}
    assert len(jobs) == 1
    assert (
        sum(r.json().get("joined", False) for r in replies) == sum(r.status_code == 202 for r in replies) - 1
    )
    graph_id = replies[0].json()["graph_id"]
    with http(api) as client:
        wait_until(lambda: client.get(f"/api/graphs/{graph_id}/summary").status_code == 200, what="graph")
    assert worker.tracer.traces == 1


@pytest.mark.parametrize("top_k", [0, 3])
def test_tokenize(api: str, worker: WorkerThread, top_k: int) -> None:
    reply = httpx.post(api + "/api/tokenize", json={"prompt": "a b c", "top_k": top_k})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [t["text"] for t in body["tokens"]] == ["a", "b", "c"]
    assert len(body["predictions"]) == top_k and body["model"] == "fake"


def test_models_features_and_health(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        models = client.get("/api/models").json()
        assert models["default_model"] == "fake"
        (model,) = models["models"]
        assert model["workers"] == 1 and model["transcoders"][0]["name"] == "fake-tc"
        assert client.get("/api/features/fake-tc/1/5").json()["label"] == "fake feature 1/5"
        assert client.get("/api/features/fake-tc/1/5").json()["index"] == 5  # now from the Redis cache
        assert client.get("/api/features/fake-tc/1/500").status_code == 404
        assert client.get("/api/features/nope/1/5").status_code == 404
        assert client.get("/api/health").json() == {"redis": True, "workers": 1, "models": ["fake"]}


def test_graph_gzip_bytes_are_served_as_stored(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        accepted = client.post("/api/graphs", json={"prompt": "x y"}).json()
        sse_events(client, accepted["events_url"])
    with httpx.Client() as raw_client:
        request = raw_client.build_request(
            "GET", f"{api}/api/graphs/{accepted['graph_id']}", headers={"Accept-Encoding": "gzip"}
        )
        response = raw_client.send(request, stream=True)
        compressed = b"".join(response.iter_raw())
        response.close()
    assert orjson.loads(gzip.decompress(compressed))["metadata"]["prompt"] == "x y"


def test_a_graph_larger_than_a_read_piece_streams_whole_either_encoding(
    api: str, settings: Settings, rclient: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "READ_CHUNK_BYTES", 8 << 10)
    document = synthetic_graph("streamed", [f"t{i}" for i in range(30)], n_features=600, seed=5)
    graph_id = f"{91:032x}"
    meta, gz, nodes = stored_graph.encode(document, graph_id=graph_id, model="fake", transcoders="fake-tc")
    assert len(gz) > 4 * store_module.READ_CHUNK_BYTES
    GraphWriter(rclient, Keys(settings.key_prefix), cache_bytes=1 << 30).put(meta, gz, nodes)
    with httpx.Client() as client:
        with client.stream("GET", f"{api}/api/graphs/{graph_id}", headers={"Accept-Encoding": "gzip"}) as r:
            assert r.headers["content-encoding"] == "gzip" and int(r.headers["content-length"]) == len(gz)
            assert b"".join(r.iter_raw()) == gz
        plain = client.get(f"{api}/api/graphs/{graph_id}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.content == gzip.decompress(gz)
    assert plain.headers.get("transfer-encoding") == "chunked"  # streamed, not built in memory


# --- chat prompts ----------------------------------------------------------------------------------

CHAT = [{"role": "user", "content": "one two"}]
RENDERED_BY_FAKE = "user: one two\nassistant:"  # the fake backend's template


def test_a_chat_traces_from_its_rendered_text(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        accepted = client.post("/api/graphs", json={"prompt": CHAT})
        assert accepted.status_code == 202, accepted.text
        graph_id = accepted.json()["graph_id"]
        assert sse_events(client, accepted.json()["events_url"])[-1][0] == "done"
        graph = client.get(f"/api/graphs/{graph_id}").json()
        assert graph["metadata"]["prompt"] == RENDERED_BY_FAKE
        assert client.get(accepted.json()["job_url"]).json()["prompt"] == RENDERED_BY_FAKE
        # Asked again: answered from the request's alias, no new job.
        again = client.post("/api/graphs", json={"prompt": CHAT})
        assert again.status_code == 200 and again.json()["graph_id"] == graph_id
        # The content address is of the rendered tokens: the same text typed out is the same graph.
        typed = client.post("/api/graphs", json={"prompt": RENDERED_BY_FAKE})
        assert typed.status_code == 200 and typed.json()["graph_id"] == graph_id
        other = client.post("/api/graphs", json={"prompt": [{"role": "user", "content": "one three"}]})
        assert other.status_code == 202 and other.json()["graph_id"] != graph_id
        # Wait for it: counting traces while the second job still runs would race the worker.
        assert sse_events(client, other.json()["events_url"])[-1][0] == "done"
    assert worker.tracer.traces == 2


def test_a_chat_counts_its_contents_against_the_character_limit(redis_url: str) -> None:
    from tests.support.services import ApiServer, clear_prefix, make_settings

    settings = make_settings(redis_url, max_prompt_chars=10)
    long_chat = [{"role": "user", "content": "x" * 6}, {"role": "user", "content": "y" * 6}]
    with ApiServer(settings) as api, WorkerThread(settings):
        for path in ("/api/graphs", "/api/tokenize"):
            reply = httpx.post(api.url + path, json={"prompt": long_chat})
            assert reply.status_code == 422 and "at most 10 characters" in reply.json()["detail"][0]["msg"]
    clear_prefix(redis_url, settings.key_prefix)


@pytest.fixture(scope="module")
def chat_model_settings(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Any:
    """The real engine on a tiny model whose tokenizer has a chat template."""
    from attrgraph.engine.transcoders.saving import save_transcoders
    from attrgraph.settings import ModelSpec
    from tests.support.chat import make_tiny_chat_model
    from tests.support.services import clear_prefix
    from tests.support.transcoders import tiny_plt_transcoders

    root = tmp_path_factory.mktemp("chat-model")
    model_dir = make_tiny_chat_model(root / "model", family="gpt2")
    tc_dir = save_transcoders(tiny_plt_transcoders(), root / "tc", model_name="tiny-chat")
    spec = ModelSpec(name="tiny-chat", path=str(model_dir), transcoders={"tiny-plt": str(tc_dir)})
    settings = torch_tracer_settings(redis_url, spec, warmup=False)
    yield settings
    clear_prefix(redis_url, settings.key_prefix)


def test_a_chat_traces_through_the_real_engine(chat_model_settings: Any) -> None:
    from attrgraph.worker.torch_tracer import TorchTracer
    from tests.support.chat import CHAT as TEMPLATE_CHAT
    from tests.support.chat import RENDERED
    from tests.support.services import ApiServer

    settings = chat_model_settings
    with (
        ApiServer(settings) as api,
        WorkerThread(settings, TorchTracer(settings)),
        http(api.url) as client,
    ):
        (model,) = client.get("/api/models").json()["models"]
        assert model["chat_template"] is True and model["context_length"] == 256
        preview = client.post("/api/tokenize", json={"prompt": TEMPLATE_CHAT, "top_k": 2}).json()
        assert preview["text"] == RENDERED
        texts = [t["text"] for t in preview["tokens"]]
        assert texts[0] == "<|bos|>" and texts.count("<|bos|>") == 1
        assert "".join(texts) == RENDERED

        body = {"prompt": TEMPLATE_CHAT, "settings": {"max_feature_nodes": 32, "max_n_logits": 1}}
        accepted = client.post("/api/graphs", json=body).json()
        assert sse_events(client, accepted["events_url"])[-1][0] == "done"
        graph = client.get(f"/api/graphs/{accepted['graph_id']}").json()
        assert graph["metadata"]["prompt"] == RENDERED
        assert len(graph["metadata"]["prompt_tokens"]) == len(texts)
        # A chat its template refuses is the user's error, with the template's message.
        refused = client.post("/api/tokenize", json={"prompt": [{"role": "tool", "content": "x"}]})
        assert refused.status_code == 422 and "no tool role" in refused.json()["detail"][0]["msg"]
