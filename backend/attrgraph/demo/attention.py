"""Why " is" attends to " Dallas": the analysis behind the attention section of docs/demo-model.md.

On the Dallas graph (engine.trace, default settings):

* the strongest edges from the " Dallas" position into the " is" position, split by the heads that
  carried them (engine.attention head loadings, last hop): each head's share of their summed weight;
* the top head's attention pattern from " is" over every key position, and its pre-softmax score to
  each key, split into QK contributions (engine.attention QK attribution): which query-side and
  key-side sources make " Dallas" the key it picks;
* what ablating that head does to p(" Austin") (engine.interventions with the head's output zeroed,
  attention and everything downstream recomputed), next to ablating each other head of its layer.
"""

from __future__ import annotations

from typing import Any

from attrgraph.engine import trace
from attrgraph.engine.attention import AttentionTracer
from attrgraph.engine.attention.ablation import HeadAblation, n_heads
from attrgraph.engine.attention.top import node_positions
from attrgraph.engine.interventions import InterventionOptions, intervene
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.transcoders.base import TranscoderSet

PROMPT = "Fact: the capital of the state containing Dallas is"
ANSWER = " Austin"
N_EDGES = 10  # the strongest Dallas -> " is" edges split into heads


def attention_analysis(lm: LoadedModel, tc: TranscoderSet) -> dict[str, Any]:
    graph = trace(lm, tc, PROMPT)
    tracer = AttentionTracer.for_graph(lm.model, tc, graph, bos_token_id=lm.tokenizer.bos_token_id)
    city, last = graph.tokens.index(" Dallas"), graph.n_pos - 1
    positions = node_positions(graph)
    targets, sources = graph.edges[:, 0], graph.edges[:, 1]
    crossing = ((positions[sources] == city) & (positions[targets] == last)).nonzero(as_tuple=True)[0]
    strongest = crossing[graph.weights[crossing].abs().argsort(descending=True)[:N_EDGES]].tolist()

    by_head: dict[tuple[int, int], float] = {}
    total = 0.0
    for edge in strongest:
        loadings = tracer.head_loadings(graph, int(targets[edge]), int(sources[edge]))
        total += abs(loadings.weight)
        for layer_head, value in loadings.by_head().items():
            # signed with the edge: a head that carries an edge in its own direction counts for it
            sign = 1.0 if loadings.weight >= 0 else -1.0
            by_head[layer_head] = by_head.get(layer_head, 0.0) + value * sign
    shares = sorted(((value / total, head) for head, value in by_head.items()), reverse=True)
    layer, head = shares[0][1]

    pattern = tracer.records[layer].pattern[0, head, last].tolist()
    keys = []
    for key_pos in range(last + 1):
        qk = tracer.qk(layer, head, last, key_pos)
        k_marginals = dict(zip(qk.k_nodes, qk.k_marginals.tolist(), strict=True))
        token_node = graph.node_id(graph.token_offset + key_pos)
        keys.append(
            {
                "pos": key_pos,
                "token": graph.tokens[key_pos],
                "pattern": round(pattern[key_pos], 3),
                "score": round(qk.score, 3),
                "key_embedding_marginal": round(k_marginals.get(token_node, 0.0), 3),
            }
        )
    chosen = tracer.qk(layer, head, last, city)
    result = chosen.to_dict(top=5)
    runner_up = max((k for k in keys if k["pos"] != city), key=lambda k: k["score"])

    answer = int(lm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"][0])
    options = InterventionOptions(n_generate=1)
    base = intervene(lm, tc, PROMPT, [], options)
    ablations = []
    for h in range(n_heads(lm.model)):
        after = intervene(
            lm, tc, PROMPT, [], InterventionOptions(n_generate=1, ablate_heads=(HeadAblation(layer, h),))
        )
        probs = after.after.logits.double().softmax(-1)
        ablations.append(
            {
                "head": h,
                "p_answer": round(float(probs[answer]), 4),
                "top": [(token, round(p, 3)) for _, token, p in after.after.top[:2]],
            }
        )
    return {
        "prompt": PROMPT,
        "p_answer": round(float(base.before.logits.double().softmax(-1)[answer]), 4),
        "n_crossing_edges": len(crossing),
        "edges_split": len(strongest),
        "head_shares": [{"layer": lh[0], "head": lh[1], "share": round(s, 3)} for s, lh in shares],
        "top_head": {"layer": layer, "head": head},
        "keys": keys,
        "runner_up": runner_up,
        "qk": {
            name: round(float(result[name]), 3)
            for name in ("score", "pairs_total", "q_bias_terms", "k_bias_terms", "bias")
        },
        "qk_pairs": result["qk_tracing_results"]["pair_wise_contributors"],
        "ablations": ablations,
    }
