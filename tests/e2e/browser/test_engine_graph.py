"""A graph from the real engine (a tiny random GPT-2 with random transcoders) in the explorer:
this project's own export (metadata.attrgraph: node values, scores) renders without a console error,
and the page's subgraph scores follow the engine's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import shoot
from tests.support.environment import require_module
from tests.support.services import ApiServer, WorkerThread, clear_prefix, torch_tracer_settings

sync_api = require_module("playwright.sync_api")
torch = require_module("torch")
expect = sync_api.expect

from attrgraph.engine.transcoders.saving import save_transcoders  # noqa: E402
from attrgraph.settings import ModelSpec  # noqa: E402
from tests.support.models import make_tiny_model  # noqa: E402
from tests.support.transcoders import tiny_plt_transcoders  # noqa: E402

N_LAYERS, D_MODEL = 2, 64


@pytest.fixture(scope="module")
def engine_url(browser_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from attrgraph.worker.torch_tracer import TorchTracer

    root: Path = tmp_path_factory.mktemp("tiny-engine")
    model_dir = make_tiny_model("gpt2", root / "model", n_layers=N_LAYERS, d_model=D_MODEL)
    tc_dir = save_transcoders(tiny_plt_transcoders(), root / "transcoders", model_name="tiny-gpt2")
    spec = ModelSpec(name="tiny", path=str(model_dir), transcoders={"tiny-plt": str(tc_dir)})
    settings = torch_tracer_settings(browser_redis_url, spec)
    with ApiServer(settings) as api, WorkerThread(settings, TorchTracer(settings)):
        yield api.url
    clear_prefix(browser_redis_url, settings.key_prefix)


def test_engine_graph_in_the_explorer(page: Any, engine_url: str) -> None:
    with httpx.Client(base_url=engine_url, timeout=60) as c:
        body = {
            "prompt": "The capital of France is",
            "settings": {"max_feature_nodes": 64, "max_n_logits": 3},
        }
        accepted = c.post("/api/graphs", json=body).json()
        graph_id = accepted["graph_id"]
        for _ in range(600):
            if c.get(f"/api/jobs/{accepted['job_id']}").json()["state"] == "done":
                break
            time.sleep(0.05)
        document = c.get(f"/api/graphs/{graph_id}").json()
    page.goto(f"{engine_url}/graph/{graph_id}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    # The top output is clicked on arrival; its inputs are listed.
    expect(page.locator("#clicked-label")).to_contain_text("Output")
    assert page.locator(".conn-inputs .conn-row").count() >= 1
    # Whole-graph scores come from the file; pinning every feature gives the page's own.
    scores = document["metadata"]["attrgraph"]["scores"]
    shown = page.locator("#subgraph-scores")
    expect(shown).to_contain_text("Full graph: replacement")
    expect(shown).to_contain_text("Pruned graph: replacement")
    full_replacement = f"{100 * scores['replacement_score']:.1f}%"
    expect(shown).to_contain_text(f"Full graph: replacement {full_replacement}")
    features = [n["node_id"] for n in document["nodes"] if n["feature_type"] == "cross layer transcoder"]
    js = page.evaluate("(ids) => window.__attrgraph.subgraphScores(window.__attrgraph.graph, ids)", features)
    pruned = scores["pruned"]
    assert 0 <= js["replacement"] <= 1 and 0 <= js["completeness"] <= 1
    # Input pruned away on the server counts as unexplained: the page never overstates the engine.
    assert js["replacement"] <= pruned["replacement_score"] + 1e-6
    # A feature's panel says this set has no dashboards yet and how to build them.
    page.locator(".conn-inputs .conn-row:has(.sw-feature)").first.click()
    expect(page.locator("#feature")).to_contain_text("No dashboard yet")
    expect(page.locator("#feature")).to_contain_text("attrgraph dashboards build")
    shoot(page, "11-engine-graph")
