"""A tiny model, its transcoders and a seeded text corpus for the dashboard build tests."""

from __future__ import annotations

import random
from pathlib import Path

from attrgraph.engine.transcoders.saving import save_transcoders
from tests.support.models import CORPUS, make_tiny_model
from tests.support.transcoders import random_transcoders

WORDS = sorted({w for line in CORPUS.splitlines() for w in line.split() if w.isalpha()})


def write_corpus(path: Path, n_docs: int, seed: int = 0) -> Path:
    """`n_docs` one-line documents of 3-20 words from the tiny tokenizer's training text."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) for _ in range(n_docs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_pair(root: Path, kind: str = "jumprelu_skip") -> tuple[Path, Path]:
    """A tiny GPT-2 and random transcoders of `kind` saved under `root`: (model dir, transcoder dir)."""
    model_dir = make_tiny_model("gpt2", root / "model")
    tc = random_transcoders(kind, n_layers=2, d_model=64, d_transcoder=48, name=f"tiny-{kind}")
    tc_dir = save_transcoders(tc, root / "transcoders", model_name="tiny-gpt2")
    return model_dir, tc_dir
