"""Feature edits for the demo's analyses, through the engine's own code paths.

Transcoder inputs come from the replacement model's hooks and edits run through
`engine.interventions` (as `POST /api/interventions` does), so the analyses hold for any model
family the engine's adapter knows, not only the GPT-2 the demo happens to train.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attrgraph.engine.interventions import FeatureIntervention, InterventionOptions, Mode, next_token_logits
from attrgraph.engine.replacement import ReplacementModel
from attrgraph.engine.transcoders.base import TranscoderSet

# Edits of every feature at a position (all layers) exceed the API's default cap.
_NEXT_TOKEN_ONLY = InterventionOptions(max_interventions=100_000)


@dataclass(frozen=True)
class DemoLM:
    """A model and its tokenizer in the shape the engine's entry points take."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str = "attrgraph-demo"
    revision: str = ""


@dataclass(frozen=True)
class FeatureRef:
    layer: int
    pos: int
    index: int
    activation: float

    def key(self) -> str:
        return f"L{self.layer}/{self.index}@{self.pos}"


@torch.no_grad()
def transcoder_inputs(model: PreTrainedModel, tc: TranscoderSet, ids: Tensor) -> list[Tensor]:
    """What each layer's transcoder reads: ids (B, T) -> per layer (B, T, d_model), float32."""
    rm = ReplacementModel(model, tc)
    found: list[Tensor] = []

    def keep(layer: int, x: Tensor) -> None:
        found.append(x.detach().float())

    with rm.hooks(lambda x: x, keep, lambda layer, out: out, {}):
        model(input_ids=ids)
    return found


Edit = tuple[Sequence[FeatureRef], Sequence[FeatureRef]]  # (features removed, features added)


def run_with_edits(
    lm: DemoLM,
    ids: Tensor,
    tc: TranscoderSet,
    remove: Sequence[FeatureRef],
    add: Sequence[FeatureRef] = (),
) -> Tensor:
    """Next-token log-probabilities (vocab,) at the last position of ids (1, T) with the `remove`
    features ablated and the `add` features' activations raised by theirs (set to it where the
    feature is also removed), at their layer and position.

    Everything downstream is recomputed from the edited residual stream (features plus their
    original error terms: the replacement model, which matches the model exactly without edits).
    """
    (logprobs,) = run_edits(lm, ids, tc, [(remove, add)])
    return logprobs


def run_edits(lm: DemoLM, ids: Tensor, tc: TranscoderSet, edits: Sequence[Edit]) -> list[Tensor]:
    """`run_with_edits` for several edits of one prompt, sharing its forward pass."""
    sets = [_interventions(remove, add) for remove, add in edits]
    logits = next_token_logits(lm, tc, [int(i) for i in ids[0].tolist()], sets, _NEXT_TOKEN_ONLY)
    return [row.float().log_softmax(-1) for row in logits]


def _interventions(remove: Sequence[FeatureRef], add: Sequence[FeatureRef]) -> list[FeatureIntervention]:
    removed = {(r.layer, r.pos, r.index) for r in remove}
    out = [FeatureIntervention(r.layer, r.pos, r.index, Mode.ABLATE) for r in remove]
    # A later intervention on the same feature wins, so SET after ABLATE leaves the added value.
    for a in add:
        mode = Mode.SET if (a.layer, a.pos, a.index) in removed else Mode.ADD
        out.append(FeatureIntervention(a.layer, a.pos, a.index, mode, a.activation))
    return out


def margin(logprobs: Tensor, answer: int) -> float:
    """The answer's logit minus the largest other logit."""
    others = torch.cat([logprobs[:answer], logprobs[answer + 1 :]])
    return float(logprobs[answer] - others.max())


def token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{text!r} is not a single token")
    return int(ids[0])
