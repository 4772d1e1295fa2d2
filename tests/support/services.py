"""Test helpers: a private redis-server process, the API in a thread, a worker in a thread."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, Self, cast, overload

import httpx
import orjson
import redis
import uvicorn
from typing_extensions import TypeVar  # default=: PEP 696, in typing from 3.13

from attrgraph.api.app import create_app
from attrgraph.settings import DEFAULT_REDIS_URL, ModelSpec, Settings
from attrgraph.worker.fake_tracer import FakeTracer
from attrgraph.worker.loop import Worker
from attrgraph.worker.tracer import Tracer
from tests.support.environment import missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A redis-server of our own (free port, temp dir, AOF fsync on every write) that tests may
    kill and restart without disturbing anyone else's Redis."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, what="redis-server to start")
        # Loading the AOF: PING answers only once it is loaded, but be explicit.
        wait_until(lambda: client.info("persistence")["loading"] == 0, what="AOF load")
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save; only what the AOF already holds survives."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class ApiServer:
    """The real app under uvicorn on a free port, in a thread (real HTTP: gzip, SSE, limits)."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self.thread.start()
        wait_until(lambda: self.server.started, what="uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


TracerT = TypeVar("TracerT", bound=Tracer, default=FakeTracer)


class WorkerThread(Generic[TracerT]):
    """A worker in a thread of the test process, on a FakeTracer unless given another Tracer."""

    @overload
    def __init__(self: WorkerThread[FakeTracer], settings: Settings) -> None: ...
    @overload
    def __init__(self, settings: Settings, backend: TracerT) -> None: ...
    def __init__(self, settings: Settings, backend: TracerT | None = None) -> None:
        # Without a backend the first overload made this a WorkerThread[FakeTracer].
        self.tracer: TracerT = backend if backend is not None else cast(TracerT, FakeTracer(settings))
        self.worker = Worker(settings, self.tracer, redis.Redis.from_url(settings.redis_url or ""))
        self.worker.poll_s = 0.1  # quick to stop at teardown
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        wait_until(self.worker.ready.is_set, what="worker ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=10)


def worker_process(settings: Settings, log_file: Path, **env: str) -> subprocess.Popen[bytes]:
    """`attrgraph worker` with the fake backend, as a real process (so it can be SIGKILLed)."""
    from attrgraph.serve import settings_env

    environment = settings_env(settings)
    environment.update(
        {
            "ATTRGRAPH_TRACER": "attrgraph.worker.fake_tracer:FakeTracer",
            "ATTRGRAPH_FAKE_LOG": str(log_file),
            **env,
        }
    )
    root = Path(__file__).resolve().parents[2]
    environment["PYTHONPATH"] = os.pathsep.join([str(root / "backend"), environment.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "attrgraph.service_cli", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@contextmanager
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


def existing_or_started_redis(tmp_dir: Path) -> Iterator[str]:
    """REDIS_URL (or the local default) when it answers, else a redis-server of our own in tmp_dir."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if redis_reachable(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        missing(f"no Redis answers at {url} and there is no redis-server binary to start one")
    server = RedisServer(tmp_dir).start()
    try:
        yield server.url
    finally:
        server.stop()


def make_settings(redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "key_prefix": f"test:{uuid.uuid4().hex[:12]}:",
        "heartbeat_s": 0.2,
        "reclaim_after_s": 5.0,  # tests about reclaiming set their own
        "rate_limit_per_minute": 10_000,
        "default_model": "fake",
        "tracer": "attrgraph.worker.fake_tracer:FakeTracer",
        "worker_call_timeout_s": 5.0,
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


def sse_events(client: httpx.Client, url: str) -> list[tuple[str, dict[str, Any]]]:
    """Read a Server-Sent Events stream until it closes."""
    events: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name or "message", orjson.loads(line[len("data: ") :])))
    return events


def torch_tracer_settings(redis_url: str, model: ModelSpec | None = None, **overrides: object) -> Settings:
    """Settings for a worker running the real torch tracer on the CPU: on `model` when given, else
    on the shipped demo model."""
    values: dict[str, object] = {
        "device": "cpu",
        "tracer": "attrgraph.worker.torch_tracer:TorchTracer",
        "default_model": model.name if model is not None else "demo",
    }
    if model is not None:
        values["worker_models"] = [model.model_dump()]
    values.update(overrides)
    return make_settings(redis_url, **values)
