"""Predicted peak memory and time of one trace, before running it.

A trace's memory is the sum of a few terms whose sizes follow from the code's allocations
(replacement.py, rows.py); their constants are calibrated by `bench/estimate_accuracy.py`, which
measures peak RSS of real traces (docs/benchmarks.md has the table):

    weights     the model's parameters + the transcoder layers held (lazy sets: the cached layers)
    process     what the process holds besides (CPU: Python, torch, libraries; 0 on CUDA, whose free
                memory already excludes the context)
    forward     the cached forward pass kept for every backward pass: per layer and position a few
                d_model vectors (transcoder input, write leaf, error, MLP output, saved tensors) and
                the frozen attention patterns (heads x positions^2 per layer)
    dense       every layer's dense feature activations, (positions x d_transcoder) per layer, held
                while the forward pass encodes (before rows start; the peak is the larger phase)
    decoders    the active features' decoder vectors scaled by activation, padded per position
    batch       one backward batch: gradients at every write site (batch x positions x d_model per
                layer) and the dense rows (batch x columns) with their temporaries
    edges       the sparse rows kept (a key, a column and a value per edge) and their copies while
                re-ranking and building the graph

Time is FLOP-like: each row is a backward pass through the layers below its target, whose cost is
dominated by the frozen attention mix (positions^2 x d_model per layer) once prompts are longer than
2 x d_model (below that by the value and output projections, positions x d_model^2), plus the edge
products (active features x d_model): so for long prompts time ~ feature nodes x positions^2.
The throughput that turns work into seconds is calibrated per device kind (CPU: this repository's
2-core benchmark machine; CUDA: a rough default until bench/gpu measures one).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from attrgraph.engine.rows import LINEAR_TEMPORARIES, pass_bytes_per_target, targets_per_pass

# -- calibration constants (bench/estimate_accuracy.py; docs/benchmarks.md "Estimates") ---------
PROCESS_BYTES_CPU = 400 * 2**20  # RSS of a Python process with torch + transformers, less weights
FORWARD_VECTORS = 14  # d_model-sized float32 vectors kept per layer and position by the forward pass
PATTERN_COPIES = 2  # frozen attention patterns: recorded (and saved by autograd) + the softmax's
DENSE_COPIES = 2  # dense activations + the pre-activations they came from
DECODER_PADDING = 1.5  # padded decoder blocks: positions x max features per position
PASS_FILL = 0.6  # the largest pass's share of the per-pass cap (feature batches are shallower)
EDGE_BYTES = 24  # bytes per edge at the peak: 20 stored + temporaries while re-ranking
CHOSEN_ROW_EDGES = 1024  # edges kept by a row of an influence-chosen feature
# Effective throughput of the backward passes. CPU: fitted on 2 cores (docs/benchmarks.md); the
# attention mix's products have a long inner dimension (positions) and run nearer the peak than the
# head-sized projections. CUDA: a guess, not measured (bench/gpu/ measures it).
FLOPS_PER_S = {"cpu": 6.7e10, "cuda": 2e13}
ATTENTION_FLOPS_PER_S = {"cpu": 1.1e11, "cuda": 2e13}
SECONDS_PER_BATCH = {"cpu": 0.01, "cuda": 0.002}  # fixed cost per backward batch (Python, top-k, copies)
HEADROOM = 0.9  # plan to use at most this share of the budget


class EstimateSettings(Protocol):
    """The parts of `attribution.TraceSettings` the estimate reads."""

    @property
    def max_n_logits(self) -> int: ...
    @property
    def max_feature_nodes(self) -> int | None: ...
    @property
    def batch_size(self) -> int | None: ...
    @property
    def max_edges_per_target(self) -> int | None: ...
    @property
    def pass_memory_mb(self) -> int | None: ...


@dataclass(frozen=True)
class TraceShape:
    """What the estimate needs to know of a model and transcoder set: plain numbers (JSON-able)."""

    n_layers: int
    d_model: int
    n_heads: int
    model_bytes: int
    transcoder_bytes: int  # held during a trace: every layer, or a lazy set's cached layers
    d_transcoder: int
    cross_layer: bool
    active_per_token: float  # mean active features per token and layer (measured by a probe)
    device: str = "cpu"  # "cpu" or "cuda"
    compute_bytes: int = 4  # bytes per element of the model's dtype

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """Predicted peak memory (bytes) and time (seconds) of one trace."""

    n_tokens: int
    batch_size: int
    peak_bytes: int
    seconds: float
    memory_terms: dict[str, int]
    time_terms: dict[str, float]
    n_feature_nodes: int
    n_edges: int
    budget_bytes: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        return None if self.budget_bytes is None else self.peak_bytes <= self.budget_bytes

    @property
    def dominant_memory(self) -> str:
        return max(self.memory_terms, key=lambda k: self.memory_terms[k])

    @property
    def dominant_time(self) -> str:
        return max(self.time_terms, key=lambda k: self.time_terms[k])

    def advice(self) -> str:
        """Which setting to change, for the term that dominates."""
        by_term = {
            "edges": "lower max_feature_nodes or max_edges_per_target, or shorten the prompt",
            "batch": "lower batch_size, or shorten the prompt",
            "forward": "shorten the prompt",
            "dense": "shorten the prompt",
            "decoders": "shorten the prompt",
            "weights": "use a device with more memory, or lazy transcoders",
            "process": "use a device with more memory",
        }
        return by_term[self.dominant_memory]

    def summary(self) -> str:
        gib = self.peak_bytes / 2**30
        text = (
            f"estimated peak memory {gib:.2f} GiB (largest term: {self.dominant_memory} "
            f"{self.memory_terms[self.dominant_memory] / 2**30:.2f} GiB), time {self.seconds:.1f} s "
            f"(dominated by {self.dominant_time}); {self.n_tokens} tokens, "
            f"{self.n_feature_nodes} feature nodes, batch {self.batch_size}"
        )
        if self.budget_bytes is not None:
            text += f"; budget {self.budget_bytes / 2**30:.2f} GiB"
        return text

    def refusal(self) -> str:
        """The message for a trace that does not fit its budget."""
        assert self.budget_bytes is not None
        return (
            f"this trace needs about {self.peak_bytes / 2**30:.2f} GiB, more than the "
            f"{self.budget_bytes / 2**30:.2f} GiB this worker has ({self.n_tokens} tokens, "
            f"{self.n_feature_nodes} feature nodes): {self.advice()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "seconds": round(self.seconds, 3),
            "fits": self.fits,
            "budget_bytes": self.budget_bytes,
            "batch_size": self.batch_size,
            "dominant": self.dominant_memory,
            "dominant_time": self.dominant_time,
            "n_feature_nodes": self.n_feature_nodes,
            "memory_terms": self.memory_terms,
            "advice": self.advice() if self.fits is False else None,
        }


def estimate(
    shape: TraceShape,
    n_tokens: int,
    settings: EstimateSettings,
    *,
    budget_bytes: int | None = None,
    batch_size: int | None = None,
) -> Estimate:
    """Peak memory and time of tracing `n_tokens` with `settings` on `shape`.

    batch_size overrides settings.batch_size; with neither, the batch is chosen as trace() would
    choose it from `budget_bytes` (`choose_batch_size`).
    """
    if n_tokens < 1:
        raise ValueError("n_tokens must be >= 1")
    batch = batch_size or settings.batch_size
    if batch is None:
        batch = choose_batch_size(shape, n_tokens, settings, budget_bytes)
    s, L, d, pos = shape, shape.n_layers, shape.d_model, n_tokens
    n_out = (L + 1) / 2 if s.cross_layer else 1.0
    n_feat = int(s.active_per_token * max(pos - 1, 0) * L)
    nodes = n_feat if settings.max_feature_nodes is None else min(settings.max_feature_nodes, n_feat)
    n_logits = settings.max_n_logits
    n_cols = n_feat + L * pos + pos
    cap = settings.max_edges_per_target or n_cols
    # A feature row reaches the layers below it at positions up to its own: a quarter of the columns
    # on average over every feature; influence-first exploration favours shallow features, whose rows
    # are shorter still (about CHOSEN_ROW_EDGES on the benchmark fixtures).
    reach = 0.25 * n_cols if nodes >= n_feat else min(0.25 * n_cols, CHOSEN_ROW_EDGES)
    n_edges = int(n_logits * min(cap, n_cols) + nodes * min(cap, reach))

    # One backward pass: per target the gradients at every write site below it and a few more
    # (rows.py's LINEAR_TEMPORARIES), and its dense row with copies; `pass_memory_mb` caps a pass
    # (a batch runs as several passes when one would exceed it).
    per_target = pass_bytes_per_target(
        n_pos=pos, d_model=d, write_sites=L, n_cols=n_cols, element_size=4, temporaries=LINEAR_TEMPORARIES
    )
    per_pass = targets_per_pass(batch, getattr(settings, "pass_memory_mb", None), per_target)
    memory = {
        "weights": s.model_bytes + s.transcoder_bytes,
        "process": PROCESS_BYTES_CPU if s.device == "cpu" else 0,
        "forward": int(L * pos * d * 4 * FORWARD_VECTORS + L * s.n_heads * pos * pos * 4 * PATTERN_COPIES),
        "dense": int(L * pos * s.d_transcoder * s.compute_bytes * DENSE_COPIES),
        "decoders": int(n_feat * n_out * d * 4 * DECODER_PADDING),
        "batch": int(per_pass * per_target * PASS_FILL),
        "edges": n_edges * EDGE_BYTES,
    }
    # The dense activations are freed before the rows start: the peak is the larger phase.
    encode_phase = memory["dense"]
    rows_phase = memory["decoders"] + memory["batch"] + memory["edges"]
    base = memory["weights"] + memory["process"] + memory["forward"]
    peak = base + max(encode_phase, rows_phase)

    # Work, in multiply-adds x 2, of the linear backward (engine/linear_backward.py): per row and
    # layer crossed, the value and output projections (4 x positions x d_model^2) and the frozen
    # attention mix (2 x positions^2 x d_model), over positions up to the row's own; then the edge
    # products and the dense row's passes. Logit rows cross every layer at every position; feature
    # rows on average half the layers and, at a uniform position p, p and p^2 (pos/2 and pos^2/3).
    depth = L / 2  # a feature row's mean layers crossed
    time_terms = {
        "attention (rows x positions^2)": 2.0 * d * pos**2 * (n_logits * L + nodes * depth / 3),
        "projections (rows x positions x d_model^2)": 4.0 * d * d * pos * (n_logits * L + nodes * depth / 2),
        "edges (rows x active features)": (n_logits + nodes / 2) * (2.0 * n_feat * n_out * d + 16.0 * n_cols),
        "forward": 2.0 * pos * (s.model_bytes / s.compute_bytes + L * s.d_transcoder * d),
    }
    kind = "cuda" if s.device.startswith("cuda") else "cpu"
    seconds_terms = {
        k: v / (ATTENTION_FLOPS_PER_S if k.startswith("attention") else FLOPS_PER_S)[kind]
        for k, v in time_terms.items()
    }
    n_batches = -(-n_logits // batch) + -(-nodes // batch) + L
    seconds_terms["per-batch overhead"] = n_batches * SECONDS_PER_BATCH[kind]
    return Estimate(
        n_tokens=n_tokens,
        batch_size=batch,
        peak_bytes=int(peak),
        seconds=sum(seconds_terms.values()),
        memory_terms=memory,
        time_terms=seconds_terms,
        n_feature_nodes=nodes,
        n_edges=n_edges,
        budget_bytes=budget_bytes,
    )


AUTO_BATCH_MAX = {"cpu": 64, "cuda": 256}


def choose_batch_size(
    shape: TraceShape, n_tokens: int, settings: EstimateSettings, budget_bytes: int | None
) -> int:
    """The largest power-of-two batch (at most AUTO_BATCH_MAX for the device) whose estimate fits
    HEADROOM of the budget; the ceiling when the budget is unknown, 1 when nothing fits."""
    kind = "cuda" if shape.device.startswith("cuda") else "cpu"
    batch = AUTO_BATCH_MAX[kind]
    if budget_bytes is None:
        return batch
    while batch > 1:
        found = estimate(shape, n_tokens, settings, batch_size=batch)
        if found.peak_bytes <= HEADROOM * budget_bytes:
            break
        batch //= 2
    return batch


# -- measuring a loaded pair ----------------------------------------------------------------------


def device_budget(device: torch.device | str) -> int | None:
    """Memory a trace on `device` may use: ATTRGRAPH_MEMORY_LIMIT_BYTES when set, else on CUDA the
    free memory plus what this process already holds there, on CPU the available memory
    (/proc/meminfo) plus this process's resident set. None when it cannot be told."""
    limit = os.environ.get("ATTRGRAPH_MEMORY_LIMIT_BYTES")
    if limit:
        return int(limit)
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device))
    available = _meminfo_bytes("MemAvailable")
    rss = _status_bytes("VmRSS")
    if available is None or rss is None:
        return None
    return available + rss


def _meminfo_bytes(name: str) -> int | None:
    return _kib_field(Path("/proc/meminfo"), name)


def _status_bytes(name: str) -> int | None:
    return _kib_field(Path("/proc/self/status"), name)


def _kib_field(path: Path, name: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def transcoder_bytes(tc: Any) -> int:
    """Bytes of transcoder parameters held during a trace (a lazy set: its cached layers)."""
    per_layer = []
    for layer in range(tc.n_layers) if not getattr(tc, "_lazy", False) else [0]:
        params = tc.layer(layer)
        per_layer.append(_tensor_bytes(vars(params).values()))
    if not getattr(tc, "_lazy", False):
        return sum(per_layer)
    held = min(int(getattr(tc, "_max_cached", 4)), tc.n_layers)
    return int(per_layer[0] * held)


def trace_shape(model: torch.nn.Module, tc: Any, probe_ids: list[int] | None = None) -> TraceShape:
    """The shape of a loaded model + transcoder pair; `probe_ids` (a short prompt) measures how many
    features are active per token (without it: a TopK set's k, else 1% of the features)."""
    from attrgraph.engine.adapter import ModelAdapter

    adapter = ModelAdapter.for_model(model)
    config = getattr(model, "config", None)
    n_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 1
    first = next(model.parameters())
    active = _probe_density(model, tc, probe_ids) if probe_ids else None
    if active is None:
        active = float(tc.topk) if tc.topk else 0.01 * tc.d_transcoder
    return TraceShape(
        n_layers=adapter.n_layers,
        d_model=adapter.d_model,
        n_heads=int(n_heads),
        model_bytes=_tensor_bytes([*model.parameters(), *model.buffers()]),
        transcoder_bytes=transcoder_bytes(tc),
        d_transcoder=int(tc.d_transcoder),
        cross_layer=bool(tc.cross_layer),
        active_per_token=active,
        device=first.device.type,
        compute_bytes=first.element_size(),
    )


def _probe_density(model: torch.nn.Module, tc: Any, probe_ids: list[int]) -> float | None:
    """Mean active features per token and layer on a probe prompt (the BOS position excluded)."""
    from attrgraph.engine.replacement import ReplacementModel

    if len(probe_ids) < 2:
        return None
    device = next(model.parameters()).device
    with torch.enable_grad():
        cache = ReplacementModel(model, tc).run(torch.tensor(probe_ids, device=device), exclude_positions=1)
    n_active = sum(int(a.features.numel()) for a in cache.activations)
    return float(n_active / ((len(probe_ids) - 1) * int(tc.n_layers)))
