"""POST /api/interventions: validated in the API, computed by a worker, cached by content address."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.services import WorkerThread, http, sse_events

PROMPT = "the capital of Texas is"


def _graph(client: httpx.Client) -> str:
    body = client.post("/api/graphs", json={"prompt": PROMPT}).json()
    if body["status"] != "ready":
        assert sse_events(client, body["events_url"])[-1][0] == "done"
    return str(body["graph_id"])


def _result(client: httpx.Client, reply: httpx.Response) -> dict[str, Any]:
    body = reply.json()
    if reply.status_code == 202:
        events = sse_events(client, body["events_url"])
        names = [e for e, _ in events]
        assert names[-1] == "done", events
        assert "progress" in names
    else:
        assert reply.status_code == 200, body
    result = client.get(body["result_url"])
    assert result.status_code == 200
    data: dict[str, Any] = result.json()
    return data


def test_intervention_computed_in_worker_and_cached(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        graph_id = _graph(client)
        request = {
            "graph_id": graph_id,
            "interventions": [{"layer": 1, "position": 2, "feature": 7, "mode": "ablate"}],
            "options": {"freeze_attention": True, "n_generate": 4},
        }
        first = client.post("/api/interventions", json=request)
        assert first.status_code == 202
        result = _result(client, first)
        assert result["after"]["top"][0]["prob"] < result["before"]["top"][0]["prob"]
        assert result["graph_id"] == graph_id and result["intervention_id"] == first.json()["intervention_id"]
        assert worker.tracer.interventions == 1
        # The same request again: answered from Redis, no new job.
        again = client.post("/api/interventions", json=request)
        assert again.status_code == 200 and again.json()["intervention_id"] == first.json()["intervention_id"]
        assert _result(client, again) == result
        # An ablation's value is irrelevant; key order too: the same content address.
        same = {
            **request,
            "interventions": [{"mode": "ablate", "feature": 7, "position": 2, "layer": 1, "value": 5}],
        }
        assert client.post("/api/interventions", json=same).status_code == 200
        # Different options: a different result id, computed again.
        other = {**request, "options": {"freeze_attention": False, "n_generate": 4}}
        reply = client.post("/api/interventions", json=other)
        assert reply.status_code == 202 and reply.json()["intervention_id"] != first.json()["intervention_id"]
        _result(client, reply)
        assert worker.tracer.interventions == 2
        # Job status works for intervention jobs like graph jobs.
        job = client.get(reply.json()["job_url"]).json()
        assert job["state"] == "done" and job["kind"] == "intervene"
        assert job["result_id"] == reply.json()["intervention_id"] and job["graph_id"] == graph_id
        assert job["prompt"] == PROMPT


def test_identical_concurrent_requests_share_one_job(api: str, worker: WorkerThread) -> None:
    worker.tracer.step_s = 0.05
    with http(api) as client:
        graph_id = _graph(client)
        request = {
            "graph_id": graph_id,
            "interventions": [{"layer": 0, "position": 1, "feature": 3, "mode": "scale", "value": 2.5}],
        }
        a = client.post("/api/interventions", json=request).json()
        b = client.post("/api/interventions", json=request).json()
        assert a["job_id"] == b["job_id"] and b["joined"]
        _result(client, client.post("/api/interventions", json=request))


def _detail(reply: httpx.Response) -> str:
    assert reply.status_code == 422, reply.text
    return str(reply.json()["detail"])


def test_bad_interventions_are_422_with_a_message(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        graph_id = _graph(client)

        def post(*items: dict[str, Any], **extra: Any) -> httpx.Response:
            return client.post(
                "/api/interventions", json={"graph_id": graph_id, "interventions": list(items), **extra}
            )

        ok = {"layer": 0, "position": 0, "feature": 1, "mode": "set", "value": 1.0}
        assert "unknown feature" in _detail(post({**ok, "feature": 100}))  # d_transcoder is 100
        assert "layer out of range" in _detail(post({**ok, "layer": 2}))
        n_tokens = len(PROMPT.split())
        assert f"the prompt has {n_tokens} tokens" in _detail(post({**ok, "position": n_tokens}))
        assert _detail(post({**ok, "position": -1}))
        assert _detail(post({**ok, "mode": "clamp"}))
        assert _detail(post({**ok, "value": "1"}))
        assert _detail(post({**ok, "value": 1e300}))
        # non-finite values: JSON has no NaN, but Python's encoder writes one; it must be refused
        nan = client.post(
            "/api/interventions",
            content=b'{"graph_id": "%s", "interventions": [{"layer": 0, "position": 0, "feature": 1, '
            b'"mode": "set", "value": NaN}]}' % graph_id.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert nan.status_code in (400, 422)
        inf = client.post(
            "/api/interventions",
            content=b'{"graph_id": "%s", "interventions": [{"layer": 0, "position": 0, "feature": 1, '
            b'"mode": "set", "value": Infinity}]}' % graph_id.encode(),
            headers={"Content-Type": "application/json"},
        )
        assert inf.status_code in (400, 422)
        assert "at most 256" in _detail(post(*[ok] * 257))
        assert _detail(post())  # none
        assert _detail(post(ok, options={"top_k": 0}))
        assert _detail(post(ok, options={"freeze": True}))
        missing = client.post("/api/interventions", json={"graph_id": "0" * 32, "interventions": [ok]})
        assert missing.status_code == 404
        assert client.get(f"/api/interventions/{'0' * 32}").status_code == 404
        # A refusal from the engine (the fake refuses 13) fails the job with its message.
        reply = post({**ok, "value": 13})
        assert reply.status_code == 202
        events = sse_events(client, reply.json()["events_url"])
        assert events[-1][0] == "failed" and "refuses" in events[-1][1]["message"]
        assert worker.tracer.interventions >= 1
