"""Targets are exact single tokens of the vocabulary; anything else is an error naming the nearest ones."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from attrgraph.engine.targets import TargetError, TargetSpec, resolve_token, select_targets, suggest_tokens


@pytest.fixture(scope="module")
def demo_tokenizer() -> Any:
    """The demo model's word-level tokenizer: 'Austin' (a sentence's first word) and ' Austin'
    are different tokens, and unknown words read as <unk>."""
    from transformers import AutoTokenizer

    from attrgraph.bundled import demo_model_dir

    return AutoTokenizer.from_pretrained(demo_model_dir())


def test_exact_token_text_and_ids_resolve(demo_tokenizer: Any) -> None:
    austin = demo_tokenizer.encode(" Austin", add_special_tokens=False)
    assert resolve_token(demo_tokenizer, " Austin") == austin[0]
    assert resolve_token(demo_tokenizer, austin[0]) == austin[0]


def test_a_bare_word_that_also_exists_after_a_space_is_ambiguous(demo_tokenizer: Any) -> None:
    (bare,) = demo_tokenizer.encode("Austin", add_special_tokens=False)
    (spaced,) = demo_tokenizer.encode(" Austin", add_special_tokens=False)
    assert bare != spaced and bare != demo_tokenizer.unk_token_id
    with pytest.raises(TargetError) as raised:
        resolve_token(demo_tokenizer, "Austin")
    message = str(raised.value)
    assert "did you mean ' Austin'" in message and f"id {spaced}" in message and f"id {bare}" in message
    assert resolve_token(demo_tokenizer, bare) == bare  # the bare token stays reachable by id


@pytest.mark.parametrize(
    ("text", "why", "suggested"),
    [
        ("Austinx", "unknown token '<unk>'", " Austin"),
        ("austin", "unknown token '<unk>'", " Austin"),
        ("Texsa", "unknown token '<unk>'", " Texas"),
        ("Bostn", "unknown token '<unk>'", " Boston"),
    ],
)
def test_a_word_outside_the_vocabulary_suggests_the_nearest(
    demo_tokenizer: Any, text: str, why: str, suggested: str
) -> None:
    with pytest.raises(TargetError) as raised:
        resolve_token(demo_tokenizer, text)
    message = str(raised.value)
    assert message.startswith(f"target {text!r} is not a single token of the vocabulary")
    assert why in message
    assert f"did you mean {suggested!r}" in message  # the best suggestion comes first


def test_text_of_several_tokens_names_its_pieces(demo_tokenizer: Any) -> None:
    with pytest.raises(TargetError, match=r"splits into 2 tokens: ' big', ' small'"):
        resolve_token(demo_tokenizer, " big small")


def test_nothing_close_suggests_nothing(demo_tokenizer: Any) -> None:
    assert suggest_tokens(demo_tokenizer, "qqqqqqqq") == []
    with pytest.raises(TargetError) as raised:
        resolve_token(demo_tokenizer, "qqqqqqqq")
    assert "did you mean" not in str(raised.value)


@pytest.mark.parametrize("bad", ["", 10**7, -1])
def test_empty_text_and_ids_outside_the_vocabulary(demo_tokenizer: Any, bad: str | int) -> None:
    with pytest.raises(TargetError):
        resolve_token(demo_tokenizer, bad)


def test_select_targets_resolves_each_and_keeps_the_logit_difference_sides(demo_tokenizer: Any) -> None:
    logits = torch.zeros(len(demo_tokenizer))
    (big,) = demo_tokenizer.encode(" big", add_special_tokens=False)
    (small,) = demo_tokenizer.encode(" small", add_special_tokens=False)
    (diff,) = select_targets(
        demo_tokenizer,
        logits,
        TargetSpec(logit_diff=(" big", " small")),
        max_n_logits=10,
        desired_logit_prob=0.95,
    )
    assert (diff.token_id, diff.minus_token_id) == (big, small)
    assert (diff.token, diff.minus_token) == (" big", " small")
    with pytest.raises(TargetError, match="ambiguous"):
        select_targets(
            demo_tokenizer,
            logits,
            TargetSpec(tokens=(" big", "Austin")),
            max_n_logits=10,
            desired_logit_prob=0.95,
        )
