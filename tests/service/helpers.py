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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn

from attrgraph.service.api.main import create_app
from attrgraph.service.settings import Settings
from attrgraph.service.testing import FakeBackend
from attrgraph.service.worker import Worker


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


class WorkerThread:
    def __init__(self, settings: Settings, backend: FakeBackend | None = None) -> None:
        self.backend = backend or FakeBackend(settings)
        self.worker = Worker(settings, self.backend, redis.Redis.from_url(settings.redis_url or ""))
        self.worker.poll_s = 0.1  # quick to stop at teardown
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        wait_until(self.worker.ready.is_set, what="worker ready")
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=10)


def worker_process(settings: Settings, log_file: Path, **env: str) -> subprocess.Popen[bytes]:
    """`attrgraph worker` with the fake backend, as a real process (so it can be SIGKILLed)."""
    from attrgraph.service.serve import settings_env

    environment = settings_env(settings)
    environment.update(
        {
            "ATTRGRAPH_BACKEND": "attrgraph.service.testing:FakeBackend",
            "ATTRGRAPH_FAKE_LOG": str(log_file),
            **env,
        }
    )
    root = Path(__file__).resolve().parents[2]
    environment["PYTHONPATH"] = os.pathsep.join([str(root / "backend"), environment.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "attrgraph.service.cli", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@contextmanager
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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
        pytest.skip("no Redis reachable and no redis-server binary to start one")
    server = RedisServer(tmp_dir).start()
    try:
        yield server.url
    finally:
        server.stop()
