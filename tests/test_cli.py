"""`attrgraph trace`: a summary and a graph file on success; one line and exit status 2 on bad input."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# --- chat prompts, strict targets and limits -------------------------------------------------------


@pytest.fixture(scope="module")
def chat_sources(tmp_path_factory: pytest.TempPathFactory, sources: tuple[str, str]) -> tuple[str, str]:
    """The tiny llama with a chat template on its tokenizer, and the same transcoders."""
    from tests.support.chat import make_tiny_chat_model

    model = make_tiny_chat_model(tmp_path_factory.mktemp("cli-chat") / "model")
    return str(model), sources[1]


@pytest.fixture
def restore_progress_bars() -> Iterator[None]:
    """--quiet turns transformers' progress bars off for the process: on before (an earlier --quiet
    must not make a test pass) and after (for other tests)."""
    import transformers

    transformers.utils.logging.enable_progress_bar()
    yield
    transformers.utils.logging.enable_progress_bar()


def test_chat_file_traces_the_rendered_template(
    chat_sources: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.chat import CHAT, RENDERED

    chat_file = tmp_path / "chat.json"
    chat_file.write_text(json.dumps(CHAT))
    out = tmp_path / "graph.json"
    model, transcoders = chat_sources
    args = ["trace", "--chat", str(chat_file), "--model", model, "--transcoders", transcoders, "--quiet"]
    code = main([*args, "--max-n-logits", "1", "--max-feature-nodes", "32", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"prompt: {RENDERED!r}" in captured.out
    metadata = json.loads(out.read_bytes())["metadata"]
    assert metadata["prompt"] == RENDERED
    tokens = metadata["prompt_tokens"]
    assert tokens[0] == "<|bos|>" and tokens.count("<|bos|>") == 1  # the template's BOS, only once
    # The export shows a newline token as ⏎.
    assert "".join(tokens[1:]).replace("\u23ce", "\n") == RENDERED.removeprefix("<|bos|>")


def test_chat_from_stdin(
    chat_sources: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps([{"role": "user", "content": "Hi"}])))
    model, transcoders = chat_sources
    code = main(["trace", "--chat", "-", "--model", model, "--transcoders", transcoders, "--quiet"])
    assert code == 0
    assert "<turn> user\\nHi<end>\\n<turn> assistant\\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("chat", "extra", "message"),
    [
        ('[{"role": "user", "content": "Hi"}]', ["some prompt"], "either a PROMPT or --chat"),
        ("{not json", [], "is not JSON"),
        ('{"role": "user"}', [], "must be a JSON list of messages"),
        ("[]", [], "the chat has no messages"),
        ('[{"role": "user", "content": " "}]', [], "every message's content is blank"),
    ],
)
def test_bad_chats_exit_2(
    chat: str, extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat_file = tmp_path / "chat.json"
    chat_file.write_text(chat)
    # A model that does not exist: each of these is refused before any model is loaded.
    code = main(
        ["trace", *extra, "--chat", str(chat_file), "--model", "/does/not/exist", "--transcoders", "x"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("attrgraph: error:") and message in err[0]


def test_chat_for_a_model_without_a_template_exits_2(
    sources: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat_file = tmp_path / "chat.json"
    chat_file.write_text('[{"role": "user", "content": "Hi"}]')
    model, transcoders = sources
    code = main(
        ["trace", "--chat", str(chat_file), "--model", model, "--transcoders", transcoders, "--quiet"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "this model has no chat template" in err[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trace", "   ", "--model", "/does/not/exist", "--transcoders", "x"], "the prompt is empty"),
        (["trace", "--model", "/does/not/exist"], "give a PROMPT"),
        (["trace", "hello", "--model", "/does/not/exist"], "a model needs its transcoders"),
        (["trace", "--chat", "/no/such/chat.json"], "cannot read --chat /no/such/chat.json"),
    ],
)
def test_refused_before_loading_anything(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("attrgraph: error:") and message in err[0]


def test_quiet_silences_every_progress_bar(
    sources: tuple[str, str], capsys: pytest.CaptureFixture[str], restore_progress_bars: None
) -> None:
    model, transcoders = sources
    code = main(["trace", "The capital", "--model", model, "--transcoders", transcoders, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""  # neither ours nor transformers' "Loading weights"


# On the demo model (word-level vocabulary, 96-token context).
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "Austin"], "did you mean ' Austin'"),
        (["--target", "Zyzzyva"], "'Zyzzyva' is not a single token of the vocabulary"),
        (["--logit-diff", "Texsa", " Austin"], "did you mean ' Texas'"),
    ],
)
def test_demo_targets_are_strict_and_suggest(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str], restore_progress_bars: None
) -> None:
    code = main(["trace", "Fact: the capital of the state containing Dallas is", "--quiet", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("attrgraph: error:") and message in err[0]


def test_demo_prompt_longer_than_the_context_exits_2(
    capsys: pytest.CaptureFixture[str], restore_progress_bars: None
) -> None:
    prompt = " ".join(["the"] * 120)  # 121 tokens with BOS; the demo model's context is 96
    code = main(["trace", prompt, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "attrgraph: error: the prompt has 121 tokens; the limit is 96 (the model's context)"
    ]


def test_demo_logit_difference_reads_a_minus_b(
    capsys: pytest.CaptureFixture[str], restore_progress_bars: None
) -> None:
    code = main(
        [
            "trace",
            "The opposite of big is",
            "--logit-diff",
            " small",
            " big",
            "--quiet",
            "--max-feature-nodes",
            "32",
        ]
    )
    assert code == 0
    assert "' small' minus ' big'" in capsys.readouterr().out


def test_target_ids(sources: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    model, transcoders = sources
    args = ["trace", "The capital", "--model", model, "--transcoders", transcoders, "--quiet"]
    assert main([*args, "--target-id", "7", "--target-id", "9", "--max-feature-nodes", "8"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if line.startswith("    ")]) == 2
    assert main([*args, "--target-id", "100000"]) == 2
    assert "outside the vocabulary" in capsys.readouterr().err


def test_qk_writes_checkable_qk_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_progress_bars: None
) -> None:
    """`--qk` on the demo: QK results on nodes that validate against the schema, whose terms sum to
    their score, whose score a recomputation from the model's own weights matches, and that an
    import followed by an export keeps."""
    import jsonschema
    from transformers import AutoModelForCausalLM

    from attrgraph.bundled import demo_model_dir
    from attrgraph.engine.interop import from_json, to_json

    out = tmp_path / "g.json"
    prompt = "Fact: the capital of the state containing Dallas is"
    assert main(["trace", prompt, "--qk", "-o", str(out), "--quiet"]) == 0
    assert "qk: head " in capsys.readouterr().out
    document = json.loads(out.read_text())
    schema = json.loads((Path(__file__).parent / "data" / "graph-schema.json").read_text())
    jsonschema.validate(document, schema)
    results = {n["node_id"]: n["qk_tracing_results"] for n in document["nodes"] if "qk_tracing_results" in n}
    assert len(results) == 4  # the default number of top heads, each on its own node
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir()).eval()
    token_ids = document["metadata"]["attrgraph"]["token_ids"]
    node_ids = {n["node_id"] for n in document["nodes"]} | set(document["qk_only_nodes"])
    for node_id, r in results.items():
        assert int(node_id.rsplit("_", 1)[1]) == r["query_pos"]  # it sits at the position it explains
        expected = _gpt2_score(model, token_ids, r["layer"], r["head"], r["query_pos"], r["key_pos"])
        assert r["score"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
        terms = r["pairs_total"] + r["q_bias_terms"] + r["k_bias_terms"] + r["bias"]
        assert terms == pytest.approx(r["score"], rel=1e-4, abs=1e-5)
        named = {x for pair in r["pair_wise_contributors"] for x in pair[:2]}
        assert named <= node_ids  # every contributor is a node or described in qk_only_nodes
    again = to_json(from_json(document))
    kept = {n["node_id"]: n["qk_tracing_results"] for n in again["nodes"] if "qk_tracing_results" in n}
    assert kept == results
    assert again["qk_only_nodes"] == document["qk_only_nodes"]
    broken = json.loads(out.read_text())
    next(n for n in broken["nodes"] if "qk_tracing_results" in n)["qk_tracing_results"]["score"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def _gpt2_score(model: Any, token_ids: list[int], layer: int, head: int, q_pos: int, k_pos: int) -> float:
    """A GPT-2 head's pre-softmax score from the model alone: the attention module's input in an
    ordinary forward pass (after ln_1), its own c_attn projection, the scale GPT-2 applies."""
    import torch

    block = model.transformer.h[layer]
    seen: dict[str, Any] = {}
    handle = block.attn.register_forward_pre_hook(lambda module, args: seen.update(x=args[0][0].double()))
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([token_ids]))
    finally:
        handle.remove()
    config = model.config
    d_model, d_head = config.n_embd, config.n_embd // config.n_head
    qkv = seen["x"] @ block.attn.c_attn.weight.double() + block.attn.c_attn.bias.double()
    q = qkv[q_pos, head * d_head : (head + 1) * d_head]
    k = qkv[k_pos, d_model + head * d_head : d_model + (head + 1) * d_head]
    scale = d_head**-0.5 if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= layer + 1
    return float(q @ k) * scale


def test_estimate_prints_memory_and_time_without_tracing(
    capsys: pytest.CaptureFixture[str], restore_progress_bars: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attrgraph.tracing

    def no_trace(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("--estimate must not trace")

    monkeypatch.setattr(attrgraph.tracing, "trace_request", no_trace)
    code = main(["trace", "The capital of Texas is", "--quiet", "--estimate", "--max-feature-nodes", "64"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("estimated peak memory") and "GiB" in out and " s (dominated by " in out
    assert "feature nodes, batch " in out
    assert "  weights: " in out and "  edges: " in out


def test_estimate_that_does_not_fit_names_the_setting(
    capsys: pytest.CaptureFixture[str], restore_progress_bars: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attrgraph.engine.estimate

    monkeypatch.setattr(attrgraph.engine.estimate, "device_budget", lambda device: 2**20)
    code = main(["trace", "The capital of Texas is", "--quiet", "--estimate"])
    out = capsys.readouterr().out
    assert code == 0 and "does not fit: " in out and "budget 0.00 GiB" in out
