"""A Redis restart under an idle API: the pooled connections the API kept are dead, and the first
command on each must be retried on a fresh connection instead of answering 503."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.services import ApiServer, RedisServer, clear_prefix, make_settings

N = 50


def _statuses(url: str, n: int) -> list[int]:
    # Concurrent, so the API holds many pooled connections, each of which the restart kills.
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(max_workers=10) as pool:
        paths = ["/api/models", "/api/graphs", "/api/jobs/" + "0" * 32] * n
        return list(pool.map(lambda p: client.get(p).status_code, paths[:n]))


def test_requests_after_a_redis_restart_all_succeed(own_redis: RedisServer) -> None:
    settings = make_settings(own_redis.url)
    with ApiServer(settings) as api:
        before = _statuses(api.url, N)
        assert all(s in (200, 404) for s in before), before
        own_redis.kill()
        own_redis.start()  # same port: the API's pooled sockets are now closed by the peer
        after = _statuses(api.url, N)
        assert [s for s in after if s >= 500] == [], after
    clear_prefix(own_redis.url, settings.key_prefix)
