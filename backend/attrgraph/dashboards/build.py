"""The resumable dashboard build: stream a corpus through the model and transcoders, then write
`layer_{i}.jsonl.gz` (format/dashboards.py's layout) into the output directory.

Memory is bounded: documents are read one at a time, a batch of windows is folded into each
layer's fixed-size LayerStats and dropped. Every `checkpoint_every` documents (at a batch boundary)
the statistics and the number of documents seen go to `CHECKPOINT` in the output directory; a
restarted build with the same fingerprint loads it and skips those documents. Batches are formed
from whole documents in order, so a resumed build sees the same batches as an uninterrupted one
and writes the same files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from attrgraph.dashboards.collect import Batch, LayerStats
from attrgraph.dashboards.details import feature_detail
from attrgraph.dashboards.labels import LabelHints, Labeller
from attrgraph.dashboards.logits import logit_effects
from attrgraph.engine.adapter import ModelAdapter
from attrgraph.engine.linearize import normalized_input
from attrgraph.engine.transcoders.base import InputSite, TranscoderSet
from attrgraph.format.dashboards import dashboard_file, dashboard_writer, write_detail

CHECKPOINT = "dashboards-checkpoint.pt"


@dataclass(frozen=True)
class BuildSettings:
    batch_size: int = 64  # windows per forward pass
    checkpoint_every: int = 2000  # documents between checkpoints
    seed: int = 0  # picks the sampled (lower-quantile) examples


class CheckpointMismatch(ValueError):
    """The output directory holds a checkpoint of a different build."""


def build_dashboards(
    model: nn.Module,
    tokenizer: Any,
    tc: TranscoderSet,
    documents: Iterable[Sequence[Sequence[int]]],
    out_dir: Path,
    *,
    hints: LabelHints | None = None,
    settings: BuildSettings = BuildSettings(),
    fingerprint: str = "",
    total: int | None = None,
    show_progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, int]]:
    """Dashboards of every feature of `tc` from `documents` (each a list of token windows).

    `fingerprint` names the corpus and model: a checkpoint with another one is refused. `total`
    (documents) gives the progress bar its ETA. `on_batch(documents_done)` runs after every batch.
    Returns per-layer summaries.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = [LayerStats(tc.d_transcoder, settings.seed) for _ in range(tc.n_layers)]
    fingerprint = f"{fingerprint}|{tc.name}|{tc.n_layers}x{tc.d_transcoder}|{asdict(settings)}"
    done = _resume(out_dir / CHECKPOINT, stats, fingerprint)
    bos = tokenizer.bos_token_id
    pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
    adapter = ModelAdapter.for_model(model)
    device = next(model.parameters()).device
    bar = tqdm(total=total, initial=done, unit="doc", desc="dashboards", disable=not show_progress)
    pending: list[Sequence[int]] = []
    n_windows, since_checkpoint, seen = 0, 0, 0

    def run_batch() -> None:
        nonlocal n_windows
        ids, valid = _pad(pending, pad)
        batch = Batch.of(ids, valid, bos, n_windows)
        for layer, acts in enumerate(_activations(model, adapter, tc, ids.to(device))):
            stats[layer].update(acts, batch)
        n_windows += len(pending)
        pending.clear()

    for index, windows in enumerate(documents):
        if index < done:
            n_windows += sum(1 for w in windows if len(w))  # numbered as an uninterrupted build does
            continue
        pending.extend(w for w in windows if len(w))
        seen = index + 1
        since_checkpoint += 1
        if len(pending) >= settings.batch_size:
            run_batch()
            bar.update(seen - bar.n)
            if on_batch is not None:
                on_batch(seen)
            if since_checkpoint >= settings.checkpoint_every:
                _save(out_dir / CHECKPOINT, stats, fingerprint, seen)
                since_checkpoint = 0
    if pending:
        run_batch()
    bar.update(max(seen, done) - bar.n)
    bar.close()
    summaries = _write(adapter, tokenizer, tc, stats, out_dir, Labeller(hints), show_progress)
    (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return summaries


def _resume(path: Path, stats: list[LayerStats], fingerprint: str) -> int:
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=True)
    if state.get("fingerprint") != fingerprint:
        raise CheckpointMismatch(
            f"{path} is the checkpoint of another build (corpus, model or settings differ): "
            "remove it or choose another output directory"
        )
    for layer, s in enumerate(stats):
        s.load_state_dict(state["layers"][layer])
    return int(state["documents"])


def _save(path: Path, stats: list[LayerStats], fingerprint: str, documents: int) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"fingerprint": fingerprint, "documents": documents, "layers": [s.state_dict() for s in stats]}, tmp
    )
    os.replace(tmp, path)  # a crash while saving leaves the previous checkpoint whole


def _pad(windows: list[Sequence[int]], pad: int) -> tuple[Tensor, Tensor]:
    length = max(len(w) for w in windows)
    ids = torch.full((len(windows), length), pad, dtype=torch.long)
    valid = torch.zeros(len(windows), length, dtype=torch.bool)
    for row, w in enumerate(windows):
        ids[row, : len(w)] = torch.tensor(list(w), dtype=torch.long)
        valid[row, : len(w)] = True
    return ids, valid


@torch.no_grad()
def _activations(model: nn.Module, adapter: ModelAdapter, tc: TranscoderSet, ids: Tensor) -> list[Tensor]:
    """Every layer's feature activations (B, T, d_tc) on ids (B, T); right padding is harmless
    to the real tokens of a causal model."""
    inputs: list[Tensor] = [torch.empty(0)] * adapter.n_layers
    site = tc.input_site

    def capture(layer: int) -> Callable[[nn.Module, tuple[Any, ...], Tensor], None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            if site is InputSite.MLP_IN:
                x = output
            elif site is InputSite.RESID_MID:
                x = args[0]
            else:
                x = normalized_input(module, args[0])
            inputs[layer] = x.detach()

        return hook

    handles = [norm.register_forward_hook(capture(i)) for i, norm in enumerate(adapter.pre_mlp_norms)]
    try:
        model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    b, t = ids.shape
    flat = [x.reshape(b * t, -1) for x in inputs[: tc.n_layers]]
    if tc.selects_across_layers:
        return [a.reshape(b, t, -1) for a in tc.encode_all(flat)]
    return [tc.encode(layer, x).reshape(b, t, -1) for layer, x in enumerate(flat)]


def _write(
    adapter: ModelAdapter,
    tokenizer: Any,
    tc: TranscoderSet,
    stats: list[LayerStats],
    out_dir: Path,
    labeller: Labeller,
    show_progress: bool,
) -> list[dict[str, int]]:
    pad_token = tokenizer.pad_token

    @cache
    def token(i: int) -> str:
        if pad_token is not None and tokenizer.convert_ids_to_tokens(i) == pad_token:
            return "<pad>"
        return str(tokenizer.decode([i]))

    summaries = []
    for layer, s in enumerate(stats):
        effects = logit_effects(adapter, tc, layer).cpu()
        path = dashboard_file(out_dir, layer)
        tmp = path.with_name(path.name + ".tmp")
        with dashboard_writer(tmp) as stream:
            bar = tqdm(
                range(tc.d_transcoder), desc=f"write layer {layer}", disable=not show_progress, leave=False
            )
            for feature in bar:
                write_detail(stream, feature_detail(s, layer, feature, effects[feature], token, labeller))
        os.replace(tmp, path)
        summaries.append(
            {
                "layer": layer,
                "features": tc.d_transcoder,
                "with_examples": int((s.n_active > 0).sum()),
                "tokens": int(s.n_tokens),
            }
        )
    return summaries
