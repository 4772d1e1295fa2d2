"""POST /api/tokenize: text or chat prompts, and the prompt limit (the server's or the model's context)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from attrgraph.settings import Settings
from attrgraph.worker.torch_tracer import TorchTracer
from tests.support.services import ApiServer, WorkerThread, clear_prefix, http, torch_tracer_settings

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two"}]


def test_a_chat_is_rendered_by_the_worker(api: str, worker: WorkerThread) -> None:
    with http(api) as client:
        reply = client.post("/api/tokenize", json={"prompt": CHAT, "top_k": 2})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        # The fake backend's template: "role: content" lines, then the reply's opening.
        assert body["text"] == "system: Be brief.\nuser: one two\nassistant:"
        assert [t["text"] for t in body["tokens"]] == [
            "system:",
            "Be",
            "brief.",
            "user:",
            "one",
            "two",
            "assistant:",
        ]
        assert len(body["predictions"]) == 2
        plain = client.post("/api/tokenize", json={"prompt": "one two", "top_k": 0}).json()
        assert plain["text"] == "one two" and plain["predictions"] == []


@pytest.mark.parametrize(
    ("prompt", "where"),
    [
        ([], ["body", "prompt"]),
        ([{"role": "user"}], ["body", "prompt"]),
        ([{"role": "user", "content": "hi", "name": "bob"}], ["body", "prompt"]),
        ([{"role": "no spaces allowed", "content": "hi"}], ["body", "prompt"]),
        ([{"role": "user", "content": 3}], ["body", "prompt"]),
        (3, ["body", "prompt"]),
        ("", ["body", "prompt"]),
    ],
)
def test_malformed_prompts_are_422(api: str, worker: WorkerThread, prompt: Any, where: list[str]) -> None:
    reply = httpx.post(api + "/api/tokenize", json={"prompt": prompt})
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["loc"][:2] == where


def test_a_chat_the_worker_refuses_is_422_with_its_message(api: str, worker: WorkerThread) -> None:
    reply = httpx.post(api + "/api/tokenize", json={"prompt": [{"role": "user", "content": "<reject>"}]})
    assert reply.status_code == 422
    assert "rejected by the fake backend" in reply.json()["detail"][0]["msg"]


# --- the real demo model: a 96-token context, no chat template -------------------------------------


@pytest.fixture(scope="module")
def demo_settings(redis_url: str) -> Iterator[Settings]:
    settings = torch_tracer_settings(redis_url, warmup=False)
    yield settings
    clear_prefix(redis_url, settings.key_prefix)


@pytest.fixture(scope="module")
def demo_api(demo_settings: Settings) -> Iterator[str]:
    with ApiServer(demo_settings) as api, WorkerThread(demo_settings, TorchTracer(demo_settings)):
        yield api.url


LONG = " ".join(["the"] * 120)  # 121 tokens with BOS


def test_the_demo_advertises_its_context(demo_api: str) -> None:
    (model,) = httpx.get(demo_api + "/api/models").json()["models"]
    assert model["context_length"] == 96 and model["chat_template"] is False


@pytest.mark.parametrize("top_k", [0, 8])
def test_a_prompt_longer_than_the_context_is_422_in_the_preview(demo_api: str, top_k: int) -> None:
    reply = httpx.post(demo_api + "/api/tokenize", json={"prompt": LONG, "top_k": top_k}, timeout=30)
    assert reply.status_code == 422, reply.text
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["body", "prompt"]
    assert error["msg"] == "the prompt has 121 tokens; this server traces at most 96 (the model's context)"
    fits = httpx.post(
        demo_api + "/api/tokenize", json={"prompt": "the capital of", "top_k": top_k}, timeout=30
    )
    assert fits.status_code == 200 and fits.json()["max_prompt_tokens"] == 96
    assert len(fits.json()["predictions"]) == top_k  # the worker is still answering


def test_a_prompt_longer_than_the_context_is_422_when_submitted(demo_api: str) -> None:
    reply = httpx.post(demo_api + "/api/graphs", json={"prompt": LONG}, timeout=30)
    assert reply.status_code == 422
    assert "121 tokens; this server traces at most 96" in reply.json()["detail"][0]["msg"]


def test_a_chat_for_a_model_without_a_template_is_422(demo_api: str) -> None:
    for path in ("/api/tokenize", "/api/graphs"):
        reply = httpx.post(demo_api + path, json={"prompt": CHAT}, timeout=30)
        assert reply.status_code == 422, reply.text
        assert "this model has no chat template" in reply.json()["detail"][0]["msg"]
