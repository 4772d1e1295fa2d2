"""The streaming build on a tiny model: every transcoder kind, resuming after an interruption,
memory bounded by the transcoder size and not the corpus, and the CLI's errors."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch

from attrgraph.cli import main
from attrgraph.dashboards.build import CHECKPOINT, BuildSettings, CheckpointMismatch, build_dashboards
from attrgraph.dashboards.corpus import CorpusFile, document_windows
from attrgraph.engine.models import load_model
from attrgraph.engine.transcoders import load_transcoders
from attrgraph.engine.transcoders.base import TranscoderSet
from attrgraph.format.dashboards import dashboard_file, iter_dashboards
from tests.support.dashboards import tiny_pair, write_corpus
from tests.support.transcoders import TRANSCODER_KINDS, random_transcoders


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tiny_pair(tmp_path_factory.mktemp("tiny"))


def _build(
    model_dir: Path, tc: TranscoderSet, corpus: Path, out: Path, settings: BuildSettings, **kw: Any
) -> list[dict[str, int]]:
    lm = load_model(model_dir)
    docs = (document_windows(t, lm.tokenizer, 32) for t in CorpusFile(corpus).documents())
    return build_dashboards(
        lm.model, lm.tokenizer, tc, docs, out, settings=settings, show_progress=False, **kw
    )


def _files(out: Path, n_layers: int) -> list[bytes]:
    return [dashboard_file(out, layer).read_bytes() for layer in range(n_layers)]


@pytest.mark.parametrize("kind", TRANSCODER_KINDS)
def test_every_transcoder_kind(pair: tuple[Path, Path], kind: str, tmp_path: Path) -> None:
    tc = random_transcoders(kind, n_layers=2, d_model=64, d_transcoder=48)
    corpus = write_corpus(tmp_path / "corpus.txt", 40)
    summaries = _build(pair[0], tc, corpus, tmp_path / "out", BuildSettings(batch_size=8))
    assert [s["layer"] for s in summaries] == [0, 1]
    for layer in range(2):
        details = list(iter_dashboards(dashboard_file(tmp_path / "out", layer)))
        assert [d["index"] for d in details] == list(range(48))
        alive = [d for d in details if d["activation_frequency"] > 0]
        assert alive, "random transcoders fire on about a quarter of tokens"
        for d in alive:
            top = d["examples_quantiles"][0]["examples"]
            peaks = [ex["tokens_acts_list"][ex["max_token_index"]] for ex in top]
            assert peaks == sorted(peaks, reverse=True) and peaks[0] == d["act_max"]
            assert sum(d["histogram"]["counts"]) > 0
            assert d["quantile_values"] == sorted(d["quantile_values"])
            assert d["act_min"] <= d["quantile_values"][0] <= d["act_max"] == d["quantile_values"][-1]
            assert len(d["top_logits"]) == 10 and d["label"]
    assert not (tmp_path / "out" / CHECKPOINT).exists()


def test_interrupted_build_resumes_to_the_same_files(pair: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, tc_dir = pair
    tc = load_transcoders(tc_dir)
    corpus = write_corpus(tmp_path / "corpus.txt", 60)
    settings = BuildSettings(batch_size=4, checkpoint_every=5)
    _build(model_dir, tc, corpus, tmp_path / "whole", settings)

    def stop(done: int) -> None:
        if done >= 33:
            raise Interrupted

    with pytest.raises(Interrupted):
        _build(model_dir, tc, corpus, tmp_path / "resumed", settings, on_batch=stop)
    state = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert 20 <= state["documents"] < 33  # a checkpoint was written, and documents remain
    seen: list[int] = []
    _build(model_dir, tc, corpus, tmp_path / "resumed", settings, on_batch=seen.append)
    assert seen[0] > state["documents"]  # the documents of the checkpoint were skipped
    assert _files(tmp_path / "resumed", 2) == _files(tmp_path / "whole", 2)
    assert not (tmp_path / "resumed" / CHECKPOINT).exists()


def test_a_checkpoint_of_another_build_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, tc_dir = pair
    tc = load_transcoders(tc_dir)
    corpus = write_corpus(tmp_path / "corpus.txt", 30)

    def stop(done: int) -> None:
        if done > 10:
            raise Interrupted

    with pytest.raises(Interrupted):
        _build(
            model_dir,
            tc,
            corpus,
            tmp_path / "out",
            BuildSettings(batch_size=4, checkpoint_every=1),
            on_batch=stop,
        )
    with pytest.raises(CheckpointMismatch):
        _build(model_dir, tc, corpus, tmp_path / "out", BuildSettings(batch_size=4, seed=1))


def test_memory_does_not_grow_with_the_corpus(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """The state (checkpoint) has one size whatever the corpus; Python's peak allocation on a
    corpus 10x longer stays within a small margin of the 1x peak."""
    model_dir, tc_dir = pair
    tc = load_transcoders(tc_dir)
    sizes, peaks = [], []
    for n_docs in (40, 400):
        corpus = write_corpus(tmp_path / f"corpus{n_docs}.txt", n_docs)
        out = tmp_path / f"out{n_docs}"
        settings = BuildSettings(batch_size=8, checkpoint_every=8)

        def keep_checkpoint_size(done: int, out: Path = out, n_docs: int = n_docs) -> None:
            if (out / CHECKPOINT).exists():
                sizes.append((n_docs, (out / CHECKPOINT).stat().st_size))

        tracemalloc.start()
        _build(model_dir, tc, corpus, out, settings, on_batch=keep_checkpoint_size)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert {size for _, size in sizes if _ == 40} == {size for _, size in sizes if _ == 400}
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_cli_build_and_errors(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, tc_dir = pair
    corpus = write_corpus(tmp_path / "corpus.txt", 20)
    argv = ["dashboards", "build", "--model", str(model_dir), "--transcoders", str(tc_dir), "--quiet"]
    assert main([*argv, "--corpus", str(corpus)]) == 0
    assert dashboard_file(tc_dir / "dashboards", 1).is_file()  # next to the transcoders by default
    assert main([*argv, "--corpus", str(tmp_path / "missing.txt")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("attrgraph: error: corpus ")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"title": "no text"}\n')
    assert main([*argv, "--corpus", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f'attrgraph: error: {bad}:2: no string "text" field'
    assert (
        main([*argv[:2], "--model", str(model_dir), "--transcoders", "org/set", "--corpus", str(corpus)]) == 2
    )
    assert "--out is required" in capsys.readouterr().err
