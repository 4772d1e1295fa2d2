"""Crashes: a worker SIGKILLed mid-job, and Redis itself killed and restarted."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import redis
import redis.asyncio as aioredis

from attrgraph.protocol.keys import CONSUMER_GROUP, Keys
from attrgraph.protocol.store import GraphStore
from tests.support.services import (
    ApiServer,
    RedisServer,
    WorkerThread,
    clear_prefix,
    make_settings,
    sse_events,
    wait_until,
    worker_process,
)


def test_killed_worker_job_is_finished_by_another(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, reclaim_after_s=1.0, heartbeat_s=0.2)
    log = tmp_path / "traces.log"
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(redis_url)
    slow = {"ATTRGRAPH_FAKE_STEPS": "100", "ATTRGRAPH_FAKE_STEP_S": "0.05"}
    first = worker_process(settings, log, **slow)
    second = None
    try:
        with ApiServer(settings) as api, httpx.Client(base_url=api.url, timeout=30) as c:
            wait_until(lambda: c.get("/api/health").json()["workers"] == 1, timeout=30, what="worker up")
            job = c.post("/api/graphs", json={"prompt": "crash test"}).json()
            wait_until(
                lambda: (c.get(job["job_url"]).json()["percent"] or 0) > 5, timeout=20, what="progress"
            )
            first.send_signal(signal.SIGKILL)
            first.wait()
            # A running job outlives its worker for a moment, then a new worker takes it over.
            assert c.get(job["job_url"]).json()["state"] == "running"
            second = worker_process(settings, log, ATTRGRAPH_FAKE_STEPS="5")
            events = sse_events(c, job["events_url"])
            assert events[-1][0] == "done", events[-3:]
            assert [e for e, _ in events].count("started") == 2
            assert c.get(f"/api/graphs/{job['graph_id']}").status_code == 200
            assert [g["graph_id"] for g in c.get("/api/graphs").json()["graphs"]] == [job["graph_id"]]
        assert len(log.read_text().splitlines()) == 2  # started twice, stored once
        assert client.hlen(keys.graphs_sizes) == 1
        assert client.xpending(keys.queue("fake"), CONSUMER_GROUP)["pending"] == 0
        assert client.xlen(keys.queue("fake")) == 0
        assert client.get(keys.inflight(job["graph_id"])) is None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        client.close()
        clear_prefix(redis_url, settings.key_prefix)


def test_graceful_stop_hands_the_job_back(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, reclaim_after_s=30.0)  # only an explicit hand-back is fast
    log = tmp_path / "traces.log"
    first = worker_process(settings, log, ATTRGRAPH_FAKE_STEPS="200", ATTRGRAPH_FAKE_STEP_S="0.05")
    try:
        with ApiServer(settings) as api, httpx.Client(base_url=api.url, timeout=30) as c:
            wait_until(lambda: c.get("/api/health").json()["workers"] == 1, timeout=30, what="worker up")
            job = c.post("/api/graphs", json={"prompt": "handed back"}).json()
            wait_until(lambda: c.get(job["job_url"]).json()["state"] == "running", timeout=20, what="running")
            first.terminate()
            assert first.wait(timeout=10) == 0
            with WorkerThread(settings):
                events = sse_events(c, job["events_url"])
            assert "requeued" in [e for e, _ in events] and events[-1][0] == "done"
    finally:
        if first.poll() is None:
            first.kill()
        clear_prefix(redis_url, settings.key_prefix)


def test_graphs_survive_a_redis_restart(own_redis: RedisServer) -> None:
    settings = make_settings(own_redis.url)
    with ApiServer(settings) as api, WorkerThread(settings), httpx.Client(base_url=api.url, timeout=30) as c:
        saved = c.post("/api/graphs", json={"prompt": "keep me"}).json()
        cached = c.post("/api/graphs", json={"prompt": "cache me"}).json()
        sse_events(c, saved["events_url"])
        sse_events(c, cached["events_url"])

        async def pin() -> None:
            client = aioredis.Redis.from_url(own_redis.url)
            assert (
                await GraphStore(client, Keys(settings.key_prefix)).add_ref(saved["graph_id"], "share:abc")
                == 1
            )
            await client.aclose()

        asyncio.run(pin())
        before = c.get(f"/api/graphs/{saved['graph_id']}").content

        own_redis.kill()  # SIGKILL: only the AOF can bring the data back
        assert c.get(f"/api/graphs/{saved['graph_id']}").status_code == 503
        own_redis.start()

        wait_until(lambda: c.get(f"/api/graphs/{saved['graph_id']}").status_code == 200, what="API reconnect")
        assert c.get(f"/api/graphs/{saved['graph_id']}").content == before
        assert c.get(f"/api/graphs/{cached['graph_id']}").status_code == 200
        assert c.get(f"/api/graphs/{saved['graph_id']}/summary").json()["pinned"] is True
        # The worker reconnects too and computes new graphs.
        wait_until(lambda: c.get("/api/health").json()["workers"] == 1, what="worker re-registered")
        fresh = c.post("/api/graphs", json={"prompt": "after restart"}).json()
        assert sse_events(c, fresh["events_url"])[-1][0] == "done"


def test_a_job_interrupted_by_a_redis_blink_reruns_at_once(own_redis: RedisServer) -> None:
    """Redis restarts mid-job: the worker hands its job back as soon as Redis answers, instead of
    waiting out the reclaim time (30 s here)."""
    settings = make_settings(own_redis.url, reclaim_after_s=30.0)
    with (
        ApiServer(settings) as api,
        WorkerThread(settings) as worker,
        httpx.Client(base_url=api.url, timeout=30) as c,
    ):
        worker.tracer.steps, worker.tracer.step_s = 40, 0.05  # 2 s
        job = c.post("/api/graphs", json={"prompt": "blink"}).json()
        wait_until(lambda: c.get(f"/api/jobs/{job['job_id']}").json()["state"] == "running", what="running")
        own_redis.kill()
        time.sleep(6)  # longer than the clients' own retries: the job's next write fails
        own_redis.start()
        start = time.monotonic()
        wait_until(lambda: _state_or_none(c, job["job_id"]) == "done", timeout=20, what="the job to finish")
        assert time.monotonic() - start < 15


def _state_or_none(client: httpx.Client, job_id: str) -> str | None:
    response = client.get(f"/api/jobs/{job_id}")
    return str(response.json()["state"]) if response.status_code == 200 else None
