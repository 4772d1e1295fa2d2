"""The real engine behind attention jobs: TorchTracer on the demo model traces with `qk`, explains
an edge and a head of the stored graph, and ablates a head through an intervention."""

from __future__ import annotations

from typing import Any

import pytest

from attrgraph.protocol.attention import EdgeRef, HeadRef
from attrgraph.protocol.interventions import HeadAblationItem, InterventionSettings
from attrgraph.protocol.records import AttentionPayload, InterventionPayload, TracePayload
from attrgraph.protocol.schemas import GraphSettings
from attrgraph.settings import Settings
from attrgraph.worker.torch_tracer import TorchTracer
from attrgraph.worker.tracer import UserError

PROMPT = "Fact: the capital of the state containing Dallas is"


def _quiet(phase: str, done: int, total: int) -> None:
    pass


@pytest.fixture(scope="module")
def tracer() -> TorchTracer:
    backend = TorchTracer(Settings(device="cpu", warmup=False))
    backend.load()
    return backend


@pytest.fixture(scope="module")
def graph(tracer: TorchTracer) -> dict[str, Any]:
    ids = [t.id for t in tracer.tokenize("demo", PROMPT)]
    job = TracePayload(
        model="demo", transcoders="demo", prompt=PROMPT, token_ids=ids, settings=GraphSettings(qk=True)
    )
    return tracer.trace(job, _quiet)


def _ask(tracer: TorchTracer, graph: dict[str, Any], **question: Any) -> dict[str, Any]:
    job = AttentionPayload(model="demo", transcoders="demo", prompt=PROMPT, graph_id="g" * 32, **question)
    return tracer.attention(job, graph, _quiet)


def test_trace_with_qk_puts_results_on_nodes(graph: dict[str, Any]) -> None:
    results = [n["qk_tracing_results"] for n in graph["nodes"] if "qk_tracing_results" in n]
    assert len(results) == 4
    for r in results:
        assert r["pairs_total"] + r["q_bias_terms"] + r["k_bias_terms"] + r["bias"] == pytest.approx(
            r["score"], rel=1e-4, abs=1e-5
        )
    named = {x for r in results for p in r["pair_wise_contributors"] for x in p[:2]}
    assert named <= {n["node_id"] for n in graph["nodes"]} | set(graph.get("qk_only_nodes", {}))


def test_edge_and_head_of_the_stored_graph(tracer: TorchTracer, graph: dict[str, Any]) -> None:
    positions = {n["node_id"]: n["ctx_idx"] for n in graph["nodes"]}
    link = max(
        (x for x in graph["links"] if positions[x["source"]] == 9 and positions[x["target"]] == 10),
        key=lambda x: abs(x["weight"]),
    )
    edge = _ask(tracer, graph, edge=EdgeRef(source=link["source"], target=link["target"]))
    assert edge["weight"] == pytest.approx(link["weight"], rel=1e-4)  # recomputed, same edge
    total = edge["same_position"] + sum(h["loading"] for h in edge["head_loadings"])
    assert total == pytest.approx(edge["weight"], rel=1e-4)
    assert (edge["heads"][0]["layer"], edge["heads"][0]["head"]) == (0, 3)
    assert edge["head_loadings"][0]["pattern"] == pytest.approx(0.728, abs=0.001)
    assert edge["query_pos"] == 10 and edge["source_pos"] == 9

    qk = _ask(tracer, graph, head=HeadRef(layer=0, head=3, query_pos=10, key_pos=9), top=5)
    assert qk["score"] == pytest.approx(-5.233, abs=0.001) and qk["pattern"] == pytest.approx(
        0.728, abs=0.001
    )
    assert qk["qk_tracing_results"]["pair_wise_contributors"][0][:2] == ["E_8_10", "E_220_9"]

    with pytest.raises(UserError, match="no node 0_9999_3"):
        _ask(tracer, graph, edge=EdgeRef(source="0_9999_3", target=link["target"]))
    with pytest.raises(UserError, match="head 7 out of range"):
        _ask(tracer, graph, head=HeadRef(layer=0, head=7, query_pos=10, key_pos=9))
    with pytest.raises(UserError, match="only features and logits are targets"):
        _ask(tracer, graph, edge=EdgeRef(source=link["source"], target=link["source"]))


def test_ablating_the_top_head(tracer: TorchTracer) -> None:
    def run(head: int) -> dict[str, Any]:
        job = InterventionPayload(
            model="demo",
            transcoders="demo",
            prompt=PROMPT,
            graph_id="g" * 32,
            interventions=[HeadAblationItem(mode="ablate_head", layer=0, head=head)],
            options=InterventionSettings(n_generate=1),
        )
        return tracer.intervene(job, _quiet)

    result = run(3)
    assert result["before"]["top"][0]["token"] == " Austin"
    assert result["after"]["top"][0]["token"] != " Austin"
    with pytest.raises(UserError, match=r"head 0\.9: head out of range"):
        run(9)
