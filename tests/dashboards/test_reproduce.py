"""`attrgraph dashboards build` on the demo model and the demo's dashboard corpus reproduces the
committed dashboards (written by the demo build): labels, top tokens, logit effects, frequencies and
the top examples of a sample of features in every layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from attrgraph.bundled import demo_dashboards_dir, demo_dir, demo_model_dir, demo_transcoders_dir
from attrgraph.cli import main
from attrgraph.demo.build import SIZES, _eval_windows
from attrgraph.demo.corpus import make_world
from attrgraph.demo.dashboards import corpus_lines, label_hints, windows
from attrgraph.format.dashboards import load_dashboard

SAMPLE = range(0, 1024, 7)  # 147 features a layer, dead ones included


def _top(detail: dict[str, Any]) -> list[tuple[list[str], float]]:
    """Top examples up to their peak, with the peak activation. Windows that tie (the same prefix,
    so the same activation) may be listed in another order; their prefixes are equal."""
    groups = detail["examples_quantiles"]
    examples = groups[0]["examples"] if groups else []
    return [
        (ex["tokens"][: ex["max_token_index"] + 1], ex["tokens_acts_list"][ex["max_token_index"]])
        for ex in examples
    ]


def test_cli_reproduces_the_committed_demo_dashboards(tmp_path: Path) -> None:
    seed = json.loads((demo_dir() / "metrics.json").read_text())["seed"]
    tokenizer = AutoTokenizer.from_pretrained(str(demo_model_dir()))
    world = make_world(seed)
    ids, mask = _eval_windows(world, tokenizer, SIZES["full"], seed)  # what the demo build reads
    lines = corpus_lines(tokenizer, ids, mask)
    assert [[tokenizer(line)["input_ids"]] for line in lines] == windows(ids, mask)
    corpus = tmp_path / "demo-corpus.jsonl"  # JSON lines: the windows hold newlines
    corpus.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines), encoding="utf-8")
    hints = tmp_path / "hints.json"
    hints.write_text(label_hints(world).to_json(), encoding="utf-8")
    out = tmp_path / "dashboards"
    argv = [
        "dashboards",
        "build",
        "--model",
        str(demo_model_dir()),
        "--transcoders",
        str(demo_transcoders_dir()),
    ]
    argv += [
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--label-hints",
        str(hints),
        "--seed",
        str(seed),
        "--quiet",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the demo build ran: another thread count rounds differently
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)

    alive = 0
    for layer in range(4):
        for index in SAMPLE:
            new, old = load_dashboard(out, layer, index), load_dashboard(demo_dashboards_dir(), layer, index)
            where = (layer, index)
            for key in ("label", "label_source", "top_tokens", "top_logits", "bottom_logits", "act_max"):
                assert new[key] == old[key], (where, key, new[key], old[key])
            assert (
                abs(new["activation_frequency"] - old["activation_frequency"])
                <= 1e-3 * old["activation_frequency"]
            )
            assert _top(new) == _top(old), where
            alive += bool(_top(old))
    assert alive > 300  # most sampled features fire: the comparison is not of empty dashboards
