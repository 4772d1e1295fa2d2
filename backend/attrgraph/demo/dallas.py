"""What drives " Austin" after "Fact: the capital of the state containing Dallas is": the analysis
behind the Dallas section of docs/demo-model.md."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attrgraph.bundled import demo_dashboards_dir
from attrgraph.demo.corpus import World, two_hop_prompt
from attrgraph.demo.edits import DemoLM, FeatureRef, margin, run_with_edits, token_id, transcoder_inputs
from attrgraph.demo.state_features import CITY_OFFSET, mediation, state_features, state_similarity
from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.pruning import node_influence, prune
from attrgraph.engine.transcoders.base import TranscoderSet
from attrgraph.format.dashboards import load_dashboard


@torch.no_grad()
def dallas_analysis(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tc: TranscoderSet,
    world: World,
    root: Any = None,
    with_graph: bool = True,
) -> dict[str, Any]:
    """What drives " Austin" after "Fact: the capital of the state containing Dallas is".

    Interventions go through `engine.interventions` (see `edits.run_with_edits`): features are
    ablated or added at their layer and position and everything downstream is recomputed; effects
    are logit margins (the answer's logit minus the best other logit).

    * prediction, P(Austin) and margin;
    * Texas features: the features active on the prompt (at " Dallas" or " is") that best pick out
      Texas cities among all cities' two-hop prompts (`StateFeatures`), each ablated, and swapped for
      California's (steering);
    * every feature at the " Dallas" token ablated at once;
    * state similarity: how alike two cities' feature activations are within and across states;
    * the last position's features of each layer swapped for those of Oakland's prompt;
    * the attribution graph (engine.trace): most influential features, the Texas features' ranks, and
      the effect of ablating the top k;
    * mediation over all trained and held-out cities the model answers right.
    """
    city, state = "Dallas", world.state_of["Dallas"]
    capital = world.capital_of[state]
    prompt = two_hop_prompt(city)
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])  # (1, T)
    lm = DemoLM(model, tokenizer)
    austin = token_id(tokenizer, f" {capital}")
    base = run_with_edits(lm, ids, tc, [])
    result: dict[str, Any] = {
        "prompt": prompt,
        "prediction": tokenizer.decode([int(base.argmax())]),
        "p_answer": round(float(base[austin].exp()), 4),
        "margin": round(margin(base, austin), 3),
    }
    sf = state_features(model, tokenizer, tc, world)
    scored = sf.top(state, city, 3, min_score=0.5)
    texas = [ref for _, ref in scored]

    def describe(score: float, ref: FeatureRef) -> dict[str, Any]:
        return {
            "layer": ref.layer,
            "position": ref.pos,
            "token": tokenizer.decode([int(ids[0, ref.pos])]),
            "index": ref.index,
            "activation": round(ref.activation, 3),
            "state_score": round(score, 3),
            "label": _label(ref.layer, ref.index, root),
        }

    result["texas_features"] = [describe(sc, ref) for sc, ref in scored]
    if texas:
        one = run_with_edits(lm, ids, tc, texas[:1])
        every = run_with_edits(lm, ids, tc, texas)
        result["ablate_top_texas_feature"] = {
            "p_answer": round(float(one[austin].exp()), 4),
            "margin": round(margin(one, austin), 3),
            "prediction": tokenizer.decode([int(one.argmax())]),
        }
        result["ablate_all_texas_features"] = {
            "p_answer": round(float(every[austin].exp()), 4),
            "margin": round(margin(every, austin), 3),
            "prediction": tokenizer.decode([int(every.argmax())]),
        }
        # steering: Texas features out, California features in (at their mean activation on
        # California cities), at the same positions
        other = "California"
        sacramento = token_id(tokenizer, f" {world.capital_of[other]}")
        members = [sf.rows[c] for c in world.cities if world.state_of[c] == other]
        added: list[tuple[float, FeatureRef]] = []
        for offset in sf.acts:
            for layer in range(tc.n_layers):
                values, idx = sf.score[offset][other][layer].topk(3)
                for v, i in zip(values, idx, strict=True):
                    if float(v) > 0.5:
                        mean_act = float(sf.acts[offset][layer][members, int(i)].mean())
                        added.append((float(v), FeatureRef(layer, sf.length - offset, int(i), mean_act)))
        added = sorted(added, key=lambda t: -t[0])[: len(texas)]
        steered = run_with_edits(lm, ids, tc, texas, [ref for _, ref in added])
        result["steer_texas_to_california"] = {
            "added": [describe(sc, ref) for sc, ref in added],
            "p_answer": round(float(steered[austin].exp()), 4),
            "margin": round(margin(steered, austin), 3),
            "p_sacramento": round(float(steered[sacramento].exp()), 4),
            "prediction": tokenizer.decode([int(steered.argmax())]),
        }
    # every feature at the city token, in every layer, removed at once
    at_city = []
    for layer, x in enumerate(transcoder_inputs(model, tc, ids)):
        a = tc.encode(layer, x[0, -CITY_OFFSET])
        pos = ids.shape[1] - CITY_OFFSET
        at_city += [FeatureRef(layer, pos, int(i), float(a[i])) for i in a.nonzero()[:, 0]]
    no_city = run_with_edits(lm, ids, tc, at_city)
    result["ablate_city_position"] = {
        "n_features": len(at_city),
        "margin": round(margin(no_city, austin), 3),
        "prediction": tokenizer.decode([int(no_city.argmax())]),
    }
    result["state_similarity"] = state_similarity(sf, world)
    result["patch_last_position"] = _patch_last_position(lm, tc, world, ids, "Oakland")
    if with_graph:
        result["graph"] = _graph_summary(lm, tc, prompt, texas, root)
    result["mediation_trained"] = mediation(model, tokenizer, tc, world, list(world.two_hop_trained), sf)
    result["mediation_held_out"] = mediation(model, tokenizer, tc, world, list(world.two_hop_held_out), sf)
    return result


def _patch_last_position(
    lm: DemoLM,
    tc: TranscoderSet,
    world: World,
    ids: Tensor,
    donor_city: str,
) -> dict[str, Any]:
    """Swap the transcoder features at the last position (" is") of one layer at a time for those of
    the donor city's two-hop prompt: which layer's features carry the city / state to the answer?"""
    model, tokenizer = lm.model, lm.tokenizer
    donor_ids = torch.tensor([tokenizer(two_hop_prompt(donor_city))["input_ids"]])
    donor_answer = token_id(tokenizer, f" {world.capital_of[world.state_of[donor_city]]}")
    pos = ids.shape[1] - 1
    here, there = transcoder_inputs(model, tc, ids), transcoder_inputs(model, tc, donor_ids)
    out: dict[str, Any] = {"donor": donor_city, "donor_answer": tokenizer.decode([donor_answer])}
    for layer in range(tc.n_layers):
        a = tc.encode(layer, here[layer][0, pos])
        b = tc.encode(layer, there[layer][0, pos])
        remove = [FeatureRef(layer, pos, int(i), float(a[i])) for i in a.nonzero().squeeze(1).tolist()]
        add = [FeatureRef(layer, pos, int(i), float(b[i])) for i in b.nonzero().squeeze(1).tolist()]
        after = run_with_edits(lm, ids, tc, remove, add)
        out[f"layer_{layer}"] = {
            "prediction": tokenizer.decode([int(after.argmax())]),
            "p_donor_answer": round(float(after[donor_answer].exp()), 4),
        }
    return out


def _label(layer: int, index: int, root: Any) -> str | None:
    if root is None:
        return None
    try:
        return str(load_dashboard(demo_dashboards_dir(root), layer, index).get("label"))
    except KeyError:
        return None


def _graph_summary(
    lm: DemoLM,
    tc: TranscoderSet,
    prompt: str,
    texas: list[FeatureRef],
    root: Any,
) -> dict[str, Any]:
    started = time.perf_counter()
    graph = trace(lm, tc, prompt, settings=TraceSettings())
    elapsed = time.perf_counter() - started
    influence = node_influence(graph)[: graph.n_features]
    order = influence.argsort(descending=True)
    top = []
    for i in order[:10].tolist():
        layer, pos, index = (int(v) for v in graph.features[i])
        top.append(
            {
                "layer": layer,
                "position": pos,
                "token": graph.tokens[pos],
                "index": index,
                "activation": round(float(graph.activations[i]), 3),
                "influence": round(float(influence[i]), 4),
                "label": _label(layer, index, root),
            }
        )
    ranks = {}
    for ref in texas:
        match = (
            (graph.features[:, 0] == ref.layer)
            & (graph.features[:, 1] == ref.pos)
            & (graph.features[:, 2] == ref.index)
        ).nonzero()
        if match.numel():
            ranks[ref.key()] = int((order == int(match[0, 0])).nonzero()[0, 0]) + 1
    pruned = prune(graph)
    # do the graph's most influential features matter? ablate the top k
    ids = torch.tensor([graph.token_ids])
    answer = graph.logit_targets[0].token_id
    ablations = {}
    for k in (1, 5, 10, 20):
        refs = [
            FeatureRef(int(graph.features[i, 0]), int(graph.features[i, 1]), int(graph.features[i, 2]),
                       float(graph.activations[i]))
            for i in order[:k].tolist()
        ]  # fmt: skip
        after = run_with_edits(lm, ids, tc, refs)
        ablations[f"top_{k}"] = {
            "margin": round(margin(after, answer), 3),
            "prediction": lm.tokenizer.decode([int(after.argmax())]),
        }
    return {
        "trace_seconds": round(elapsed, 2),
        "ablate_top_features": ablations,
        "n_features": graph.n_features,
        "n_features_pruned": int(pruned.node_mask[: graph.n_features].sum()),
        "targets": [t.token for t in graph.logit_targets],
        "top_features": top,
        "texas_feature_influence_rank": ranks,
    }
