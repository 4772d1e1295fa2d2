"""The subgraph scores the page computes (frontend/src/lib/scores.js) equal the engine's
(attrgraph.engine.pruning.subgraph_scores) on the same graph JSON."""

from __future__ import annotations

import math
import random
from typing import Any

import httpx

from tests.support.browser import Service
from tests.support.environment import require_module

require_module("playwright.sync_api")
torch = require_module("torch")

from attrgraph.engine.interop import from_json  # noqa: E402
from attrgraph.engine.pruning import graph_scores, subgraph_scores  # noqa: E402


def test_subgraph_scores_match_the_engine(page: Any, service: Service) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    document = httpx.get(f"{service.url}/api/graphs/{graph_id}").json()
    graph = from_json(document)
    page.goto(f"/graph/{graph_id}")
    page.wait_for_selector("#explorer[data-interactive='1']")

    features = [n["node_id"] for n in document["nodes"] if n["feature_type"] == "cross layer transcoder"]
    errors = [n["node_id"] for n in document["nodes"] if "error" in n["feature_type"]]
    rng = random.Random(0)
    cases = [[], features[:3], features, features + errors, rng.sample(features, 25), ["4_12_10", "3_88_10"]]
    for pinned in cases:
        js = page.evaluate(
            "(ids) => window.__attrgraph.subgraphScores(window.__attrgraph.graph, ids)", pinned
        )
        want = subgraph_scores(graph, pinned)
        for name, value in (
            ("replacement", want.replacement_score),
            ("completeness", want.completeness_score),
        ):
            assert math.isclose(js[name], value, rel_tol=1e-5, abs_tol=1e-7), (len(pinned), name, js, want)
    whole = graph_scores(graph)
    js = page.evaluate("(ids) => window.__attrgraph.subgraphScores(window.__attrgraph.graph, ids)", features)
    assert math.isclose(js["replacement"], whole.replacement_score, rel_tol=1e-5)
    assert math.isclose(js["completeness"], whole.completeness_score, rel_tol=1e-5)
