"""`attrgraph trace`: a summary and a graph file on success; one line and exit status 2 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from attrgraph.cli import main
from attrgraph.engine.transcoders import save_transcoders
from tests.support.models import make_tiny_model
from tests.support.transcoders import random_transcoders


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("cli")
    model = make_tiny_model("llama", root / "model")
    tc = random_transcoders("relu", n_layers=2, d_model=64)
    save_transcoders(tc, root / "transcoders", model_name="tiny")
    return str(model), str(root / "transcoders")


def test_trace_prints_summary_and_writes_graph(
    sources: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, transcoders = sources
    out = tmp_path / "graph.json"
    code = main(
        [
            "trace",
            "The capital of France is",
            "--model",
            model,
            "--transcoders",
            transcoders,
            "--max-n-logits",
            "3",
            "-o",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "top predictions:" in captured.out and "scores: replacement" in captured.out
    assert "features" in captured.err  # the progress bar went to stderr
    graph = json.loads(out.read_bytes())
    logits = [n for n in graph["nodes"] if n["feature_type"] == "logit"]
    assert len(logits) == 3 and graph["links"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "/does/not/exist"], "does not exist"),
        (["--target", "zzqqzzqqzzqq"], "not a single token"),
        (["--max-tokens", "2"], "the limit is 2"),
        (["--desired-logit-prob", "1.5"], "desired-logit-prob"),
        (["-o", "/no/such/dir/g.json"], "does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    sources: tuple[str, str], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model, transcoders = sources
    args = ["trace", "The capital of France is", "--model", model, "--transcoders", transcoders, "--quiet"]
    # A later --model wins in argparse, so the bad-model case overrides the good one.
    code = main(args + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("attrgraph: error:")


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["trace", "x", "--max-feature-nodes", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_every_subcommand_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for command in ("trace", "demo", "serve", "worker"):
        assert command in listed


@pytest.mark.parametrize("module", ["attrgraph.demo.cli", "attrgraph.service_cli"])
def test_a_broken_subcommand_module_fails_loudly(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A subcommand whose module cannot be imported must stop the command, not quietly disappear
    from it (None in sys.modules makes the next import raise ImportError)."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=module):
        main(["--help"])
