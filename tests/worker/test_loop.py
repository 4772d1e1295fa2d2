"""The worker loop: every kind of job has a handler, and a record it cannot read fails that job
instead of the worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import get_args

import orjson
import pytest
import redis

from attrgraph.protocol.keys import Keys
from attrgraph.protocol.records import JobRecord, TracePayload, text
from attrgraph.protocol.schemas import GraphSettings, JobKind
from attrgraph.settings import Settings
from attrgraph.worker.loop import JOB_HANDLERS
from tests.support.services import WorkerThread, clear_prefix, make_settings, wait_until


def test_every_job_kind_has_a_handler() -> None:
    assert set(JOB_HANDLERS) == set(get_args(JobKind))


@pytest.fixture
def settings(redis_url: str) -> Iterator[Settings]:
    s = make_settings(redis_url)
    yield s
    clear_prefix(redis_url, s.key_prefix)


def _enqueue(client: redis.Redis, keys: Keys, job_id: str, fields: dict[str, str]) -> None:
    """What JobQueue.submit leaves behind, written directly (the worker cannot tell the difference)."""
    client.hset(keys.job(job_id), mapping=fields)  # type: ignore[arg-type]  # first: a worker may read it at once
    entry = client.xadd(keys.queue("fake"), {"job": job_id})
    client.hset(keys.job(job_id), "entry_id", text(entry))


def test_an_unreadable_record_fails_its_job_and_the_worker_goes_on(settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url or "")
    old_id, new_id = "0" * 31 + "1", "0" * 31 + "2"
    with WorkerThread(settings) as worker:
        # A job as an older version wrote it: its graph id in graph_id, a spec, no payload.
        spec = {"model": "fake", "transcoders": "fake-tc", "prompt": "old", "token_ids": [1]}
        _enqueue(
            client,
            keys,
            old_id,
            {"job_id": old_id, "state": "queued", "graph_id": "a" * 32, "spec": orjson.dumps(spec).decode()},
        )
        payload = TracePayload(
            model="fake", transcoders="fake-tc", prompt="new job", token_ids=[1, 2], settings=GraphSettings()
        )
        job = JobRecord(
            job_id=new_id, state="queued", result_id="b" * 32, payload=payload, created_at=time.time()
        )
        _enqueue(client, keys, new_id, job.to_hash())

        wait_until(lambda: client.hget(keys.job(new_id), "state") == b"done", what="the next job done")
        assert client.hget(keys.job(old_id), "state") == b"failed"
        assert b"unreadable job record" in (client.hget(keys.job(old_id), "error") or b"")
        assert client.exists(keys.graph("b" * 32))
        assert client.xlen(keys.queue("fake")) == 0  # both entries acknowledged and removed
        assert worker.thread.is_alive() and worker.tracer.traces == 1
    client.close()
