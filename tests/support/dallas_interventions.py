"""Scripted intervention results for the Dallas backend: the circuit's edges decide the outcome.

Each intervened circuit feature changes each output logit by (new - old) / old x its edge weight to
that logit, plus its edges through the two "say Austin" features (so clamping the Texas feature
moves Austin). Other features move nothing. Deterministic, instant, no torch.
"""

from __future__ import annotations

import math
from typing import Any

from attrgraph.protocol.interventions import HeadAblationItem
from attrgraph.protocol.records import InterventionPayload
from attrgraph.worker.tracer import UserError
from tests.support.dallas import (
    CIRCUIT,
    CIRCUIT_LINKS,
    HEAD_ABLATION_AUSTIN,
    OUTPUTS,
    TOP_HEAD,
    token_id,
    tokenize_text,
)


def _paths_to_logits() -> dict[str, dict[str, float]]:
    """feature key -> {output token: summed weight of its direct and two-step paths}."""
    direct: dict[str, dict[str, float]] = {}
    feature_links: dict[str, list[tuple[str, float]]] = {}
    for source, target, weight in CIRCUIT_LINKS:
        if target.startswith("L:"):
            direct.setdefault(source, {})
            tok = target[2:]
            direct[source][tok] = direct[source].get(tok, 0.0) + weight
        else:
            feature_links.setdefault(source, []).append((target, weight))
    total: dict[str, dict[str, float]] = {}
    for key, *_ in CIRCUIT:
        out = dict(direct.get(key, {}))
        for mid, w in feature_links.get(key, []):
            for tok, w2 in direct.get(mid, {}).items():
                out[tok] = out.get(tok, 0.0) + 0.25 * w * w2
        total[key] = out
    return total


PATHS = _paths_to_logits()


def scripted_intervention(job: InterventionPayload) -> dict[str, Any]:
    tokens = tokenize_text(job.prompt)
    last = len(tokens) - 1

    def position_of(token: str) -> int:
        if token == "$":
            return last
        matches = [i for i, t in enumerate(tokens) if t == token]
        return matches[-1] if matches else max(1, last - 1)

    circuit = {(layer, position_of(tok), index): (key, act) for key, layer, tok, index, _, act in CIRCUIT}
    logits = {tok: math.log(p) for tok, p in OUTPUTS}
    other = 1.0 - sum(p for _, p in OUTPUTS)
    before = dict(logits)
    for iv in job.interventions:
        if isinstance(iv, HeadAblationItem):
            # the scripted head that carries Dallas to " is" (tests/support/dallas.py TOP_HEAD)
            if (iv.layer, iv.head) == TOP_HEAD:
                logits[" Austin"] -= HEAD_ABLATION_AUSTIN
            continue
        if iv.position >= len(tokens):
            raise UserError(f"position {iv.position} out of range")
        found = circuit.get((iv.layer, iv.position, iv.feature))
        if found is None:
            continue
        key, act = found
        new = {"set": iv.value, "scale": act * iv.value, "ablate": 0.0, "add": act + iv.value}[iv.mode]
        frac = (new - act) / act
        for tok, weight in PATHS[key].items():
            if tok in logits:
                logits[tok] += frac * weight

    def distribution(ls: dict[str, float]) -> dict[str, float]:
        # the mass outside OUTPUTS stays a fixed logit: log(other)
        z = sum(math.exp(v) for v in ls.values()) + other
        return {tok: math.exp(v) / z for tok, v in ls.items()}

    p_before, p_after = distribution(before), distribution(logits)
    kl = sum(p * math.log(p / p_after[t]) for t, p in p_before.items())
    z_b, z_a = sum(p_before.values()), sum(p_after.values())
    kl += (1 - z_b) * math.log((1 - z_b) / (1 - z_a))

    def top(p: dict[str, float]) -> list[dict[str, Any]]:
        ranked = sorted(p.items(), key=lambda x: -x[1])[: job.options.top_k]
        return [{"token_id": token_id(t), "token": t, "prob": v} for t, v in ranked]

    def continuation(p: dict[str, float]) -> str:
        first = max(p.items(), key=lambda x: x[1])[0]
        rest = {" Austin": ", the capital.", " Texas": " and Austin.", " the": " city of Austin."}
        return first + rest.get(first, ".")

    return {
        "before": {"top": top(p_before), "continuation": continuation(p_before), "continuation_ids": []},
        "after": {"top": top(p_after), "continuation": continuation(p_after), "continuation_ids": []},
        "kl_divergence": max(kl, 0.0),
        "probability_changes": [
            {"token_id": token_id(t), "token": t, "before": p_before[t], "after": p_after[t]}
            for t in p_before
        ],
    }
