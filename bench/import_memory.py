"""Memory of the API process while it imports big graphs (POST /api/imports).

Starts Redis ($REDIS_URL or a private redis-server) and the API under uvicorn in its own process,
measures the API's resident memory at rest (the baseline), then POSTs a generated graph of about
55 MB once, then three different ones at once, sampling every 10 ms the API's RSS and the peak RSS
(VmHWM) of each import child it starts. Reports the API's peak and retained RSS above the baseline
and the children's peaks.

    python bench/import_memory.py                # prints the table
    python bench/import_memory.py --write        # and puts it into docs/benchmarks.md
    python bench/import_memory.py --mb 20        # a smaller graph

Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis

from attrgraph.format.synthetic import synthetic_graph
from service_common import free_port, redis_server, wait_for, write_section

MB = 1024 * 1024
TOKENS = [f" tok{i}" for i in range(48)]
LINKS_PER_NODE = 20
BYTES_PER_FEATURE = 1_366  # measured: synthetic graphs at LINKS_PER_NODE links per node


def _status_kb(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


@dataclass
class Sampler:
    """The API's RSS and its children's peak RSS, every `interval_s`, in a thread."""

    pid: int
    interval_s: float = 0.01
    api_peak_kb: int = 0
    child_peaks_kb: dict[int, int] = field(default_factory=dict)
    most_children: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            self.api_peak_kb = max(self.api_peak_kb, _status_kb(self.pid, "VmRSS") or 0)
            children = _children(self.pid)
            self.most_children = max(self.most_children, len(children))
            for child in children:
                peak = _status_kb(child, "VmHWM")
                if peak is not None:
                    self.child_peaks_kb[child] = max(self.child_peaks_kb.get(child, 0), peak)
            time.sleep(self.interval_s)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


@contextmanager
def api(redis_url: str, prefix: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "ATTRGRAPH_KEY_PREFIX": prefix}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "attrgraph.api.app:create_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/api/health").status_code == 200, what="API")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait()


def make_graphs(mb: float, count: int) -> list[bytes]:
    """`count` graphs of about `mb` MB each, differing in their prompt (distinct graph ids)."""
    n_features = max(100, int(mb * MB / BYTES_PER_FEATURE))
    graph = synthetic_graph(
        "a prompt " * 24, TOKENS, n_features=n_features, links_per_node=LINKS_PER_NODE, scan="bench-model"
    )
    out = []
    for k in range(count):
        graph["metadata"]["prompt"] = f"import benchmark graph {k}"
        out.append(orjson.dumps(graph))
    return out


def post(url: str, body: bytes) -> tuple[int, float]:
    started = time.monotonic()
    reply = httpx.post(
        url + "/api/imports", content=body, headers={"Content-Type": "application/json"}, timeout=600
    )
    if reply.status_code not in (200, 201):
        raise RuntimeError(f"import failed: {reply.status_code} {reply.text[:300]}")
    return reply.status_code, time.monotonic() - started


def measure(url: str, pid: int, bodies: list[bytes], baseline_kb: int) -> dict[str, float]:
    sampler = Sampler(pid)
    started = time.monotonic()
    with sampler.running(), ThreadPoolExecutor(len(bodies)) as pool:
        list(pool.map(lambda b: post(url, b), bodies))
    seconds = time.monotonic() - started
    time.sleep(1.0)  # let the event loop settle before reading what the API kept
    retained_kb = (_status_kb(pid, "VmRSS") or 0) - baseline_kb
    return {
        "imports": len(bodies),
        "seconds": seconds,
        "api_peak_mb": (sampler.api_peak_kb - baseline_kb) / 1024,
        "api_retained_mb": retained_kb / 1024,
        "child_peak_mb": max(sampler.child_peaks_kb.values(), default=0) / 1024,
        "children_at_once": sampler.most_children,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=55.0, help="size of each generated graph (MB)")
    parser.add_argument("--write", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()

    bodies = make_graphs(args.mb, 4)
    size_mb = len(bodies[0]) / MB
    print(f"graph: {size_mb:.1f} MB", flush=True)
    prefix = f"bench-import:{uuid.uuid4().hex[:8]}:"
    with redis_server() as redis_url, api(redis_url, prefix) as (url, pid):
        for _ in range(20):  # warm: imports, the Redis pool, the routes
            httpx.get(url + "/api/models")
        baseline_kb = _status_kb(pid, "VmRSS") or 0
        rows = [measure(url, pid, bodies[:1], baseline_kb), measure(url, pid, bodies[1:], baseline_kb)]
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    table = [
        f"Command: `python bench/import_memory.py` (a synthetic graph of {size_mb:.1f} MB, "
        f"{len(TOKENS)} tokens, {LINKS_PER_NODE} links per node; the API under uvicorn, one process, "
        f"import_concurrency 1). API baseline RSS {baseline_kb / 1024:.0f} MB.",
        "",
        "| imports | seconds | API peak RSS above baseline | API RSS kept after | import child peak RSS "
        "| children at once |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        table.append(
            f"| {row['imports']} at once | {row['seconds']:.1f} | {row['api_peak_mb']:.0f} MB "
            f"| {row['api_retained_mb']:.0f} MB | {row['child_peak_mb']:.0f} MB | {row['children_at_once']} |"
        )
    markdown = "### Import memory (`bench/import_memory.py`)\n\n" + "\n".join(table)
    print(markdown)
    if args.write:
        write_section("import-memory", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
