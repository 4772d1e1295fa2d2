"""Feature-detail dicts (Neuronpedia's shape plus `label`) from a layer's streamed statistics.

Per feature: index, layer, label, label_source, examples_quantiles ("Top activations", then a
sample from each of the QUANTILES bands of the activation ranks), top_logits / bottom_logits with
values, act_min, act_max, quantile_levels / quantile_values, histogram {counts, edges},
activation_frequency and top_tokens. Numbers are rounded to float16 precision.

Exact from the stream: the top examples, top tokens, min, max, frequency and logits. Read from the
log-spaced histogram (within one bin, 1/HIST_PER_OCTAVE of a doubling): the quantile values and the
dashboard histogram's counts. Estimated from the uniform sample: which ranks the band examples have.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from attrgraph.dashboards.collect import CONTEXT_BEFORE, HIST_LOG2_MIN, HIST_PER_OCTAVE, LayerStats
from attrgraph.dashboards.labels import Labeller
from attrgraph.dashboards.logits import top_effects

QUANTILES = ((0.75, 0.95), (0.5, 0.75), (0.0, 0.5))  # rank bands of the positive activations
QUANTILE_LEVELS = [0.5, 0.75, 0.9, 0.99, 1.0]
N_PER_QUANTILE = 4
N_BINS = 16


def h(x: float) -> float:
    """Round to float16 precision (what the files store)."""
    return float(torch.tensor(x, dtype=torch.float16)) if x == x else 0.0


def h_list(values: Tensor) -> list[float]:
    """`h` of every value, in one conversion."""
    rounded: list[float] = values.float().nan_to_num(0.0).to(torch.float16).float().tolist()
    return rounded


def _example(ids: Tensor, acts: Tensor, token: Callable[[int], str]) -> dict[str, Any]:
    inside = (ids >= 0).nonzero().squeeze(1)
    lo, hi = int(inside[0]), int(inside[-1]) + 1
    return {
        "tokens": [token(int(i)) for i in ids[lo:hi]],
        "tokens_acts_list": h_list(acts[lo:hi]),
        "max_token_index": CONTEXT_BEFORE - lo,
    }


def _edges(b: Tensor) -> Tensor:
    return torch.exp2(HIST_LOG2_MIN + b.double() / HIST_PER_OCTAVE)


def _quantiles(hist: Tensor, lo: float, hi: float) -> list[float]:
    """Quantile values from the log histogram, interpolated geometrically inside a bin."""
    counts = hist.double()
    cdf = counts.cumsum(0)
    n = float(cdf[-1])
    out = []
    for q in QUANTILE_LEVELS:
        if q >= 1.0:
            out.append(hi)
            continue
        b = int(torch.searchsorted(cdf, torch.tensor(q * n, dtype=torch.float64)))
        b = min(b, counts.numel() - 1)
        before = float(cdf[b - 1]) if b > 0 else 0.0
        frac = (q * n - before) / max(float(counts[b]), 1.0)
        left, right = float(_edges(torch.tensor(b))), float(_edges(torch.tensor(b + 1)))
        out.append(min(hi, max(lo, left * (right / left) ** frac)))
    return out


def _linear_histogram(hist: Tensor, act_max: float) -> list[int]:
    """The log histogram's counts in N_BINS equal bins over [0, act_max] (each log bin by its centre)."""
    b = torch.arange(hist.numel())
    centres = (_edges(b) * _edges(b + 1)).sqrt()
    target = (centres / act_max * N_BINS).floor().long().clamp(0, N_BINS - 1)
    counts = torch.zeros(N_BINS, dtype=torch.long).index_add_(0, target, hist.long())
    return [int(c) for c in counts]


def feature_detail(
    stats: LayerStats,
    layer: int,
    feature: int,
    effect: Tensor,
    token: Callable[[int], str],
    labeller: Labeller,
) -> dict[str, Any]:
    """The dashboard of one feature. `effect` (vocab,): its demeaned direct logit effects;
    `token(id)`: the text of a token id."""
    top_i, top_v, bot_i, bot_v = top_effects(effect)
    top_logits = [token(i) for i in top_i]
    n_active = int(stats.n_active[feature])
    detail: dict[str, Any] = {
        "index": feature,
        "layer": layer,
        "top_logits": top_logits,
        "top_logit_values": [h(v) for v in top_v],
        "bottom_logits": [token(i) for i in bot_i],
        "bottom_logit_values": [h(v) for v in bot_v],
        "activation_frequency": h(n_active / max(1, int(stats.n_tokens))),
    }
    if n_active == 0:
        detail.update(
            act_min=0.0,
            act_max=0.0,
            quantile_values=[],
            quantile_levels=[],
            examples_quantiles=[],
            histogram={"counts": [], "edges": []},
            top_tokens=[],
            label="dead feature",
            label_source="none",
        )
        return detail
    top, sample = stats.top, stats.sample
    kept = [j for j in range(top.key.shape[1]) if top.key[feature, j] > float("-inf")]
    top_examples = [_example(top.ids[feature, j], top.acts[feature, j], token) for j in kept]
    top_places = {(int(top.window[feature, j]), int(top.pos[feature, j])) for j in kept}
    quantiles: list[dict[str, Any]] = [{"quantile_name": "Top activations", "examples": top_examples}]
    drawn = [j for j in range(sample.key.shape[1]) if sample.key[feature, j] < float("inf")]
    drawn.sort(key=lambda j: -float(sample.value[feature, j]))  # by descending activation
    n = len(drawn)
    for lo, hi in QUANTILES:
        first, last = int(n * (1 - hi)), max(int(n * (1 - lo)), int(n * (1 - hi)) + 1)
        first, last = min(first, n - 1), min(last, n)
        pool = drawn[first:last]
        # `drawn` is a uniform sample, so its first keys are a uniform sample of the band
        chosen = sorted(pool, key=lambda j: float(sample.key[feature, j]))[:N_PER_QUANTILE]
        chosen.sort(key=lambda j: drawn.index(j))
        examples = [
            _example(sample.ids[feature, j], sample.acts[feature, j], token)
            for j in chosen
            if (int(sample.window[feature, j]), int(sample.pos[feature, j])) not in top_places
        ]
        quantiles.append({"quantile_name": f"Interval {lo:.2f}-{hi:.2f}", "examples": examples})
    act_min, act_max = float(stats.act_min[feature]), float(stats.act_max[feature])
    counts: Counter[str] = Counter()
    for j in range(stats.tok_val.shape[1]):
        if stats.tok_val[feature, j] > float("-inf"):
            counts[token(int(stats.tok_id[feature, j]))] += 1
    top_tokens = [t for t, _ in counts.most_common(5)]
    hist = stats.hist[feature]
    detail.update(
        act_min=h(act_min),
        act_max=h(act_max),
        quantile_levels=QUANTILE_LEVELS,
        quantile_values=[h(v) for v in _quantiles(hist, act_min, act_max)],
        histogram={
            "counts": _linear_histogram(hist, act_max),
            "edges": [h(act_max * i / N_BINS) for i in range(N_BINS + 1)],
        },
        examples_quantiles=quantiles,
        top_tokens=top_tokens,
    )
    contexts = [ex["tokens"][: ex["max_token_index"]] for ex in top_examples]
    detail["label"], detail["label_source"] = labeller.label(top_tokens, contexts, top_logits, top_v[:2])
    return detail
