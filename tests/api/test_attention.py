"""POST /api/attention: validated against the stored graph in the API, computed by a worker, cached
by content address; head ablations ride on POST /api/interventions."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.services import WorkerThread, http, sse_events

PROMPT = "the capital of Texas is"


def _graph(client: httpx.Client) -> tuple[str, dict[str, Any]]:
    body = client.post("/api/graphs", json={"prompt": PROMPT}).json()
    if body["status"] != "ready":
        assert sse_events(client, body["events_url"])[-1][0] == "done"
    graph_id = str(body["graph_id"])
    document: dict[str, Any] = client.get(f"/api/graphs/{graph_id}").json()
    return graph_id, document


def _result(client: httpx.Client, reply: httpx.Response) -> dict[str, Any]:
    body = reply.json()
    if reply.status_code == 202:
        events = sse_events(client, body["events_url"])
        assert events[-1][0] == "done", events
    else:
        assert reply.status_code == 200, body
    result = client.get(body["result_url"])
    assert result.status_code == 200
    data: dict[str, Any] = result.json()
    return data


def _crossing_link(document: dict[str, Any]) -> dict[str, Any]:
    kinds = {n["node_id"]: n["feature_type"] for n in document["nodes"]}
    return next(link for link in document["links"] if kinds[link["target"]] not in ("embedding", "logit"))


def test_edge_and_head_computed_in_worker_and_cached(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        graph_id, document = _graph(client)
        link = _crossing_link(document)
        request = {"graph_id": graph_id, "edge": {"source": link["source"], "target": link["target"]}}
        first = client.post("/api/attention", json=request)
        assert first.status_code == 202, first.text
        result = _result(client, first)
        assert result["head_loadings"][0]["share"] == 1.0
        assert result["graph_id"] == graph_id and result["attention_id"] == first.json()["attention_id"]
        job = client.get(first.json()["job_url"]).json()
        assert job["kind"] == "attention" and job["graph_id"] == graph_id and job["state"] == "done"
        # The same question again (an edge's `top` does not matter): from Redis, no new job.
        again = client.post("/api/attention", json={**request, "top": 3})
        assert again.status_code == 200 and again.json()["attention_id"] == first.json()["attention_id"]
        assert worker.tracer.attentions == 1

        head = {"graph_id": graph_id, "head": {"layer": 1, "head": 2, "query_pos": 3, "key_pos": 1}}
        reply = client.post("/api/attention", json=head)
        assert reply.status_code == 202
        qk = _result(client, reply)
        assert set(qk["qk_tracing_results"]) == {
            "pair_wise_contributors",
            "top_q_marginal_contributors",
            "top_k_marginal_contributors",
        }
        assert (qk["layer"], qk["head"], qk["query_pos"], qk["key_pos"]) == (1, 2, 3, 1)
        assert worker.tracer.attentions == 2


def test_bad_requests_are_refused_with_a_message(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        graph_id, document = _graph(client)
        link = _crossing_link(document)
        embedding = next(n["node_id"] for n in document["nodes"] if n["feature_type"] == "embedding")
        logit = next(n["node_id"] for n in document["nodes"] if n["feature_type"] == "logit")
        edge = {"source": link["source"], "target": link["target"]}
        head = {"layer": 0, "head": 0, "query_pos": 2, "key_pos": 1}
        cases = [
            ({"graph_id": graph_id}, "exactly one"),
            ({"graph_id": graph_id, "edge": edge, "head": head}, "exactly one"),
            ({"graph_id": graph_id, "edge": {**edge, "source": "9_9_9"}}, "no node 9_9_9"),
            ({"graph_id": graph_id, "edge": {**edge, "target": embedding}}, "never a target"),
            ({"graph_id": graph_id, "edge": {**edge, "source": logit}}, "never a source"),
            ({"graph_id": graph_id, "head": {**head, "key_pos": 3}}, "causal"),
            ({"graph_id": graph_id, "head": {**head, "layer": 7}}, "layer out of range"),
            ({"graph_id": graph_id, "head": {**head, "query_pos": 40, "key_pos": 0}}, "out of range"),
            ({"graph_id": graph_id, "head": {**head, "extra": 1}}, "xtra"),
        ]
        for body, message in cases:
            reply = client.post("/api/attention", json=body)
            assert reply.status_code == 422, (body, reply.text)
            assert message in reply.text, (body, reply.text)
        missing = client.post("/api/attention", json={"graph_id": "0" * 32, "edge": edge})
        assert missing.status_code == 404
        assert client.get(f"/api/attention/{'0' * 32}").status_code == 404
        assert worker.tracer.attentions == 0


def test_head_ablation_is_an_intervention(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        graph_id, _ = _graph(client)
        request = {"graph_id": graph_id, "interventions": [{"mode": "ablate_head", "layer": 0, "head": 1}]}
        reply = client.post("/api/interventions", json=request)
        assert reply.status_code == 202, reply.text
        result = _result(client, reply)
        assert result["after"]["top"][0]["prob"] < result["before"]["top"][0]["prob"]
        other = client.post(
            "/api/interventions",
            json={**request, "interventions": [{"mode": "ablate_head", "layer": 0, "head": 2}]},
        )
        assert other.json()["intervention_id"] != reply.json()["intervention_id"]
        for bad in ({"mode": "ablate_head", "layer": 0}, {"mode": "ablate_head", "layer": 9, "head": 0}):
            refused = client.post("/api/interventions", json={**request, "interventions": [bad]})
            assert refused.status_code == 422, refused.text
