"""The committed demo model: it loads like a hub model, predicts Austin, and does what the model card
says. Thresholds are derived from the model itself (its one-hop accuracy, chance levels) or are the
card's own claims; the measured numbers must reproduce metrics.json."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from attrgraph.demo.corpus import World, two_hop_prompt
from attrgraph.demo.evaluate import behaviour_metrics
from attrgraph.engine.models import LoadedModel

DALLAS = "Fact: the capital of the state containing Dallas is"


@pytest.fixture(scope="module")
def measured(demo_lm: LoadedModel, demo_world: World) -> dict[str, dict[str, Any]]:
    return behaviour_metrics(demo_lm.model, demo_lm.tokenizer, demo_world)


def test_tokenizer_conventions(demo_lm: LoadedModel) -> None:
    tok = demo_lm.tokenizer
    ids = tok(DALLAS)["input_ids"]
    assert ids[0] == tok.bos_token_id != 0
    assert tok.unk_token is not None
    for word in (" Austin", " Texas", " Dallas", " Sacramento"):
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word
    assert tok.convert_ids_to_tokens(tok("36+59=95", add_special_tokens=False)["input_ids"]) == [
        "36", "+", "59", "=", "95",
    ]  # fmt: skip


@torch.no_grad()
def test_dallas_predicts_austin(demo_lm: LoadedModel) -> None:
    ids = torch.tensor([demo_lm.tokenizer(DALLAS)["input_ids"]])
    logits = demo_lm.model(input_ids=ids).logits[0, -1]
    assert demo_lm.tokenizer.decode([int(logits.argmax())]) == " Austin"


def test_measurements_reproduce_model_card(
    measured: dict[str, dict[str, Any]], demo_metrics: dict[str, Any]
) -> None:
    for name, row in demo_metrics["behaviour"].items():
        assert measured[name]["accuracy"] == pytest.approx(row["accuracy"], abs=0.02), name
        assert measured[name]["n"] == row["n"], name


def test_one_hop_facts_learned(measured: dict[str, dict[str, Any]]) -> None:
    for name in ("city_to_state", "state_containing", "capital_of_state"):
        assert measured[name]["accuracy"] >= 0.9, (name, measured[name]["wrong"])


def test_trained_two_hop(measured: dict[str, dict[str, Any]]) -> None:
    # as good as the one-hop facts it is built from, up to a margin
    one_hop = min(measured[n]["accuracy"] for n in ("state_containing", "capital_of_state"))
    assert measured["two_hop_trained"]["accuracy"] >= 0.9 * one_hop


def test_held_out_two_hop_is_reported_honestly(
    measured: dict[str, dict[str, Any]], demo_world: World
) -> None:
    # composition is the hard part: held-out cities do no better than trained ones
    assert measured["two_hop_held_out"]["n"] == len(demo_world.two_hop_held_out)
    assert measured["two_hop_held_out"]["accuracy"] <= measured["two_hop_trained"]["accuracy"]


def test_antonyms_addition_and_copying(measured: dict[str, dict[str, Any]]) -> None:
    # well above chance: the chance level is computed from the answers of each task
    for name in ("antonyms_trained", "addition_trained", "induction", "ioi"):
        row = measured[name]
        assert row["accuracy"] >= min(0.5, 10 * row["chance"]), (name, row["accuracy"], row["wrong"])


def test_addition_is_approximate(measured: dict[str, dict[str, Any]]) -> None:
    # the card's claim: exact sums are a minority, but nearly every answer is within 2
    for name in ("addition_trained", "addition_held_out"):
        assert measured[name]["within_2"] >= 0.9 > measured[name]["accuracy"], measured[name]


def test_every_two_hop_prompt_is_same_length(demo_lm: LoadedModel, demo_world: World) -> None:
    lengths = {len(demo_lm.tokenizer(two_hop_prompt(c))["input_ids"]) for c in demo_world.cities}
    assert lengths == {11}, "every city must be one token"


def test_trace_command_predicts_austin(capsys: pytest.CaptureFixture[str]) -> None:
    """Right after install, no flags: `attrgraph trace PROMPT` uses the demo model and predicts Austin."""
    from attrgraph.cli import main

    assert main(["trace", DALLAS, "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    top = lines[lines.index("top predictions:") + 1]
    assert top.split(maxsplit=1)[1] == "' Austin'", top  # the first (most probable) prediction
