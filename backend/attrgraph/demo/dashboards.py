"""Feature dashboards: what each transcoder feature fires on and what it promotes.

For every feature of every layer (Neuronpedia feature-detail format, plus `label`):

    index, layer, label, label_source
    examples_quantiles   [{quantile_name, examples: [{tokens, tokens_acts_list, max_token_index}]}]
                         "Top activations" first, then samples from lower activation quantiles
    top_logits, bottom_logits, top_logit_values, bottom_logit_values
                         direct effect of the decoder row on the logits through the final norm's
                         weights and the unembedding (mean over the vocabulary removed)
    act_min, act_max, quantile_values, quantile_levels, histogram {counts, edges},
    activation_frequency (fraction of tokens where the feature fires), top_tokens

Numbers are rounded to float16 precision. Files: dashboards/layer_{l}.jsonl.gz, line i = feature i.

Automatic labels (users can edit them later; `label_source` says which rule made them):
* "say Austin" (logits): the decoder strongly promotes one token (top logit >= 1.5x the next);
* "Texas (Dallas, Houston)" or "Dallas, Houston, Waco" (activations): the tokens it fires on most,
  grouped by what the toy world knows about them (cities, capitals and states of one state);
* "'is' after Texas (Dallas, Houston)" (context): a feature that fires on a function word ("is",
  "de", "=") is named by what most of its top examples' contexts share: a state or a word.
"""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from attrgraph.demo.corpus import World
from attrgraph.engine.transcoders.base import TranscoderSet

N_TOP = 8  # "Top activations" examples
QUANTILES = ((0.75, 0.95), (0.5, 0.75), (0.0, 0.5))  # rank bands of the positive activations
N_PER_QUANTILE = 4
CONTEXT_BEFORE = 16
CONTEXT_AFTER = 3
N_LOGITS = 10
N_BINS = 16


def _h(x: float) -> float:
    """Round to float16 precision (what the files store)."""
    return float(torch.tensor(x, dtype=torch.float16)) if x == x else 0.0


def logit_effects(model: Any, tc: TranscoderSet, layer: int) -> Tensor:
    """Demeaned direct logit effect of each feature's decoder row: (d_tc, vocab)."""
    p = tc.layer(layer)
    w_dec = p.W_dec[:, -1] if tc.cross_layer else p.W_dec[:, 0]  # (d_tc, d_model)
    ln_w = model.transformer.ln_f.weight.detach().float()  # (d_model,)
    w_u = model.lm_head.weight.detach().float()  # (vocab, d_model)
    effects: Tensor = (w_dec.float() * ln_w) @ w_u.T  # (d_tc, vocab)
    return effects - effects.mean(-1, keepdim=True)


# Tokens too common to name a feature by: a feature that fires on them is named by its context.
_FUNCTION_WORDS = """is of in the a an to and was were est es de le lo la el by at on for from with had has so
more then one day , . : = + - ! ? <bos> <eos> fact story copy again roll call count"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())


class _Labeller:
    """Automatic labels from what a feature fires on and what it promotes (editable later)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.capital_state = {capital: state for state, capital in world.capital_of.items()}

    def state_of(self, word: str) -> str | None:
        """The state a city, state or capital belongs to."""
        if word in self.world.capital_of:
            return word
        return self.world.state_of.get(word) or self.capital_state.get(word)

    def name(self, words: list[str]) -> str:
        """'Texas (Dallas, Houston)' for places of one state, else the first words."""
        owners = {self.state_of(w) for w in words}
        if len(words) >= 2 and len(owners) == 1 and None not in owners:
            state = owners.pop()
            assert state is not None
            places = [w for w in words if w != state]
            return f"{state} ({', '.join(places[:2])})" if places else state
        return ", ".join(words[:3])

    def context(self, contexts: list[list[str]]) -> str | None:
        """What the contexts of a feature's top examples share: a state (named with the places seen),
        else a content word present in most of them."""
        if not contexts:
            return None
        states: Counter[str] = Counter()
        places: dict[str, Counter[str]] = {}
        words: Counter[str] = Counter()
        for ctx in contexts:
            seen = sorted({w.strip() for w in ctx if w.strip()})  # sorted: ties break the same way every run
            for w in seen:
                state = self.state_of(w)
                if state is not None:
                    places.setdefault(state, Counter())[w] += 1
            for state in sorted({s for w in seen if (s := self.state_of(w)) is not None}):
                states[state] += 1
            words.update(w for w in seen if w.lower() not in FUNCTION_WORDS)
        if states:
            state, count = states.most_common(1)[0]
            if count >= 0.6 * len(contexts):
                named = [w for w, _ in places[state].most_common(3) if w != state][:2]
                return f"{state} ({', '.join(named)})" if named else state
        if words:
            word, count = words.most_common(1)[0]
            if count >= 0.6 * len(contexts):
                return word
        return None

    def label(
        self,
        top_tokens: list[str],
        contexts: list[list[str]],
        top_logits: list[str],
        logit_values: list[float],
    ) -> tuple[str, str]:
        """(label, source): source is "logits", "activations" or "context"."""
        if (
            len(logit_values) >= 2
            and logit_values[0] > 0
            and logit_values[0] >= 1.5 * max(logit_values[1], 1e-6)
        ):
            return f"say {top_logits[0].strip()}", "logits"
        words = [t.strip() for t in top_tokens if t.strip()]
        content = [w for w in words if w.lower() not in FUNCTION_WORDS]
        if words and content and words[0] == content[0]:
            return self.name(content), "activations"
        shared = self.context(contexts)
        if shared and words:
            return f"{words[0]!r} after {shared}", "context"
        if words:
            return self.name(words), "activations"
        return (repr(top_tokens[0]) if top_tokens else "(no examples)"), "activations"


def _example(
    ids: Tensor, acts: Tensor, window: int, pos: int, starts: Tensor, tokens: list[str]
) -> dict[str, Any]:
    """One example: the window's tokens around `pos` (from its document start, at most CONTEXT_BEFORE)."""
    lo = max(int(starts[window, pos]), pos - CONTEXT_BEFORE)
    hi = pos + CONTEXT_AFTER + 1
    for i in range(pos + 1, min(hi, ids.shape[1])):  # stop at the next document
        if tokens[int(ids[window, i])] == "<bos>":
            hi = i
            break
    row_ids = ids[window, lo:hi].tolist()
    row_acts = acts[window, lo:hi]
    valid = [i for i, t in enumerate(row_ids) if tokens[t] != "<pad>"]
    end = valid[-1] + 1 if valid else 1
    return {
        "tokens": [tokens[t] for t in row_ids[:end]],
        "tokens_acts_list": [_h(float(a)) for a in row_acts[:end]],
        "max_token_index": pos - lo,
    }


def _document_starts(ids: Tensor, bos_id: int) -> Tensor:
    """(N, T) index of the `<bos>` that starts each position's document."""
    n, t = ids.shape
    positions = torch.arange(t).expand(n, t)
    marks = torch.where(ids == bos_id, positions, torch.zeros_like(positions))
    return marks.cummax(dim=1).values


@torch.no_grad()
def build_dashboards(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    tc: TranscoderSet,
    world: World,
    ids: Tensor,
    mask: Tensor,
    inputs: list[Tensor],
    out_dir: Path,
    seed: int = 0,
    show_progress: bool = True,
) -> list[dict[str, int]]:
    """Write dashboards/layer_{l}.jsonl.gz for every layer.

    ids, mask: (N, T) windows and their non-padding positions; inputs[l]: (mask.sum(), d_model) the
    transcoder inputs at those positions, in row-major order. Returns per-layer summary stats.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = [str(tokenizer.decode([i])) for i in range(len(tokenizer))]
    raw_tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    tokens = [("<pad>" if r == tokenizer.pad_token else v) for r, v in zip(raw_tokens, vocab, strict=True)]
    starts = _document_starts(ids, int(tokenizer.bos_token_id))
    flat_index = mask.flatten().nonzero().squeeze(1)  # (n_kept,) positions in the (N * T) grid
    n_kept = flat_index.numel()
    t_len = ids.shape[1]
    labeller = _Labeller(world)
    gen = torch.Generator().manual_seed(seed)
    summaries = []
    for layer in range(tc.n_layers):
        acts = tc.encode(layer, inputs[layer])  # (n_kept, d_tc)
        effects = logit_effects(model, tc, layer)  # (d_tc, vocab)
        path = out_dir / f"layer_{layer}.jsonl.gz"
        n_alive = 0
        # mtime=0 and no file name in the gzip header: the bytes depend on the content only
        with (
            path.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
            io.TextIOWrapper(gz, encoding="utf-8") as f,
        ):
            bar = tqdm(
                range(tc.d_transcoder), desc=f"dashboards {layer}", disable=not show_progress, leave=False
            )
            for feature in bar:
                a = acts[:, feature]  # (n_kept,)
                detail = _feature_detail(
                    layer, feature, a, effects[feature], ids, flat_index, starts, tokens, t_len, labeller, gen
                )
                n_alive += detail["activation_frequency"] > 0
                f.write(json.dumps(detail, ensure_ascii=False, separators=(",", ":")) + "\n")
        summaries.append(
            {"layer": layer, "features": tc.d_transcoder, "with_examples": n_alive, "tokens": n_kept}
        )
    return summaries


def _feature_detail(
    layer: int,
    feature: int,
    a: Tensor,
    effect: Tensor,
    ids: Tensor,
    flat_index: Tensor,
    starts: Tensor,
    tokens: list[str],
    t_len: int,
    labeller: _Labeller,
    gen: torch.Generator,
) -> dict[str, Any]:
    top_v, top_i = effect.topk(N_LOGITS)
    bot_v, bot_i = (-effect).topk(N_LOGITS)
    top_logits = [tokens[int(i)] for i in top_i]
    detail: dict[str, Any] = {
        "index": feature,
        "layer": layer,
        "top_logits": top_logits,
        "top_logit_values": [_h(float(v)) for v in top_v],
        "bottom_logits": [tokens[int(i)] for i in bot_i],
        "bottom_logit_values": [_h(-float(v)) for v in bot_v],
    }
    active = (a > 0).nonzero().squeeze(1)  # (n_active,) indices into the kept positions
    detail["activation_frequency"] = _h(active.numel() / max(1, a.numel()))
    if active.numel() == 0:
        detail.update(
            act_min=0.0,
            act_max=0.0,
            quantile_values=[],
            quantile_levels=[],
            examples_quantiles=[],
            histogram={"counts": [], "edges": []},
            top_tokens=[],
        )
        detail["label"], detail["label_source"] = "dead feature", "none"
        return detail
    values = a[active]
    order = values.argsort(descending=True)
    sorted_active, sorted_values = active[order], values[order]  # by descending activation

    grid = torch.zeros(ids.numel())
    grid[flat_index] = a
    grid = grid.view_as(ids)  # (N, T) this feature's activation at every position

    def to_example(k: int) -> dict[str, Any]:
        window, pos = divmod(int(flat_index[sorted_active[k]]), t_len)
        return _example(ids, grid, window, pos, starts, tokens)

    # top examples: one per window
    top: list[int] = []
    seen: set[int] = set()
    for k in range(min(len(order), 200)):
        window = int(flat_index[sorted_active[k]]) // t_len
        if window not in seen:
            seen.add(window)
            top.append(k)
        if len(top) == N_TOP:
            break
    quantiles: list[dict[str, Any]] = [
        {"quantile_name": "Top activations", "examples": [to_example(k) for k in top]}
    ]
    n = len(order)
    for lo, hi in QUANTILES:
        # ranks from the top: band [lo, hi) of the activation distribution
        first, last = int(n * (1 - hi)), max(int(n * (1 - lo)), int(n * (1 - hi)) + 1)
        first, last = min(first, n - 1), min(last, n)
        pool = torch.arange(first, last)
        if pool.numel() > N_PER_QUANTILE:
            pool = pool[torch.randperm(pool.numel(), generator=gen)[:N_PER_QUANTILE]].sort().values
        quantiles.append(
            {
                "quantile_name": f"Interval {lo:.2f}-{hi:.2f}",
                "examples": [to_example(int(k)) for k in pool if int(k) not in top],
            }
        )
    levels = [0.5, 0.75, 0.9, 0.99, 1.0]
    qv = torch.quantile(sorted_values.float(), torch.tensor(levels)) if n > 1 else sorted_values.repeat(5)
    act_max = float(sorted_values[0])
    counts = torch.histc(values, bins=N_BINS, min=0.0, max=act_max)
    token_counts: Counter[str] = Counter()
    for k in range(min(n, 50)):
        token_counts[tokens[int(ids.flatten()[flat_index[sorted_active[k]]])]] += 1
    top_tokens = [t for t, _ in token_counts.most_common(5)]
    detail.update(
        act_min=_h(float(sorted_values[-1])),
        act_max=_h(act_max),
        quantile_levels=levels,
        quantile_values=[_h(float(v)) for v in qv],
        histogram={
            "counts": [int(c) for c in counts],
            "edges": [_h(act_max * i / N_BINS) for i in range(N_BINS + 1)],
        },
        examples_quantiles=quantiles,
        top_tokens=top_tokens,
    )
    contexts = [ex["tokens"][: ex["max_token_index"]] for ex in quantiles[0]["examples"]]
    detail["label"], detail["label_source"] = labeller.label(
        top_tokens, contexts, top_logits, [float(v) for v in top_v[:2]]
    )
    return detail


def iter_dashboards(path: Path) -> Iterable[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
