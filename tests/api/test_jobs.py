"""Queue positions, cancellation (queued and running) and a full queue."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from attrgraph.settings import Settings
from tests.support.services import (
    ApiServer,
    WorkerThread,
    clear_prefix,
    make_settings,
    sse_events,
    wait_until,
)


@pytest.fixture
def slow(redis_url: str) -> Iterator[tuple[httpx.Client, WorkerThread, Settings]]:
    settings = make_settings(redis_url, max_queue=3)
    with (
        ApiServer(settings) as api,
        WorkerThread(settings) as worker,
        httpx.Client(base_url=api.url, timeout=30) as c,
    ):
        worker.tracer.steps, worker.tracer.step_s = 100, 0.05  # 5 s per job unless cancelled
        yield c, worker, settings
    clear_prefix(redis_url, settings.key_prefix)


def _state(client: httpx.Client, job_id: str) -> str:
    return str(client.get(f"/api/jobs/{job_id}").json()["state"])


def test_positions_cancel_and_full_queue(slow: tuple[httpx.Client, WorkerThread, Settings]) -> None:
    client, worker, _ = slow
    first = client.post("/api/graphs", json={"prompt": "job one"}).json()
    wait_until(lambda: _state(client, first["job_id"]) == "running", what="first job running")
    second = client.post("/api/graphs", json={"prompt": "job two"}).json()
    third = client.post("/api/graphs", json={"prompt": "job three"}).json()
    assert (second["position"], third["position"]) == (0, 1)
    assert client.get(f"/api/jobs/{third['job_id']}").json()["position"] == 1

    full = client.post("/api/graphs", json={"prompt": "job four"})
    assert full.status_code == 503 and int(full.headers["Retry-After"]) > 0
    assert "full" in full.json()["detail"]

    # Cancel a queued job: immediate, and the job after it moves up.
    cancelled = client.delete(f"/api/jobs/{second['job_id']}").json()
    assert cancelled == {"job_id": second["job_id"], "state": "cancelled", "cancel_requested": True}
    assert client.get(f"/api/jobs/{third['job_id']}").json()["position"] == 0
    assert sse_events(client, second["events_url"])[-1][0] == "cancelled"

    # Cancel the running job: its worker stops at the next progress report.
    reply = client.delete(f"/api/jobs/{first['job_id']}").json()
    assert reply["state"] == "running" and reply["cancel_requested"]
    events = sse_events(client, first["events_url"])
    assert events[-1][0] == "cancelled" and "progress" in [e for e, _ in events]
    assert client.get(f"/api/graphs/{first['graph_id']}").status_code == 404

    # The worker went on to the third job, skipping the cancelled second one.
    wait_until(lambda: _state(client, third["job_id"]) == "running", what="third job running")
    client.delete(f"/api/jobs/{third['job_id']}")
    wait_until(lambda: _state(client, third["job_id"]) == "cancelled", what="third job cancelled")
    assert worker.tracer.traces == 2

    # A cancelled request may be asked again: a new job, not the cancelled one.
    again = client.post("/api/graphs", json={"prompt": "job one"})
    assert again.status_code == 202 and again.json()["job_id"] != first["job_id"]


def test_events_queue_position_and_resume(slow: tuple[httpx.Client, WorkerThread, Settings]) -> None:
    client, worker, _ = slow
    first = client.post("/api/graphs", json={"prompt": "alpha"}).json()
    wait_until(lambda: _state(client, first["job_id"]) == "running", what="running")
    second = client.post("/api/graphs", json={"prompt": "beta"}).json()
    with client.stream("GET", second["events_url"]) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: queued" and next(lines).startswith('data: {"job_id"')
    worker.tracer.step_s = 0.001
    client.delete(f"/api/jobs/{first['job_id']}")
    events = sse_events(client, second["events_url"])
    assert [e for e, _ in events][-1] == "done"
    # Resuming after the "started" event replays only what came after it.
    with client.stream("GET", second["events_url"]) as stream:
        ids = [line[4:] for line in stream.iter_lines() if line.startswith("id: ")]
    resumed = client.get(second["events_url"], headers={"Last-Event-ID": ids[0]}).text
    assert "event: started" not in resumed and "event: done" in resumed


def test_unknown_job(api: str) -> None:
    assert httpx.get(f"{api}/api/jobs/{'0' * 32}").status_code == 404
    assert httpx.delete(f"{api}/api/jobs/{'0' * 32}").status_code == 404
    assert httpx.get(f"{api}/api/jobs/{'0' * 32}/events").status_code == 404
    assert httpx.get(f"{api}/api/jobs/not-an-id").status_code == 422


def test_anonymous_clients_cannot_cancel_a_token_holders_job(redis_url: str) -> None:
    """Tokens + read-only: an anonymous resubmission joins the job, but deleting it is a write."""
    settings = make_settings(redis_url, tokens="alice:tok1", read_only=True)
    with (
        ApiServer(settings) as api,
        WorkerThread(settings) as worker,
        httpx.Client(base_url=api.url, timeout=30) as client,
    ):
        worker.tracer.steps, worker.tracer.step_s = 100, 0.05
        alice = {"Authorization": "Bearer tok1"}
        mine = client.post("/api/graphs", json={"prompt": "alice's prompt"}, headers=alice).json()
        joined = client.post("/api/graphs", json={"prompt": "alice's prompt"}).json()
        assert joined["job_id"] == mine["job_id"]
        refused = client.delete(f"/api/jobs/{joined['job_id']}")
        assert refused.status_code == 401, refused.text
        wrong = client.delete(f"/api/jobs/{joined['job_id']}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        assert _state(client, mine["job_id"]) in ("queued", "running")
        cancelled = client.delete(f"/api/jobs/{mine['job_id']}", headers=alice)
        assert cancelled.status_code == 200 and cancelled.json()["state"] in ("running", "cancelled")
    clear_prefix(redis_url, settings.key_prefix)
