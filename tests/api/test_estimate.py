"""The worker's memory estimate: shown in /api/tokenize, and a request it cannot fit is 4xx, not queued.

The fake backend's estimate is FAKE_BYTES_PER_NODE_TOKEN per feature node and token, against
ATTRGRAPH_MEMORY_LIMIT_BYTES (Settings.memory_limit_bytes), which the worker also advertises.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from attrgraph.protocol.keys import Keys
from attrgraph.settings import Settings
from attrgraph.worker.fake_tracer import FAKE_BYTES_PER_NODE_TOKEN
from tests.support.services import ApiServer, WorkerThread, clear_prefix, make_settings

NODES = 100
LIMIT = FAKE_BYTES_PER_NODE_TOKEN * NODES * 10  # ten tokens at 100 feature nodes fit, eleven do not


@pytest.fixture
def limited(redis_url: str) -> Iterator[tuple[str, Settings]]:
    settings = make_settings(redis_url, memory_limit_bytes=LIMIT, max_feature_nodes=NODES)
    with ApiServer(settings) as api, WorkerThread(settings):
        yield api.url, settings
    clear_prefix(redis_url, settings.key_prefix)


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_tokenize_returns_the_estimate(limited: tuple[str, Settings]) -> None:
    api, _ = limited
    body = httpx.post(api + "/api/tokenize", json={"prompt": words(4), "top_k": 2}).json()
    estimate = body["estimate"]
    assert estimate["peak_bytes"] == FAKE_BYTES_PER_NODE_TOKEN * NODES * 4
    assert estimate["fits"] is True and estimate["budget_bytes"] == LIMIT
    assert estimate["seconds"] > 0
    big = httpx.post(api + "/api/tokenize", json={"prompt": words(11), "top_k": 0}).json()
    assert big["estimate"]["fits"] is False
    assert "max_feature_nodes" in big["estimate"]["advice"]


def test_the_worker_advertises_its_budget(limited: tuple[str, Settings]) -> None:
    api, _ = limited
    (model,) = httpx.get(api + "/api/models").json()["models"]
    assert model["memory_budget_bytes"] == LIMIT


def test_a_trace_that_cannot_fit_is_422_with_the_estimate_and_not_queued(
    limited: tuple[str, Settings],
) -> None:
    api, settings = limited
    reply = httpx.post(api + "/api/graphs", json={"prompt": words(11)})
    assert reply.status_code == 422, reply.text
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["body", "settings", "max_feature_nodes"]
    assert "more than the" in error["msg"] and "lower max_feature_nodes" in error["msg"]
    assert error["input"]["peak_bytes"] == FAKE_BYTES_PER_NODE_TOKEN * NODES * 11
    assert error["input"]["fits"] is False
    client = redis.Redis.from_url(settings.redis_url or "")
    assert client.xlen(Keys(settings.key_prefix).queue("fake")) == 0  # nothing was queued
    client.close()
    # Fewer feature nodes fit: the message's advice works.
    smaller = httpx.post(
        api + "/api/graphs", json={"prompt": words(11), "settings": {"max_feature_nodes": 50}}
    )
    assert smaller.status_code in (200, 202), smaller.text
    fits = httpx.post(api + "/api/graphs", json={"prompt": words(10)})
    assert fits.status_code in (200, 202), fits.text


def test_without_a_budget_nothing_is_refused(api: str, worker: WorkerThread) -> None:
    body = httpx.post(api + "/api/tokenize", json={"prompt": words(200), "top_k": 0}).json()
    assert body["estimate"]["fits"] is None
    assert httpx.post(api + "/api/graphs", json={"prompt": words(30)}).status_code in (200, 202)
