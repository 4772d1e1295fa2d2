"""Interventions: change features in the replacement model and watch the prediction move.

An intervention sets, scales, zeroes or shifts one feature's activation at one (layer, position).
The change enters where the feature writes (its decoder rows, into every layer a cross-layer
feature writes to), so everything downstream sees it. Two switches say how the rest of the model
may respond:

* `freeze_attention`: attention patterns and norm denominators stay at their values on the
  original prompt (the graph's linearisation), or are recomputed;
* `direct_only`: every other MLP output stays at its original value, so only the intervened
  features' own writes change anything. With both on, ablating a feature moves a target by minus
  its edge weight: the graph's prediction, made testable. With both off, features downstream are
  recomputed from the changed residual stream (plus their original error vectors), which is what
  the model itself would do.

A swap is a list of interventions: one group scaled down, another set to activations read off
another prompt's graph.

A global-TopK set (one budget of latents per position over all layers) cannot be re-encoded layer
by layer: when features are recomputed, its selection is held fixed (engine/selection.py).

One module (about 400 lines) on purpose: the swaps at its end are interventions built from the same
cached pass (`_cached_pass`) and validated by the same rules, and callers import both from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor

from attrgraph.engine.attention.ablation import HeadAblation, ablated_heads
from attrgraph.engine.attribution import TraceableModel, tokenize
from attrgraph.engine.linearize import FrozenState, linearized
from attrgraph.engine.replacement import ForwardCache, ReplacementModel
from attrgraph.engine.selection import extended, layer_activations, prompt_selection
from attrgraph.engine.transcoders.base import TranscoderSet


class InterventionError(ValueError):
    """An intervention names a feature, position or value that cannot be applied."""


class Mode(StrEnum):
    SET = "set"  # activation := value
    SCALE = "scale"  # activation := value * activation
    ABLATE = "ablate"  # activation := 0
    ADD = "add"  # activation := activation + value


@dataclass(frozen=True)
class FeatureIntervention:
    layer: int
    position: int
    feature: int
    mode: Mode
    value: float = 0.0

    def apply(self, activation: Tensor) -> Tensor:
        if self.mode is Mode.SET:
            return torch.full_like(activation, self.value)
        if self.mode is Mode.SCALE:
            return activation * self.value
        if self.mode is Mode.ABLATE:
            return torch.zeros_like(activation)
        return activation + self.value


@dataclass(frozen=True)
class InterventionOptions:
    freeze_attention: bool = False
    direct_only: bool = False
    apply_to_generated: bool = False  # also clamp each feature at every generated position
    top_k: int = 10
    n_generate: int = 8
    max_interventions: int = 1024
    ablate_heads: tuple[HeadAblation, ...] = ()  # attention heads zeroed (engine/attention/ablation.py)


@dataclass
class Prediction:
    top: list[tuple[int, str, float]]  # (token id, token, probability)
    continuation: str
    continuation_ids: list[int]
    logits: Tensor = field(repr=False)  # (vocab,) last position


@dataclass
class InterventionResult:
    before: Prediction
    after: Prediction
    kl_divergence: float  # KL(before || after) of the next-token distributions
    probability_changes: dict[int, tuple[float, float]]  # token id -> (before, after), for both top-k sets
    # token id -> (before, after) logits of the same tokens: a saturated probability hides what they show
    logit_changes: dict[int, tuple[float, float]] = field(default_factory=dict)

    def _logits(self, token_id: int) -> dict[str, float]:
        if token_id not in self.logit_changes:
            return {}
        before, after = self.logit_changes[token_id]
        return {"logit_before": before, "logit_after": after}

    def to_dict(self) -> dict[str, Any]:
        def pred(p: Prediction) -> dict[str, Any]:
            return {
                "top": [{"token_id": i, "token": t, "prob": pr} for i, t, pr in p.top],
                "continuation": p.continuation,
                "continuation_ids": p.continuation_ids,
            }

        return {
            "before": pred(self.before),
            "after": pred(self.after),
            "kl_divergence": self.kl_divergence,
            "probability_changes": [
                {"token_id": k, "before": b, "after": a, **self._logits(k)}
                for k, (b, a) in self.probability_changes.items()
            ],
        }


def validate(
    interventions: list[FeatureIntervention],
    transcoders: TranscoderSet,
    n_pos: int,
    options: InterventionOptions,
) -> None:
    if len(interventions) > options.max_interventions:
        raise InterventionError(f"{len(interventions)} interventions; at most {options.max_interventions}")
    for iv in interventions:
        where = f"feature {iv.layer}/{iv.feature} at position {iv.position}"
        if not 0 <= iv.layer < transcoders.n_layers:
            raise InterventionError(f"{where}: layer out of range (0..{transcoders.n_layers - 1})")
        if not 0 <= iv.feature < transcoders.d_transcoder:
            raise InterventionError(
                f"{where}: feature index out of range (0..{transcoders.d_transcoder - 1})"
            )
        if not 0 <= iv.position < n_pos:
            raise InterventionError(f"{where}: position out of range (0..{n_pos - 1})")
        if not torch.isfinite(torch.tensor(iv.value)):
            raise InterventionError(f"{where}: value must be finite")


def intervene(
    lm: TraceableModel,
    transcoders: TranscoderSet,
    prompt: str | list[int],
    interventions: list[FeatureIntervention],
    options: InterventionOptions | None = None,
) -> InterventionResult:
    options = options or InterventionOptions()
    ids = tokenize(lm.tokenizer, prompt)
    validate(interventions, transcoders, len(ids), options)
    rm, cache, token_ids = _cached_pass(lm, transcoders, ids, options.freeze_attention or options.direct_only)
    before = _predict(lm, rm, cache, token_ids, [], replace(options, ablate_heads=()))
    after = _predict(lm, rm, cache, token_ids, interventions, options)
    p_before = torch.softmax(before.logits.double(), -1)
    p_after = torch.softmax(after.logits.double(), -1)
    kl = float((p_before * (p_before.clamp_min(1e-300).log() - p_after.clamp_min(1e-300).log())).sum())
    tokens = dict.fromkeys([t for t, _, _ in before.top] + [t for t, _, _ in after.top])
    changes = {t: (float(p_before[t]), float(p_after[t])) for t in tokens}
    logits = {t: (float(before.logits[t]), float(after.logits[t])) for t in tokens}
    return InterventionResult(before, after, max(kl, 0.0), changes, logits)


def next_token_logits(
    lm: TraceableModel,
    transcoders: TranscoderSet,
    prompt: str | list[int],
    intervention_sets: Sequence[list[FeatureIntervention]],
    options: InterventionOptions | None = None,
) -> list[Tensor]:
    """The next-token logits (vocab,) after `prompt` under each list of interventions, all from one
    cached forward pass and without continuations: the cheap path for analyses that try many edits
    of one prompt. Each entry equals `intervene(...).after.logits` for that list."""
    options = options or InterventionOptions()
    ids = tokenize(lm.tokenizer, prompt)
    for interventions in intervention_sets:
        validate(interventions, transcoders, len(ids), options)
    rm, cache, token_ids = _cached_pass(lm, transcoders, ids, options.freeze_attention or options.direct_only)
    return [_logits(rm, cache, token_ids, ivs, options)[-1] for ivs in intervention_sets]


def _cached_pass(
    lm: TraceableModel, transcoders: TranscoderSet, ids: list[int], record: bool
) -> tuple[ReplacementModel, ForwardCache, Tensor]:
    """The replacement model's forward pass on the prompt, which interventions edit and replay."""
    rm = ReplacementModel(lm.model, transcoders)
    device = next(lm.model.parameters()).device
    token_ids = torch.tensor(ids, device=device)
    exclude = int(token_ids[0] == lm.tokenizer.bos_token_id)
    with torch.enable_grad():
        cache = rm.run(token_ids, exclude_positions=exclude, record=record)
    return rm, cache, token_ids


def _predict(
    lm: TraceableModel,
    rm: ReplacementModel,
    cache: ForwardCache,
    token_ids: Tensor,
    interventions: list[FeatureIntervention],
    options: InterventionOptions,
) -> Prediction:
    logits = _logits(rm, cache, token_ids, interventions, options)[-1]
    probs = torch.softmax(logits.float(), -1)
    top_p, top_i = probs.topk(min(options.top_k, probs.numel()))
    top = [(int(i), str(lm.tokenizer.decode([int(i)])), float(p)) for p, i in zip(top_p, top_i, strict=True)]
    generated: list[int] = []
    sequence = token_ids
    next_logits = logits
    for step in range(options.n_generate):
        token = int(next_logits.argmax())
        generated.append(token)
        if step == options.n_generate - 1 or token == lm.tokenizer.eos_token_id:
            break
        sequence = torch.cat([sequence, sequence.new_tensor([token])])
        # Generated positions: attention is recomputed (nothing was recorded for them).
        active = interventions
        if options.apply_to_generated:
            new_pos = sequence.shape[0] - 1
            active = interventions + [
                FeatureIntervention(iv.layer, new_pos, iv.feature, iv.mode, iv.value) for iv in interventions
            ]
        next_logits = _logits(rm, cache, sequence, active, options, generating=True)[-1]
    return Prediction(top, str(lm.tokenizer.decode(generated)), generated, logits)


@torch.no_grad()
def _logits(
    rm: ReplacementModel,
    cache: ForwardCache,
    token_ids: Tensor,
    interventions: list[FeatureIntervention],
    options: InterventionOptions,
    generating: bool = False,
    inputs: dict[int, Tensor] | None = None,
) -> Tensor:
    """(pos, vocab) logits of the replacement model with `interventions` applied.

    Continuations (generating=True) always recompute attention and features: nothing was recorded
    for new positions. Prompt positions keep their original error vectors, so a pass without
    interventions reproduces the model exactly. `inputs`, if given, receives each layer's
    transcoder input (1, pos, d_model).
    """
    tc = rm.transcoders
    n_prompt = int(cache.token_ids.shape[0])
    direct = options.direct_only and not generating
    freeze = (options.freeze_attention or options.direct_only) and not generating
    selection = None
    if tc.selects_across_layers and not direct:
        selection = _held_selection(rm, cache, token_ids, interventions, options)
    by_layer: dict[int, list[FeatureIntervention]] = {}
    for iv in interventions:
        by_layer.setdefault(iv.layer, []).append(iv)
    live: list[Tensor | None] = [None] * rm.n_layers  # unintervened activations, for CLT reconstruction
    deltas: list[Tensor | None] = [None] * rm.n_layers  # intervened minus unintervened activations
    tc_inputs: dict[int, Tensor] = {}

    def on_write(layer: int, out: Tensor) -> Tensor:
        x = tc_inputs[layer][0]  # (pos, d_model)
        skip = tc.skip(layer, x)
        if direct:
            # Every MLP output held at its original value (skip paths stay live: they are linear).
            acts = _original_activations(cache, layer, tc.d_transcoder)
            base = cache.write_constants[layer].clone()
        else:
            acts = layer_activations(tc, layer, x, selection)
            acts[: cache.excluded_positions] = 0
            base = out[0].clone() if skip is None else out[0] - skip
            live[layer] = acts
            recon = rm._reconstruct_layer(layer, live, x)
            base[:n_prompt] = recon[:n_prompt].to(base.dtype) + cache.errors[layer]
        changed = acts.clone()
        for iv in by_layer.get(layer, []):
            changed[iv.position, iv.feature] = iv.apply(acts[iv.position, iv.feature])
        deltas[layer] = changed - acts
        write = base if skip is None else base + skip.to(base.dtype)
        for source in range(layer + 1) if tc.cross_layer else [layer]:
            delta = deltas[source]
            if delta is not None and bool(delta.any()):
                w_dec = tc.layer(source).W_dec[:, layer - source]
                write = write + (delta.to(w_dec.dtype) @ w_dec).to(write.dtype)
        return write[None].to(out.dtype)

    def on_tc_input(layer: int, x: Tensor) -> None:
        tc_inputs[layer] = x

    if inputs is not None:
        tc_inputs = inputs

    with ExitStack() as stack:
        if freeze:
            replay = FrozenState(
                replaying=True, patterns=cache.frozen.patterns, norm_scales=cache.frozen.norm_scales
            )
            stack.enter_context(linearized(rm.adapter, replay))
        stack.enter_context(rm.hooks(lambda x: x, on_tc_input, on_write, {}))
        if options.ablate_heads:
            stack.enter_context(ablated_heads(rm.adapter, options.ablate_heads))
        logits: Tensor = rm.model(input_ids=token_ids[None]).logits[0]
    return logits


def _held_selection(
    rm: ReplacementModel,
    cache: ForwardCache,
    token_ids: Tensor,
    interventions: list[FeatureIntervention],
    options: InterventionOptions,
) -> list[Tensor]:
    """A global-TopK set's selection for this pass (engine/selection.py): the prompt's, and at
    generated positions that carry interventions, encode_all's choice from a pass without them."""
    n_prompt = int(cache.token_ids.shape[0])
    held = prompt_selection(cache, rm.transcoders.d_transcoder)
    n_new = int(token_ids.shape[0]) - n_prompt
    if not any(iv.position >= n_prompt for iv in interventions):
        return extended(held, None, n_new)
    inputs: dict[int, Tensor] = {}
    on_prompt = [iv for iv in interventions if iv.position < n_prompt]
    _logits(rm, cache, token_ids, on_prompt, options, generating=True, inputs=inputs)
    chosen = rm.transcoders.encode_all([inputs[layer][0] for layer in range(rm.n_layers)])
    return extended(held, chosen, n_new)


def _original_activations(cache: ForwardCache, layer: int, d_transcoder: int) -> Tensor:
    sparse = cache.activations[layer]
    n = int(cache.token_ids.shape[0])
    acts = torch.zeros(n, d_transcoder, device=sparse.values.device, dtype=sparse.values.dtype)
    acts[sparse.positions, sparse.features] = sparse.values
    return acts


# -- swaps ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveFeature:
    layer: int
    position: int
    feature: int
    activation: float


def active_features(
    lm: TraceableModel,
    transcoders: TranscoderSet,
    prompt: str | list[int],
    *,
    layers: list[int] | None = None,
    positions: list[int] | None = None,
) -> list[ActiveFeature]:
    """The features active on `prompt` (negative positions count from the end), strongest first."""
    ids = tokenize(lm.tokenizer, prompt)
    n_pos = len(ids)
    wanted_pos = None if positions is None else {p % n_pos for p in positions}
    _, cache, _ = _cached_pass(lm, transcoders, ids, record=False)
    found: list[ActiveFeature] = []
    for layer, sparse in enumerate(cache.activations):
        if layers is not None and layer not in layers:
            continue
        for pos, feat, value in zip(
            sparse.positions.tolist(), sparse.features.tolist(), sparse.values.tolist(), strict=True
        ):
            if (wanted_pos is None or pos in wanted_pos) and value != 0.0:
                found.append(ActiveFeature(layer, int(pos), int(feat), float(value)))
    found.sort(key=lambda f: -abs(f.activation))
    return found


def swap_interventions(
    remove: list[ActiveFeature] | list[tuple[int, int, int]],
    donor: list[ActiveFeature],
    *,
    k: float = 1.0,
    scale_removed: float = 0.0,
    position_shift: int = 0,
) -> list[FeatureIntervention]:
    """One group turned down (scaled by `scale_removed`, 0: ablated), another set to `k` times its
    activations on the donor prompt, moved by `position_shift` (align the prompts' ends with
    len(target) - len(donor)). A feature in both groups ends up at its donor value: later
    interventions on the same (layer, position, feature) win."""
    out: list[FeatureIntervention] = []
    for item in remove:
        layer, position, feature = (
            (item.layer, item.position, item.feature) if isinstance(item, ActiveFeature) else item
        )
        mode = Mode.ABLATE if scale_removed == 0.0 else Mode.SCALE
        out.append(FeatureIntervention(layer, position, feature, mode, scale_removed))
    for f in donor:
        out.append(
            FeatureIntervention(f.layer, f.position + position_shift, f.feature, Mode.SET, k * f.activation)
        )
    return out


def swap_from_prompt(
    lm: TraceableModel,
    transcoders: TranscoderSet,
    prompt: str | list[int],
    donor_prompt: str | list[int],
    *,
    layers: list[int],
    position: int = -1,
    k: float = 1.0,
    scale_removed: float = 0.0,
    options: InterventionOptions | None = None,
) -> InterventionResult:
    """Swap the features of `layers` at `position` (negative: from the end) of `prompt` for those
    of `donor_prompt` at the matching position (prompts aligned at their ends)."""
    n_target = len(tokenize(lm.tokenizer, prompt))
    n_donor = len(tokenize(lm.tokenizer, donor_prompt))
    target_pos = position % n_target
    donor_pos = target_pos - (n_target - n_donor)
    if not 0 <= donor_pos < n_donor:
        raise InterventionError(f"position {position} has no match in the donor prompt")
    remove = active_features(lm, transcoders, prompt, layers=layers, positions=[target_pos])
    donor = active_features(lm, transcoders, donor_prompt, layers=layers, positions=[donor_pos])
    ivs = swap_interventions(
        remove, donor, k=k, scale_removed=scale_removed, position_shift=n_target - n_donor
    )
    return intervene(lm, transcoders, prompt, ivs, options)
