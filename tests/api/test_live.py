"""Live streams (`/api/graphs/{id}/live`): one Redis subscriber per API process however many
viewers, a cap on streams, and clean ends when Redis fails."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import orjson

from attrgraph.settings import Settings
from tests.support.collab import TRANSCODERS, a_feature, store_example
from tests.support.services import ApiServer, RedisServer, http, make_settings, wait_until

USER = {"X-Attrgraph-User": "ada"}


def open_stream(port: int, graph_id: str) -> socket.socket:
    """A raw HTTP stream (cheaper than an httpx client per viewer), read up to its `ready` event."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(f"GET /api/graphs/{graph_id}/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    seen = b""
    while b"event: ready" not in seen:
        chunk = sock.recv(4096)
        assert chunk, seen
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200"), seen[:200]
    return sock


def read_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    seen = b""
    while marker not in seen:
        chunk = sock.recv(4096)
        if not chunk:
            break
        seen += chunk
    return seen


def test_300_streams_leave_every_other_endpoint_answering(api: str, settings: Settings) -> None:
    gid = store_example(settings)
    layer, index, _ = a_feature()
    port = int(api.rsplit(":", 1)[1])
    streams = [open_stream(port, gid) for _ in range(300)]
    try:
        with http(api) as client:
            for path in (
                "/api/health",
                "/api/models",
                f"/api/graphs/{gid}",
                f"/api/graphs/{gid}/summary",
                f"/api/graphs/{gid}/labels",
                f"/api/graphs/{gid}/notes",
                f"/api/labels/{TRANSCODERS}/{layer}/{index}",
                "/api/graphs",
                "/api/me",
            ):
                response = client.get(path)
                assert response.status_code == 200, (path, response.text)
            url = f"/api/labels/{TRANSCODERS}/{layer}/{index}"
            put = client.put(url, json={"value": "all", "version": 0}, headers=USER)
            assert put.status_code == 200, put.text
            # The label reaches every viewer, through the one subscription.
            for sock in (streams[0], streams[150], streams[-1]):
                assert b'"value":"all"' in read_until(sock, b'"value":"all"')
    finally:
        for sock in streams:
            sock.close()


def test_stream_cap_answers_503(redis_url: str) -> None:
    settings = make_settings(redis_url, max_live_streams=2)
    gid = store_example(settings)
    with ApiServer(settings) as server:
        port = server.port
        first, second = open_stream(port, gid), open_stream(port, gid)
        try:
            refused = httpx.get(f"{server.url}/api/graphs/{gid}/live", timeout=10)
            assert refused.status_code == 503 and "Retry-After" in refused.headers
            assert "live streams" in refused.json()["detail"]
        finally:
            first.close()
            second.close()
        # Closed streams give their places back.
        wait_until(lambda: _opens(server.url, gid), timeout=10, what="a free stream slot")


def _opens(url: str, gid: str) -> bool:
    with httpx.stream("GET", f"{url}/api/graphs/{gid}/live", timeout=10) as response:
        return response.status_code == 200


def test_redis_failure_ends_streams_cleanly_and_they_come_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    settings = make_settings(server.url)
    gid = store_example(settings)
    ended = threading.Event()
    events: list[str] = []
    errors: list[BaseException] = []
    try:
        with ApiServer(settings) as api:

            def listen() -> None:
                try:
                    with httpx.stream("GET", f"{api.url}/api/graphs/{gid}/live", timeout=30) as response:
                        for line in response.iter_lines():  # a truncated chunked body raises here
                            if line.startswith("event: "):
                                events.append(line[7:])
                except BaseException as exc:  # reported by the assertion below
                    errors.append(exc)
                ended.set()

            thread = threading.Thread(target=listen, daemon=True)
            thread.start()
            wait_until(lambda: events, what="the ready event")
            server.kill()
            assert ended.wait(10), "the stream did not end when Redis died"
            assert errors == [] and events == ["ready"]
            down = httpx.get(f"{api.url}/api/graphs/{gid}/live", timeout=15)
            assert down.status_code == 503, down.text
            server.start()
            wait_until(lambda: _opens(api.url, gid), timeout=15, what="live updates after the restart")
            layer, index, _ = a_feature()
            with httpx.stream("GET", f"{api.url}/api/graphs/{gid}/live", timeout=10) as response:
                lines = response.iter_lines()
                assert next(lines) == "event: ready"
                start = time.monotonic()
                httpx.put(
                    f"{api.url}/api/labels/{TRANSCODERS}/{layer}/{index}",
                    json={"value": "back", "version": 0},
                    headers=USER,
                )
                for line in lines:
                    if line.startswith("data: ") and orjson.loads(line[6:]).get("value") == "back":
                        break
                assert time.monotonic() - start < 5
    finally:
        server.stop()
