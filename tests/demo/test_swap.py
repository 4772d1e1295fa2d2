"""The Dallas -> Oakland swap of docs/demo-model.md ("The same swap through the intervention
engine"), measured with engine.interventions on the committed demo model.

The Dallas graph's intermediate-state features (layer 0 at the last token " is") are turned down
and Oakland's state features are set to k x their activations on the Oakland prompt at the matching
position. Thresholds come from the model itself: what it answers for Oakland, and how sure it is.
"""

from __future__ import annotations

import pytest

from attrgraph.engine.interventions import (
    InterventionOptions,
    InterventionResult,
    active_features,
    intervene,
    swap_from_prompt,
    swap_interventions,
)
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.transcoders.base import TranscoderSet

DALLAS = "Fact: the capital of the state containing Dallas is"
OAKLAND = "Fact: the capital of the state containing Oakland is"


def _top(result: InterventionResult, which: str) -> str:
    pred = result.before if which == "before" else result.after
    return pred.top[0][1]


def _prob(result: InterventionResult, token_id: int) -> tuple[float, float]:
    import torch

    before = torch.softmax(result.before.logits.double(), -1)[token_id]
    after = torch.softmax(result.after.logits.double(), -1)[token_id]
    return float(before), float(after)


@pytest.fixture(scope="module")
def answers(demo_lm: LoadedModel, demo_tc: TranscoderSet) -> dict[str, tuple[int, str, float]]:
    """Each prompt's own answer (token id, text, probability), from the model."""
    out = {}
    for name, prompt in (("dallas", DALLAS), ("oakland", OAKLAND)):
        result = intervene(demo_lm, demo_tc, prompt, [], InterventionOptions(n_generate=1))
        out[name] = result.before.top[0]
    return out


def test_prompts_answer_differently(answers: dict[str, tuple[int, str, float]]) -> None:
    assert answers["dallas"][1] == " Austin"
    assert answers["oakland"][1] == " Sacramento"


@pytest.mark.parametrize("k", [1.0])
def test_layer0_swap_changes_austin_to_sacramento(
    demo_lm: LoadedModel, demo_tc: TranscoderSet, answers: dict[str, tuple[int, str, float]], k: float
) -> None:
    austin, sacramento = answers["dallas"][0], answers["oakland"][0]
    result = swap_from_prompt(demo_lm, demo_tc, DALLAS, OAKLAND, layers=[0], position=-1, k=k)
    assert _top(result, "before") == " Austin"
    assert _top(result, "after") == answers["oakland"][1]
    p_sac_before, p_sac_after = _prob(result, sacramento)
    _, p_austin_after = _prob(result, austin)
    # The swapped model is about as sure of Sacramento as the Oakland prompt itself (within 10%).
    assert p_sac_after > 0.9 * answers["oakland"][2]
    assert p_sac_before < 0.01 and p_austin_after < 0.01
    assert result.after.continuation.startswith(answers["oakland"][1])
    assert result.kl_divergence > 1.0


def test_later_layers_do_not_carry_the_state(
    demo_lm: LoadedModel, demo_tc: TranscoderSet, answers: dict[str, tuple[int, str, float]]
) -> None:
    for layer in (1, 2, 3):
        result = swap_from_prompt(demo_lm, demo_tc, DALLAS, OAKLAND, layers=[layer], position=-1)
        assert _top(result, "after") == " Austin", layer


def test_removing_alone_or_adding_alone_is_not_a_swap(
    demo_lm: LoadedModel, demo_tc: TranscoderSet, answers: dict[str, tuple[int, str, float]]
) -> None:
    dallas = active_features(demo_lm, demo_tc, DALLAS, layers=[0], positions=[-1])
    oakland = active_features(demo_lm, demo_tc, OAKLAND, layers=[0], positions=[-1])
    assert dallas and oakland
    # Adding Oakland's features on top of Dallas's (nothing removed): the two codes compete.
    added = swap_interventions([], oakland, k=1.0)
    with_both = intervene(demo_lm, demo_tc, DALLAS, [a for a in added if a.mode.value == "set"])
    # the SET of a shared feature overrides it; the Dallas-only features stay
    p_sac = _prob(with_both, answers["oakland"][0])[1]
    swapped = swap_from_prompt(demo_lm, demo_tc, DALLAS, OAKLAND, layers=[0], position=-1)
    assert p_sac < _prob(swapped, answers["oakland"][0])[1]
