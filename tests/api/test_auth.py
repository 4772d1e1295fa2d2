"""Access control: tokens, read-only mode, display names, the write rate limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from attrgraph.api.auth import clean_name, parse_tokens
from attrgraph.settings import Settings
from tests.support.collab import TRANSCODERS, a_feature, store_example
from tests.support.services import ApiServer, clear_prefix, http, make_settings


@pytest.fixture
def server_with(redis_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, Settings]]:
    settings = make_settings(redis_url, **request.param)
    store_example(settings)
    with ApiServer(settings) as server:
        yield server.url, settings
    clear_prefix(redis_url, settings.key_prefix)


def label_url() -> str:
    layer, index, _ = a_feature()
    return f"/api/labels/{TRANSCODERS}/{layer}/{index}"


def test_parse_tokens_and_names() -> None:
    assert parse_tokens("alice:tok1, bob:tok2,broken,:x") == {"tok1": "alice", "tok2": "bob"}
    assert clean_name(None) == "anonymous" and clean_name("  Ada%20L\x07 ") == "Ada L"


@pytest.mark.parametrize("server_with", [{"tokens": "alice:tok1,bob:tok2"}], indirect=True)
def test_tokens_required_for_writes(server_with: tuple[str, Settings]) -> None:
    url, _ = server_with
    with http(url) as client:
        no_token = client.put(
            label_url(), json={"value": "x", "version": 0}, headers={"X-Attrgraph-User": "eve"}
        )
        assert no_token.status_code == 401
        wrong = client.put(
            label_url(), json={"value": "x", "version": 0}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 403
        assert client.post("/api/views", json={"graph_id": "c0ffee" + "0" * 26}).status_code == 401
        ok = client.put(
            label_url(), json={"value": "x", "version": 0}, headers={"Authorization": "Bearer tok2"}
        )
        assert ok.status_code == 200 and ok.json()["author"] == "bob"  # the token names the author
        assert client.get(label_url()).status_code == 200  # reads stay open
        me = client.get("/api/me", headers={"Authorization": "Bearer tok1"}).json()
        assert me == {"name": "alice", "can_write": True, "tokens": True, "read_only": False}
        assert client.get("/api/me").json()["can_write"] is False


@pytest.mark.parametrize("server_with", [{"read_only": True}], indirect=True)
def test_read_only(server_with: tuple[str, Settings]) -> None:
    url, _ = server_with
    with http(url) as client:
        assert client.put(label_url(), json={"value": "x", "version": 0}).status_code == 403
        assert client.get(label_url()).status_code == 200
        assert client.get("/api/me").json()["can_write"] is False


@pytest.mark.parametrize("server_with", [{"write_rate_per_minute": 3}], indirect=True)
def test_write_rate_limit(server_with: tuple[str, Settings]) -> None:
    url, _ = server_with
    with http(url) as client:
        codes = [client.put(label_url(), json={"value": f"v{n}", "version": n}).status_code for n in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429


@pytest.mark.parametrize("server_with", [{}], indirect=True)
def test_writes_from_a_foreign_origin_are_refused(server_with: tuple[str, Settings]) -> None:
    """Without tokens a browser sends writes on its own: every write (not only imports) checks that
    the Origin is this server and the Host one it answers to (no CSRF, no DNS rebinding)."""
    url, _ = server_with
    body = {"value": "x", "version": 0}
    with http(url) as client:
        foreign = client.put(label_url(), json=body, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "cross-origin" in foreign.json()["detail"]
        rebound = client.put(label_url(), json=body, headers={"Host": "evil.example"})
        assert rebound.status_code == 403 and "host" in rebound.json()["detail"]
        cancel = client.delete("/api/jobs/" + "0" * 32, headers={"Origin": "http://evil.example"})
        assert cancel.status_code == 403
        assert client.get(label_url()).json()["version"] == 0  # nothing was written
        same = client.put(label_url(), json=body, headers={"Origin": url})
        assert same.status_code == 200, same.text
        assert (
            client.put(label_url(), json={"value": "y", "version": 1}).status_code == 200
        )  # no Origin: curl


@pytest.mark.parametrize("server_with", [{"tokens": "alice:tok1"}], indirect=True)
def test_token_writes_need_no_origin_check(server_with: tuple[str, Settings]) -> None:
    url, _ = server_with
    with http(url) as client:
        reply = client.put(
            label_url(),
            json={"value": "x", "version": 0},
            headers={"Origin": "https://tool.example", "Authorization": "Bearer tok1"},
        )
        assert reply.status_code == 200
