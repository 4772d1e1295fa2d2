"""The attention section of docs/demo-model.md ("Why ' is' attends to ' Dallas'"), measured again on
the committed demo model by attrgraph.demo.attention: every number the card states is recomputed
here and must match it to its printed rounding, and the card must still print it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from attrgraph.demo.attention import attention_analysis
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.transcoders.base import TranscoderSet

CARD = Path(__file__).resolve().parents[2] / "docs" / "demo-model.md"


@pytest.fixture(scope="module")
def analysis(demo_lm: LoadedModel, demo_tc: TranscoderSet) -> dict[str, Any]:
    return attention_analysis(demo_lm, demo_tc)


def _card() -> str:
    text = CARD.read_text()
    start = text.index('## Why " is" attends to " Dallas"')
    return text[start : text.index("\n## ", start + 1)]


def test_the_top_head_carries_dallas_to_is(analysis: dict[str, Any]) -> None:
    card = _card()
    assert analysis["n_crossing_edges"] == 691 and "691 edges" in card
    assert analysis["top_head"] == {"layer": 0, "head": 3} and "head 0.3" in card
    shares = {(s["layer"], s["head"]): s["share"] for s in analysis["head_shares"]}
    for head, share, text in [((0, 3), 0.915, "91.5%"), ((0, 0), 0.075, "7.5%"), ((0, 1), 0.01, "1.0%")]:
        assert shares[head] == pytest.approx(share, abs=0.0015) and text in card
    keys = {k["token"]: k for k in analysis["keys"] if k["token"] != " the"}
    assert keys[" Dallas"]["pattern"] == pytest.approx(0.728, abs=0.0015) and "0.728" in card
    others = [k for k in analysis["keys"] if k["token"] != " Dallas"]
    assert max(k["pattern"] for k in others) == pytest.approx(0.053, abs=0.0015) and "0.053" in card


def test_why_dallas_is_the_key(analysis: dict[str, Any]) -> None:
    card = _card()
    qk = analysis["qk"]
    for name, value in [
        ("score", -5.233),
        ("pairs_total", 1.684),
        ("q_bias_terms", 0.643),
        ("k_bias_terms", -4.972),
        ("bias", -2.589),
    ]:
        assert qk[name] == pytest.approx(value, abs=0.0015), name
        assert f"{value:.3f}".replace("-", "−") in card, name
    total = qk["pairs_total"] + qk["q_bias_terms"] + qk["k_bias_terms"] + qk["bias"]
    assert total == pytest.approx(qk["score"], abs=0.003)
    assert [p[:2] for p in analysis["qk_pairs"]] == [["E_8_10", "E_220_9"]]  # Emb " is" x Emb " Dallas"
    runner = analysis["runner_up"]
    assert runner["token"] == " containing" and runner["score"] == pytest.approx(-7.857, abs=0.0015)
    assert "−7.857" in card
    marginals = {k["pos"]: k["key_embedding_marginal"] for k in analysis["keys"]}
    dallas = marginals.pop(9)
    assert dallas == pytest.approx(2.328, abs=0.0015) and "+2.328" in card
    assert min(marginals.values()) == pytest.approx(-1.986, abs=0.0015) and "−1.986" in card
    assert max(marginals.values()) == pytest.approx(0.012, abs=0.0015) and "+0.012" in card


def test_ablating_the_head_removes_austin(analysis: dict[str, Any]) -> None:
    card = _card()
    assert analysis["p_answer"] == pytest.approx(0.9999, abs=0.00015) and "0.9999" in card
    ablated = {a["head"]: a for a in analysis["ablations"]}
    top = ablated.pop(3)
    assert top["p_answer"] == pytest.approx(0.0036, abs=0.00015) and "0.0036" in card
    assert [t for t, _ in top["top"]] == [" Sacramento", " Nashville"]
    assert [p for _, p in top["top"]] == pytest.approx([0.361, 0.355], abs=0.0015)
    assert "0.361" in card and "0.355" in card
    assert min(a["p_answer"] for a in ablated.values()) >= 0.9997 and "0.9997" in card
