"""Shared pytest setup: one CPU thread and fixed seeds (fast, deterministic), and tiny-model fixtures."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import torch

from attrgraph.settings import Settings
from tests.support import models as factories
from tests.support.browser import Service
from tests.support.environment import missing
from tests.support.services import (
    ApiServer,
    RedisServer,
    WorkerThread,
    clear_prefix,
    existing_or_started_redis,
    make_settings,
)

pytest_plugins = ["pytester"]  # tests/test_environment.py runs small pytest sessions

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`tiny_model_dir("gemma2")` -> a saved tiny model of that family (built once per session, default
    sizes and seed). Treat the directory as read-only; call `factories.make_tiny_model` for variants."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = factories.make_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_gguf_path(tiny_model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An F32 .gguf (alone in its directory) holding the weights of `tiny_model_dir("llama")`."""
    return factories.make_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf"), source=tiny_model_dir("llama"))


# --- the service: a real Redis, the API and a worker (fake tracer unless a test says otherwise) ----------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from existing_or_started_redis(tmp_path_factory.mktemp("redis"))


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
        missing("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


# --- the scripted Dallas service (page and browser tests), one per test package ----------------------


# Package scope, not session,: sync Playwright keeps an asyncio loop running in this thread, which
# breaks asyncio.run() in every later test until it is stopped.
@pytest.fixture(scope="package")
def browser_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from existing_or_started_redis(tmp_path_factory.mktemp("redis"))


@pytest.fixture(scope="package")
def service(browser_redis_url: str) -> Iterator[Service]:
    svc = Service(browser_redis_url)
    with svc.api, svc.worker:
        yield svc
    clear_prefix(browser_redis_url, svc.settings.key_prefix)
