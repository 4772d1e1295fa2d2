"""Cached-graph fetch latency under concurrent clients, against the floor of a raw Redis GET.

    python bench/service_fetch.py [--clients 50] [--requests 20] [--nodes 3000] [--write-doc]

A synthetic graph of about 3k nodes is stored the way a worker stores it (gzip JSON), the API runs
under uvicorn in its own process, and 50 concurrent clients fetch it (`Accept-Encoding: gzip`, body
read in full, not decompressed). The floor: the same 50 clients doing a raw Redis GET of the very
same bytes, in the same run. Goal: API p99 <= 3x floor p99.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import time
import uuid

import redis
import redis.asyncio as aioredis

from attrgraph.format.synthetic import synthetic_graph
from attrgraph.protocol import stored_graph
from attrgraph.protocol.keys import Keys
from attrgraph.protocol.store import GraphWriter
from service_common import api_process, percentile, redis_server, write_section


async def _clients(n_clients: int, n_requests: int, one_request) -> list[float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []

    async def client(i: int) -> None:
        for _ in range(n_requests):
            started = time.perf_counter()
            await one_request(i)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(i) for i in range(n_clients)))
    return latencies


async def measure_redis(url: str, key: str, n_clients: int, n_requests: int, size: int) -> list[float]:
    client = aioredis.Redis.from_url(url, max_connections=n_clients)

    async def get(_: int) -> None:
        data = await client.get(key)
        assert data is not None and len(data) == size

    await _clients(n_clients, 2, get)  # warm up the pool
    latencies = await _clients(n_clients, n_requests, get)
    await client.aclose()
    return latencies


class RawHttpClient:
    """A minimal keep-alive HTTP/1.1 GET client on asyncio streams.

    httpx's connection pool costs far more CPU per request than the server does at 50 connections
    on a small machine, which would make this a benchmark of the client. A lean client on each side
    (this, and redis-py's for the floor) keeps the comparison about the server.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: str = "") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        pairs = (line.partition(":") for line in lines[1:] if line)
        fields = {name.strip().lower(): value.strip() for name, _, value in pairs}
        body = await self.reader.readexactly(int(fields["content-length"]))
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def measure_api(url: str, path: str, n_clients: int, n_requests: int, size: int) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    clients = [RawHttpClient(host, int(port)) for _ in range(n_clients)]

    async def fetch(i: int) -> None:
        status, body = await clients[i].get(path, "Accept-Encoding: gzip\r\n")
        assert status == 200 and len(body) == size

    await _clients(n_clients, 2, fetch)
    latencies = await _clients(n_clients, n_requests, fetch)
    for client in clients:
        client.close()
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": sum(latencies) / len(latencies) * 1000,
        "n": len(latencies),
    }


def _uvicorn_stack() -> str:
    # What `uvicorn` picks by default: uvloop and httptools when installed (uvicorn[standard]).
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--links-per-node", type=int, default=20)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="uvicorn on asyncio + h11")
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()

    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    keys = Keys(prefix)
    tokens = [f"t{i}" for i in range(12)]
    document = synthetic_graph(
        "benchmark prompt",
        tokens,
        n_features=args.nodes - len(tokens) - 1,
        links_per_node=args.links_per_node,
    )
    meta, gz, nodes = stored_graph.encode(document, graph_id="b" * 32, model="fake", transcoders="fake-tc")
    raw_size = len(stored_graph.decompress(gz))
    with redis_server() as url:
        sync = redis.Redis.from_url(url)
        GraphWriter(sync, keys, cache_bytes=1 << 34).put(meta, gz, nodes)
        try:
            server_args = ("--loop", "asyncio", "--http", "h11") if args.plain else ()
            with api_process(url, prefix, args.api_workers, server_args) as api:
                key, path = keys.graph(meta.graph_id), f"/api/graphs/{meta.graph_id}"
                load = (args.clients, args.requests, len(gz))
                floor = asyncio.run(measure_redis(url, key, *load))
                served = asyncio.run(measure_api(api, path, *load))
                floor_again = asyncio.run(measure_redis(url, key, *load))
                # One client alone: the unloaded latency of each path.
                alone = (1, 50, len(gz))
                floor_alone = asyncio.run(measure_redis(url, key, *alone))
                served_alone = asyncio.run(measure_api(api, path, *alone))
        finally:
            for key in sync.scan_iter(match=f"{prefix}*"):
                sync.delete(key)
    floor_all = floor + floor_again  # before and after the API run: the floor under the same conditions
    result = {
        "graph": {
            "nodes": meta.n_nodes,
            "links": meta.n_links,
            "json_bytes": raw_size,
            "gzip_bytes": len(gz),
        },
        "clients": args.clients,
        "requests_per_client": args.requests,
        "api_workers": args.api_workers,
        "redis_get": summary(floor_all),
        "api_fetch": summary(served),
        "redis_get_1_client": summary(floor_alone),
        "api_fetch_1_client": summary(served_alone),
        "server": "asyncio + h11" if args.plain else _uvicorn_stack(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    result["p99_ratio"] = result["api_fetch"]["p99_ms"] / result["redis_get"]["p99_ms"]
    print(json.dumps(result, indent=2))
    if args.write_doc:
        g, f, a = result["graph"], result["redis_get"], result["api_fetch"]
        f1, a1 = result["redis_get_1_client"], result["api_fetch_1_client"]
        write_section(
            "fetch",
            f"""
### Cached-graph fetch latency (`bench/service_fetch.py`)

A {g["nodes"]}-node, {g["links"]}-link graph ({g["json_bytes"] / 1e6:.1f} MB JSON,
{g["gzip_bytes"] / 1e6:.2f} MB gzip as stored and sent), {args.clients} concurrent clients x
{args.requests} requests each; the API as one uvicorn process on {result["server"]}, Redis and the
clients all on one machine ({result["machine"]}). Floor: the same clients doing a raw Redis GET of
the same bytes in the same run. Clients are lean keep-alive HTTP/1.1 and redis-py connections.

| | p50 | p99 | mean |
|---|---|---|---|
| raw Redis GET (floor) | {f["p50_ms"]:.1f} ms | {f["p99_ms"]:.1f} ms | {f["mean_ms"]:.1f} ms |
| `GET /api/graphs/{{id}}` | {a["p50_ms"]:.1f} ms | {a["p99_ms"]:.1f} ms | {a["mean_ms"]:.1f} ms |
| raw Redis GET, 1 client | {f1["p50_ms"]:.1f} ms | {f1["p99_ms"]:.1f} ms | {f1["mean_ms"]:.1f} ms |
| API, 1 client | {a1["p50_ms"]:.1f} ms | {a1["p99_ms"]:.1f} ms | {a1["mean_ms"]:.1f} ms |

API p99 / floor p99 = **{result["p99_ratio"]:.2f}x** (goal: at most 3x).
""",
        )


if __name__ == "__main__":
    main()
