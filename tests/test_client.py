"""The httpx scripting client against a live server."""

from __future__ import annotations

import pytest

from attrgraph.client import AttrGraphClient, JobFailed
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
