"""Service tests run against a real Redis: $REDIS_URL, else 127.0.0.1:6379, else a redis-server
this session starts itself. Each test gets its own key prefix and removes its keys afterwards."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from attrgraph.service.settings import Settings
from tests.service.helpers import ApiServer, RedisServer, WorkerThread, existing_or_started_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from existing_or_started_redis(tmp_path_factory.mktemp("redis"))


def make_settings(redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "key_prefix": f"test:{uuid.uuid4().hex[:12]}:",
        "heartbeat_s": 0.2,
        "reclaim_after_s": 5.0,  # tests about reclaiming set their own
        "rate_limit_per_minute": 10_000,
        "default_model": "fake",
        "backend": "attrgraph.service.testing:FakeBackend",
        "rpc_timeout_s": 5.0,
        "predictions_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def clear_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def settings(redis_url: str) -> Iterator[Settings]:
    s = make_settings(redis_url)
    yield s
    clear_prefix(redis_url, s.key_prefix)


@pytest.fixture
def rclient(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url or "")
    yield client
    client.close()


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    with ApiServer(settings) as server:
        yield server.url


@pytest.fixture
def worker(settings: Settings) -> Iterator[WorkerThread]:
    with WorkerThread(settings) as w:
        yield w


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
