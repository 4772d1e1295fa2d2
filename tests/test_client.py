"""The httpx scripting client against a live server."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from attrgraph.client import ApiError, AttrGraphClient, JobFailed
from tests.support.services import WorkerThread


def test_trace_wait_fetch(api: str, worker: WorkerThread) -> None:
    seen: list[str] = []
    with AttrGraphClient(api) as ag:
        graph = ag.trace("one two three", on_event=lambda event, data: seen.append(event))
        assert graph["metadata"]["prompt"] == "one two three"
        assert seen[-1] == "done" and "progress" in seen
        again = ag.submit("one two three")
        assert again.ready
        assert ag.node(again.graph_id, graph["nodes"][0]["node_id"])["node"] == graph["nodes"][0]
        assert ag.recent()[0]["graph_id"] == again.graph_id
        assert ag.models()["default_model"] == "fake"
        assert [t["text"] for t in ag.tokenize("a b", top_k=2)["tokens"]] == ["a", "b"]
        assert ag.feature("fake-tc", 0, 3)["index"] == 3


def test_failed_job_raises(api: str, worker: WorkerThread) -> None:
    worker.tracer.step_s = 0.2
    with AttrGraphClient(api) as ag:
        submission = ag.submit("slow job to cancel")
        assert submission.job_id is not None
        ag.cancel(submission.job_id)
        with pytest.raises(JobFailed) as failure:
            ag.wait(submission.job_id)
        assert failure.value.state == "cancelled"


def test_errors_carry_the_servers_message(api: str, worker: WorkerThread) -> None:
    with AttrGraphClient(api, retries=0) as ag:
        with pytest.raises(ApiError) as refused:
            ag.tokenize("a <reject> b")
        assert refused.value.status_code == 422
        assert refused.value.detail == "prompt: this prompt is rejected by the fake backend"
        assert "rejected by the fake backend" in str(refused.value)
        with pytest.raises(ApiError) as missing:
            ag.fetch("a" * 32)
        assert missing.value.status_code == 404 and missing.value.detail == f"no graph {'a' * 32}"
        assert isinstance(missing.value, httpx.HTTPStatusError)  # code catching httpx's error still works


def test_chat_prompts(api: str, worker: WorkerThread) -> None:
    chat = [{"role": "user", "content": "one two"}]
    with AttrGraphClient(api) as ag:
        assert ag.tokenize(chat, top_k=0)["text"] == "user: one two\nassistant:"
        assert ag.trace(chat)["metadata"]["prompt"] == "user: one two\nassistant:"


def _recording_client(bodies: list[dict[str, Any]]) -> AttrGraphClient:
    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(orjson.loads(request.content))
        return httpx.Response(200, json={"status": "ready", "graph_id": "g" * 32, "graph_url": "/x"})

    return AttrGraphClient("http://test", transport=httpx.MockTransport(handle))


@pytest.mark.parametrize(
    ("options", "target"),
    [
        ({"target": "Austin"}, {"tokens": ["Austin"]}),
        ({"target": 262}, {"tokens": [262]}),
        ({"target": [" Austin", " Texas"]}, {"tokens": [" Austin", " Texas"]}),
        ({"target": {"logit_diff": [" big", " small"]}}, {"logit_diff": [" big", " small"]}),
        ({"logit_diff": (" big", " small")}, {"logit_diff": [" big", " small"]}),
    ],
)
def test_targets_as_plain_values(options: dict[str, Any], target: dict[str, Any]) -> None:
    bodies: list[dict[str, Any]] = []
    with _recording_client(bodies) as ag:
        assert ag.submit("The capital of Texas is", **options).ready
    assert bodies == [{"prompt": "The capital of Texas is", "target": target}]


def test_target_and_logit_diff_together_are_refused() -> None:
    with _recording_client([]) as ag, pytest.raises(ValueError, match="either target or logit_diff"):
        ag.submit("x", target=" a", logit_diff=(" a", " b"))


def test_a_plain_string_target_reaches_the_server(api: str, worker: WorkerThread) -> None:
    with AttrGraphClient(api) as ag:
        plain = ag.submit("one two three four", target="four")
        spelled_out = ag.submit("one two three four", target={"tokens": ["four"]})
        untargeted = ag.submit("one two three four")
    assert plain.graph_id == spelled_out.graph_id != untargeted.graph_id
