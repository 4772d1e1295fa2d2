"""Which transcoder features pick out a state on the two-hop prompts, and does ablating them
matter ("Fact: the capital of the state containing CITY is")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attrgraph.demo.corpus import World, two_hop_prompt
from attrgraph.demo.edits import DemoLM, Edit, FeatureRef, margin, run_edits, token_id, transcoder_inputs
from attrgraph.engine.transcoders.base import TranscoderSet

# Positions searched for state features in "Fact: the capital of the state containing CITY is":
# the city token and the last token (counted from the end).
CITY_OFFSET, LAST_OFFSET = 2, 1


@dataclass(frozen=True)
class StateFeatures:
    """Feature activations on every city's two-hop prompt, and how well each feature picks out a state.

    acts[offset][layer]: (n_cities, d_tc) activations at the position `offset` from the end.
    score[offset][state]: (n_layers, d_tc) (mean over the state's cities - the largest mean over any
    other state's cities) / the feature's largest activation on any city, times the fraction of the
    state's cities it fires on. 1 for a feature that fires on all of a state's cities and no others;
    near 0 for one city's own feature; <= 0 for a feature shared across states.
    """

    rows: dict[str, int]
    length: int  # prompt length in tokens (all cities are one token)
    acts: dict[int, list[Tensor]]
    score: dict[int, dict[str, Tensor]]

    def top(self, state: str, city: str, n: int, min_score: float = 0.0) -> list[tuple[float, FeatureRef]]:
        """The `n` best-scoring features for `state` active on `city`'s prompt, at either position."""
        found: list[tuple[float, FeatureRef]] = []
        for offset, per_layer in self.acts.items():
            for layer, acts in enumerate(per_layer):
                here = acts[self.rows[city]]  # (d_tc,)
                score = torch.where(here > 0, self.score[offset][state][layer], torch.tensor(-1.0))
                values, idx = score.topk(n)
                found += [
                    (float(v), FeatureRef(layer, self.length - offset, int(i), float(here[i])))
                    for v, i in zip(values, idx, strict=True)
                    if float(v) > min_score
                ]
        found.sort(key=lambda t: -t[0])
        return found[:n]


@torch.no_grad()
def state_features(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tc: TranscoderSet, world: World
) -> StateFeatures:
    cities = list(world.cities)
    ids = torch.tensor([tokenizer(two_hop_prompt(c))["input_ids"] for c in cities])  # (n_cities, T)
    inputs = transcoder_inputs(model, tc, ids)  # per layer (n_cities, T, d_model)
    states = list(world.states)
    members = {s: [i for i, c in enumerate(cities) if world.state_of[c] == s] for s in states}
    acts: dict[int, list[Tensor]] = {}
    score: dict[int, dict[str, Tensor]] = {}
    for offset in (CITY_OFFSET, LAST_OFFSET):
        acts[offset] = [tc.encode(layer, x[:, -offset]) for layer, x in enumerate(inputs)]
        stacked = torch.stack(acts[offset])  # (n_layers, n_cities, d_tc)
        peak = stacked.max(1).values.clamp_min(1e-6)  # (n_layers, d_tc)
        means = torch.stack([stacked[:, members[s]].mean(1) for s in states], 1)  # (n_layers, n_states, d_tc)
        score[offset] = {}
        for j, s in enumerate(states):
            others = torch.cat([means[:, :j], means[:, j + 1 :]], dim=1).max(1).values  # (n_layers, d_tc)
            coverage = (stacked[:, members[s]] > 0).float().mean(1)  # (n_layers, d_tc)
            score[offset][s] = (means[:, j] - others) / peak * coverage
    return StateFeatures({c: i for i, c in enumerate(cities)}, ids.shape[1], acts, score)


@torch.no_grad()
def mediation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tc: TranscoderSet,
    world: World,
    cities: list[str],
    sf: StateFeatures | None = None,
    n_features: int = 3,
) -> dict[str, Any]:
    """For each city the model answers right: ablate its `n_features` best state features (score >
    0.5, city or last position) and, as a control, as many active features of the same layers and
    positions that pick out no state. Reports the mean fraction of the answer's logit margin (its
    logit minus the best other logit) that survives, and how often the answer stops being top-1."""
    sf = sf or state_features(model, tokenizer, tc, world)
    lm = DemoLM(model, tokenizer)
    kept, flipped, ctrl_kept, ctrl_flipped, n, skipped = 0.0, 0, 0.0, 0, 0, 0
    for city in cities:
        state = world.state_of[city]
        answer = token_id(tokenizer, f" {world.capital_of[state]}")
        ids = torch.tensor([tokenizer(two_hop_prompt(city))["input_ids"]])
        chosen = [ref for _, ref in sf.top(state, city, n_features, min_score=0.5)]
        controls = _controls(sf, city, chosen)
        edits: list[Edit] = [([], []), (chosen, []), (controls, [])] if chosen else [([], [])]
        base, *edited = run_edits(lm, ids, tc, edits)
        if int(base.argmax()) != answer:
            continue
        if not chosen:
            skipped += 1
            continue
        after, c_after = edited
        n += 1
        kept += margin(after, answer) / margin(base, answer)
        flipped += int(after.argmax()) != answer
        ctrl_kept += margin(c_after, answer) / margin(base, answer)
        ctrl_flipped += int(c_after.argmax()) != answer
    return {
        "n_cities": n,
        "n_without_state_feature": skipped,
        "answer_margin_kept": round(kept / max(1, n), 4),
        "answer_flipped": round(flipped / max(1, n), 4),
        "control_answer_margin_kept": round(ctrl_kept / max(1, n), 4),
        "control_answer_flipped": round(ctrl_flipped / max(1, n), 4),
    }


def _controls(sf: StateFeatures, city: str, chosen: list[FeatureRef]) -> list[FeatureRef]:
    """For each chosen feature: an active feature of the same layer and position that prefers no
    state, with the closest activation."""
    controls = []
    for ref in chosen:
        offset = sf.length - ref.pos
        a = sf.acts[offset][ref.layer][sf.rows[city]]
        best = torch.stack([sc[ref.layer] for sc in sf.score[offset].values()]).max(0).values
        ok = (a > 0) & (best <= 0)
        if ok.any():
            dist = torch.where(ok, (a - ref.activation).abs(), torch.full_like(a, float("inf")))
            idx = int(dist.argmin())
            controls.append(FeatureRef(ref.layer, ref.pos, idx, float(a[idx])))
    return controls


def state_similarity(sf: StateFeatures, world: World) -> dict[str, dict[str, float]]:
    """Mean cosine similarity of the feature activations of two cities' two-hop prompts, for pairs in
    the same state and in different states, per position and layer: does a layer encode the state?"""
    cities = list(sf.rows)
    states = [world.state_of[c] for c in cities]
    same = torch.tensor([[a == b for b in states] for a in states])  # (n, n)
    off_diag = ~torch.eye(len(cities), dtype=torch.bool)
    out: dict[str, dict[str, float]] = {}
    for offset, name in ((CITY_OFFSET, "city"), (LAST_OFFSET, "last")):
        for layer, acts in enumerate(sf.acts[offset]):
            unit = acts / acts.norm(dim=1, keepdim=True).clamp_min(1e-6)
            cos = unit @ unit.T  # (n, n)
            out[f"{name}_L{layer}"] = {
                "same_state": round(float(cos[same & off_diag].mean()), 3),
                "different_state": round(float(cos[~same].mean()), 3),
            }
    return out
