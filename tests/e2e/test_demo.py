"""The default deployment: the embedded demo model, its transcoders and dashboards, end to end.

Skipped until the demo files exist (they ship with the package; $ATTRGRAPH_DEMO_DIR points
elsewhere)."""

from __future__ import annotations

import httpx
import pytest

from attrgraph.bundled import demo_dashboards_dir, demo_model_dir
from attrgraph.settings import Settings
from tests.support.environment import require_module
from tests.support.services import ApiServer, WorkerThread, clear_prefix, make_settings, sse_events

pytestmark = pytest.mark.skipif(not demo_model_dir().exists(), reason="demo model not built")


def test_demo_model_end_to_end(redis_url: str) -> None:
    require_module("torch")
    from attrgraph.worker.torch_tracer import TorchTracer

    settings: Settings = make_settings(redis_url, default_model="demo", device="cpu")
    backend = TorchTracer(settings)
    try:
        with ApiServer(settings) as api, WorkerThread(settings, backend), httpx.Client(base_url=api.url) as c:
            models = c.get("/api/models").json()
            assert models["default_model"] == "demo"
            prompt = "Fact: the capital of the state containing Dallas is"
            tokens = c.post("/api/tokenize", json={"prompt": prompt, "top_k": 5}).json()
            assert len(tokens["predictions"]) == 5
            accepted = c.post("/api/graphs", json={"prompt": prompt}).json()
            assert sse_events(c, accepted["events_url"])[-1][0] == "done"
            graph = c.get(f"/api/graphs/{accepted['graph_id']}").json()
            feature = next(n for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder")
            layer, index, _ = (int(x) for x in feature["node_id"].split("_"))
            if demo_dashboards_dir().exists():
                detail = c.get(f"/api/features/demo/{layer}/{index}")
                assert detail.status_code == 200 and "label" in detail.json()
                # Features arrive labelled from their dashboards, not as bare "L0 #220".
                assert feature["clerp"] and feature["clerp"] == detail.json()["label"]
    finally:
        clear_prefix(redis_url, settings.key_prefix)
