"""Limits and errors: every bad request gets a 4xx (or a 503 with Retry-After), never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from tests.support.services import ApiServer, WorkerThread, clear_prefix, free_port, make_settings


def test_validation_errors_name_the_field(api: str, worker: WorkerThread) -> None:
    with httpx.Client(base_url=api) as c:
        reply = c.post("/api/graphs", json={"prompt": "x", "settings": {"max_n_logits": 0}})
        assert reply.status_code == 422
        assert reply.json()["detail"][0]["loc"] == ["body", "settings", "max_n_logits"]
        reply = c.post("/api/graphs", json={"prompt": "x", "settings": {"max_n_logitz": 3}})
        assert reply.status_code == 422 and reply.json()["detail"][0]["loc"][-1] == "max_n_logitz"
        reply = c.post("/api/graphs", json={"prompt": "x", "settings": {"max_feature_nodes": 10**9}})
        assert reply.status_code == 422
        assert reply.json()["detail"][0]["loc"] == ["body", "settings", "max_feature_nodes"]
        reply = c.post(
            "/api/graphs", json={"prompt": "x", "target": {"tokens": ["a"], "logit_diff": ["a", "b"]}}
        )
        assert reply.status_code == 422
        assert c.post("/api/graphs", json={"prompt": ""}).status_code == 422
        assert (
            c.post(
                "/api/graphs", content=b"{not json", headers={"content-type": "application/json"}
            ).status_code
            == 422
        )
        # The worker's tokenizer rejects it: still a 422 on the prompt field.
        reply = c.post("/api/graphs", json={"prompt": "a <reject> b"})
        assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_unknown_model_and_transcoders(api: str, worker: WorkerThread) -> None:
    assert httpx.post(f"{api}/api/graphs", json={"prompt": "x", "model": "gpt-17"}).status_code == 404
    assert httpx.post(f"{api}/api/graphs", json={"prompt": "x", "transcoders": "nope"}).status_code == 404
    assert httpx.post(f"{api}/api/tokenize", json={"prompt": "x", "model": "gpt-17"}).status_code == 404
    assert httpx.get(f"{api}/api/graphs/{'a' * 32}").status_code == 404


def test_prompt_token_limit_and_body_size(redis_url: str) -> None:
    settings = make_settings(redis_url, max_prompt_tokens=3, max_request_bytes=2048)
    with ApiServer(settings) as api, WorkerThread(settings), httpx.Client(base_url=api.url) as c:
        reply = c.post("/api/graphs", json={"prompt": "one two three four"})
        assert reply.status_code == 422 and "at most 3" in reply.json()["detail"][0]["msg"]
        assert c.post("/api/graphs", json={"prompt": "one two three"}).status_code == 202
        assert c.post("/api/graphs", json={"prompt": "x" * 5000}).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies to what is streamed
            for _ in range(10):
                yield b" " * 1000

        assert (
            c.post(
                "/api/tokenize", content=chunks(), headers={"content-type": "application/json"}
            ).status_code
            == 413
        )
    clear_prefix(redis_url, settings.key_prefix)


def test_rate_limit_counts_new_graphs_only(redis_url: str) -> None:
    settings = make_settings(redis_url, rate_limit_per_minute=2)
    with ApiServer(settings) as api, WorkerThread(settings), httpx.Client(base_url=api.url) as c:
        first = c.post("/api/graphs", json={"prompt": "a"})
        c.get(first.json()["events_url"])  # wait for it
        assert c.post("/api/graphs", json={"prompt": "a"}).status_code == 200  # cached: free
        assert c.post("/api/graphs", json={"prompt": "b"}).status_code == 202
        limited = c.post("/api/graphs", json={"prompt": "c"})
        assert limited.status_code == 429 and 0 < int(limited.headers["Retry-After"]) <= 61
        assert c.post("/api/graphs", json={"prompt": "a"}).status_code == 200  # cached still served
    clear_prefix(redis_url, settings.key_prefix)


def test_no_worker_and_no_redis_are_503(redis_url: str) -> None:
    # No default model configured (a request for it would wait in the queue: test_default_model_queue).
    settings = make_settings(redis_url, default_model=None)
    with ApiServer(settings) as api:
        reply = httpx.post(f"{api.url}/api/graphs", json={"prompt": "x"})
        assert reply.status_code == 503 and "Retry-After" in reply.headers
    dead = make_settings(f"redis://127.0.0.1:{free_port()}/0")
    with ApiServer(dead) as api:
        for method, path in (
            ("GET", "/api/models"),
            ("GET", f"/api/graphs/{'a' * 32}"),
            ("GET", "/api/health"),
        ):
            reply = httpx.request(method, api.url + path)
            assert reply.status_code == 503 and reply.headers["Retry-After"] == "5", (path, reply.text)
        assert httpx.post(api.url + "/api/graphs", json={"prompt": "x"}).status_code == 503


def test_lone_surrogates_are_422_not_500(api: str, worker: WorkerThread) -> None:
    # Valid JSON, but not encodable text: every layer below (hashing, tokenizers, orjson) would fail.
    bodies = [
        (b'{"prompt": "a\\ud800b"}', "/api/graphs"),
        (b'{"prompt": "a\\ud800b"}', "/api/tokenize"),
        (b'{"prompt": "ok", "target": {"tokens": ["\\udfff"]}}', "/api/graphs"),
    ]
    for body, path in bodies:
        reply = httpx.post(api + path, content=body, headers={"content-type": "application/json"})
        assert reply.status_code == 422, reply.text
        assert reply.json()["detail"][0]["loc"][:2] in (["body", "prompt"], ["body", "target"])


def test_strict_types(api: str, worker: WorkerThread) -> None:
    for settings in ({"max_feature_nodes": True}, {"max_n_logits": "5"}, {"desired_logit_prob": True}):
        reply = httpx.post(f"{api}/api/graphs", json={"prompt": "x", "settings": settings})
        assert reply.status_code == 422, settings


def test_tokenize_is_rate_limited(redis_url: str) -> None:
    settings = make_settings(redis_url, tokenize_rate_per_minute=3)
    with ApiServer(settings) as api, WorkerThread(settings), httpx.Client(base_url=api.url) as c:
        codes = [c.post("/api/tokenize", json={"prompt": f"p{n}"}).status_code for n in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = c.post("/api/tokenize", json={"prompt": "x"})
        assert "rate limit" in limited.json()["detail"] and 0 < int(limited.headers["Retry-After"]) <= 61
    clear_prefix(redis_url, settings.key_prefix)


def test_spoofed_forwarded_for_does_not_bypass_the_rate_limit(redis_url: str) -> None:
    """uvicorn (as ApiServer runs it, with its default --proxy-headers) rewrites the client address
    of a 127.0.0.1 connection from X-Forwarded-For; a server that does not trust forwarding must not
    give each made-up address its own count."""
    settings = make_settings(redis_url, rate_limit_per_minute=2)
    assert not settings.trust_forwarded_for
    with ApiServer(settings) as api, WorkerThread(settings), httpx.Client(base_url=api.url) as c:
        codes = [
            c.post(
                "/api/graphs", json={"prompt": f"spoof {n}"}, headers={"X-Forwarded-For": f"10.0.0.{n}"}
            ).status_code
            for n in range(4)
        ]
        assert codes[:2] == [202, 202] and codes[2:] == [429, 429]
    trusted = make_settings(redis_url, rate_limit_per_minute=2, trust_forwarded_for=True)
    with ApiServer(trusted) as api, WorkerThread(trusted), httpx.Client(base_url=api.url) as c:
        codes = [
            c.post(
                "/api/graphs", json={"prompt": f"proxied {n}"}, headers={"X-Forwarded-For": f"10.0.0.{n}"}
            ).status_code
            for n in range(4)
        ]
        assert codes == [202] * 4  # behind a trusted proxy each client is counted on its own
    clear_prefix(redis_url, settings.key_prefix)
    clear_prefix(redis_url, trusted.key_prefix)
