"""Right after `attrgraph serve` starts, before its worker has loaded the model: a graph request for
the configured default model is queued (202), not refused, and the worker that comes up runs it.
The worker tokenizes and computes the graph id, which the job's `done` event and status name."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from attrgraph.settings import ModelSpec, Settings
from tests.support.services import ApiServer, WorkerThread, sse_events, wait_until

ID_LENGTH = 32


def _first_queued_event(client: httpx.Client, url: str) -> dict[str, Any]:
    with client.stream("GET", url, timeout=30) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name == "queued":
                data: dict[str, Any] = json.loads(line[len("data: ") :])
                return data
    raise AssertionError("no queued event")


def test_a_request_before_any_worker_is_queued_and_run(settings: Settings) -> None:
    with ApiServer(settings) as api, httpx.Client(base_url=api.url, timeout=30) as client:
        assert client.get("/api/models").json()["models"] == []
        accepted = client.post("/api/graphs", json={"prompt": "the early bird"})
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        pending_id = job["graph_id"]
        assert len(pending_id) == ID_LENGTH and client.get(f"/api/graphs/{pending_id}").status_code == 404
        # An identical request joins the same job; the page is told it waits for the worker.
        again = client.post("/api/graphs", json={"prompt": "the early bird"}).json()
        assert again["job_id"] == job["job_id"] and again["joined"] is True
        assert client.get(job["job_url"]).json()["state"] == "queued"
        queued = _first_queued_event(client, job["events_url"])
        assert queued["waiting_for_worker"] is True and queued["position"] == 0

        events: list[tuple[str, dict[str, Any]]] = []
        reader = threading.Thread(target=lambda: events.extend(sse_events(client, job["events_url"])))
        reader.start()
        with WorkerThread(settings):
            reader.join(timeout=30)
            assert events and events[-1][0] == "done", events
            graph_id = events[-1][1]["graph_id"]
            assert graph_id != pending_id and len(graph_id) == ID_LENGTH
            status = client.get(job["job_url"]).json()
            assert status["state"] == "done" and status["graph_id"] == graph_id
            graph = client.get(f"/api/graphs/{graph_id}")
            assert graph.status_code == 200 and graph.json()["metadata"]["prompt"] == "the early bird"
            # The same request now that the worker serves the model: the same graph, at once.
            ready = client.post("/api/graphs", json={"prompt": "the early bird"})
            assert ready.status_code == 200 and ready.json()["graph_id"] == graph_id


def test_pending_requests_are_checked_by_the_worker(settings: Settings) -> None:
    """What the API checks with a worker's help (length, chat rendering) the worker checks for a
    job queued before it came: a prompt over the limit fails the job with the reason."""
    settings = settings.model_copy(update={"max_prompt_tokens": 3})
    with ApiServer(settings) as api, httpx.Client(base_url=api.url, timeout=30) as client:
        long = client.post("/api/graphs", json={"prompt": "one two three four five six"}).json()
        chat = client.post(
            "/api/graphs", json={"prompt": [{"role": "user", "content": "hi"}], "model": "fake"}
        ).json()
        unknown = client.post("/api/graphs", json={"prompt": "x", "model": "other"})
        assert unknown.status_code == 404  # only the configured default model waits for a worker
        with WorkerThread(settings):
            wait_until(
                lambda: all(
                    client.get(j["job_url"]).json()["state"] in ("done", "failed") for j in (long, chat)
                ),
                timeout=30,
                what="both jobs to end",
            )
            failed = client.get(long["job_url"]).json()
            assert failed["state"] == "failed" and "at most 3" in failed["error"], failed
            done = client.get(chat["job_url"]).json()
            assert done["state"] == "done", done
            assert client.get(f"/api/graphs/{done['graph_id']}").status_code == 200


def test_the_default_is_the_served_model_when_workers_are_configured(settings: Settings) -> None:
    """`attrgraph serve --model NAME` lists NAME as the workers' model while the default stays
    "demo": a request naming no model waits for NAME, the model the worker will serve."""
    spec = ModelSpec(name="fake", path="unused", transcoders={"fake-tc": "unused"})
    configured = settings.model_copy(update={"default_model": "demo", "worker_models": [spec]})
    assert configured.configured_default_model == "fake"
    with ApiServer(configured) as api, httpx.Client(base_url=api.url, timeout=30) as client:
        job = client.post("/api/graphs", json={"prompt": "served later"}).json()
        assert client.get(job["job_url"]).json()["model"] == "fake"
        with WorkerThread(settings):
            wait_until(
                lambda: client.get(job["job_url"]).json()["state"] == "done", timeout=30, what="the job"
            )
