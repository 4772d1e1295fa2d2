"""The demo's feature dashboards: the production build (attrgraph.dashboards) on the demo's
held-out windows, with label hints from the toy world.

The world tells the labeller which cities, capitals and states belong together ("Texas (Dallas,
Houston)") and which words are too common in the corpus to name a feature by ("Fact", "Roll").
`corpus_lines` gives the same windows as texts with their special tokens spelled out; written as
.jsonl (they hold newlines), `attrgraph dashboards build --corpus` reads what the demo build reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from attrgraph.dashboards.build import BuildSettings
from attrgraph.dashboards.build import build_dashboards as build_from_windows
from attrgraph.dashboards.labels import LabelHints
from attrgraph.demo.corpus import World
from attrgraph.engine.transcoders.base import TranscoderSet

# Tokens too common in the toy world to name a feature by: a feature that fires on them is named by
# its context.
_FUNCTION_WORDS = """is of in the a an to and was were est es de le lo la el by at on for from with had has so
more then one day , . : = + - ! ? <bos> <eos> fact story copy again roll call count"""


def label_hints(world: World) -> LabelHints:
    """Each city, capital and state -> its state; the corpus's function words."""
    groups = {capital: state for state, capital in world.capital_of.items()}
    groups |= dict(world.state_of)  # a city's own state wins over a capital of the same name
    groups |= {state: state for state in world.capital_of}
    return LabelHints(groups, frozenset(_FUNCTION_WORDS.split()))


def windows(ids: Tensor, mask: Tensor) -> list[list[list[int]]]:
    """The demo's (N, T) windows as documents of one window each, padding dropped."""
    return [[row[keep].tolist()] for row, keep in zip(ids, mask, strict=True)]


def corpus_lines(tokenizer: Any, ids: Tensor, mask: Tensor) -> list[str]:
    """Each window as a line of text whose encoding is that window (the tokenizer adds its first
    `<bos>`; later documents' `<bos>` and every `<eos>` are written out)."""
    lines = []
    for [window] in windows(ids, mask):
        if window and window[0] == tokenizer.bos_token_id:
            window = window[1:]
        lines.append(
            "".join(tokenizer.convert_tokens_to_string([t]) for t in tokenizer.convert_ids_to_tokens(window))
        )
    return lines


def build_dashboards(
    model: Any,
    tokenizer: Any,
    tc: TranscoderSet,
    world: World,
    ids: Tensor,
    mask: Tensor,
    out_dir: Path,
    seed: int = 0,
    show_progress: bool = True,
) -> list[dict[str, int]]:
    """Write out_dir/layer_{l}.jsonl.gz for every layer from the windows ids (N, T) (mask: real
    tokens). Returns per-layer summaries."""
    return build_from_windows(
        model,
        tokenizer,
        tc,
        windows(ids, mask),
        out_dir,
        hints=label_hints(world),
        settings=BuildSettings(seed=seed, checkpoint_every=10**9),
        fingerprint="attrgraph demo build",
        total=int(ids.shape[0]),
        show_progress=show_progress,
    )
