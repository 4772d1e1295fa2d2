"""Measure what the demo model and its transcoders do (the numbers docs/demo-model.md reports)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attrgraph.demo.corpus import Item, World, eval_items
from attrgraph.engine.transcoders.base import TranscoderSet


@dataclass(frozen=True)
class Prediction:
    item: Item
    predicted: str  # greedy next token (decoded, with its leading space)
    answer_prob: float
    answer_rank: int

    @property
    def correct(self) -> bool:
        return self.predicted == self.item.answer


@torch.no_grad()
def predict(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: list[Item], batch_size: int = 256
) -> list[Prediction]:
    """Greedy next-token predictions for `items` (prompts are grouped by length, no padding)."""
    encoded = [tokenizer(item.prompt)["input_ids"] for item in items]
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        by_len[len(ids)].append(i)
    out: list[Prediction | None] = [None] * len(items)
    for indices in by_len.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            x = torch.tensor([encoded[i] for i in chunk], device=model.device)  # (B, T)
            probs = model(input_ids=x).logits[:, -1].float().softmax(-1)  # (B, vocab)
            top = probs.argmax(-1)  # (B,)
            for row, i in enumerate(chunk):
                answer_ids = tokenizer(items[i].answer, add_special_tokens=False)["input_ids"]
                answer_id = answer_ids[0] if len(answer_ids) == 1 else tokenizer.unk_token_id
                p = probs[row, answer_id]
                out[i] = Prediction(
                    item=items[i],
                    predicted=str(tokenizer.decode([int(top[row])])),
                    answer_prob=float(p),
                    answer_rank=int((probs[row] > p).sum()),
                )
    return [p for p in out if p is not None]


def accuracy(preds: list[Prediction]) -> float:
    return sum(p.correct for p in preds) / max(1, len(preds))


def _numeric_closeness(preds: list[Prediction]) -> dict[str, float]:
    """For tasks with number answers: the share of predictions within 2 of the answer."""
    if not preds or not all(p.item.answer.strip().isdigit() for p in preds):
        return {}
    close = sum(
        p.predicted.strip().isdigit() and abs(int(p.predicted) - int(p.item.answer)) <= 2 for p in preds
    )
    return {"within_2": round(close / len(preds), 4)}


def behaviour_metrics(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, world: World
) -> dict[str, dict[str, Any]]:
    """Accuracy (greedy), mean answer probability and the chance level of each behaviour."""
    metrics: dict[str, dict[str, Any]] = {}
    for name, items in eval_items(world).items():
        preds = predict(model, tokenizer, items)
        answers = {item.answer for item in items}
        metrics[name] = {
            "n": len(preds),
            "accuracy": round(accuracy(preds), 4),
            "mean_answer_prob": round(sum(p.answer_prob for p in preds) / max(1, len(preds)), 4),
            "chance": round(1 / max(1, len(answers)), 4),
            **_numeric_closeness(preds),
            "wrong": [
                f"{p.item.prompt!r} -> {p.predicted!r} (want {p.item.answer!r})"
                for p in preds
                if not p.correct
            ][:8],
        }
    return metrics


# -- transcoder quality ----------------------------------------------------------------------------


@torch.no_grad()
def firing_counts(tc: TranscoderSet, layer: int, x: Tensor, chunk: int = 8192) -> Tensor:
    """How many of the inputs x (n, d_model) each feature of `layer` fires on: (d_tc,)."""
    counts = torch.zeros(tc.d_transcoder, dtype=torch.long)
    for start in range(0, x.shape[0], chunk):
        counts += (tc.encode(layer, x[start : start + chunk]) > 0).sum(0)
    return counts


@torch.no_grad()
def transcoder_metrics(
    tc: TranscoderSet,
    inputs: list[Tensor],
    outputs: list[Tensor],
    activation_counts: list[Tensor] | None = None,
) -> list[dict[str, float]]:
    """Per layer: fraction of variance explained, mean L0 and dead-feature fraction.

    inputs[l] / outputs[l]: (n_tokens, d_model) held-out MLP inputs and outputs. A feature is dead if it
    never fires on the tokens counted in `activation_counts[l]` (the build counts the transcoders'
    training tokens), else on these tokens; `silent_fraction` is the share that never fires on these.
    """
    acts = [tc.encode(layer, x) for layer, x in enumerate(inputs)]  # (n, d_tc) each
    recon = tc.reconstruct(acts, inputs)
    rows: list[dict[str, float]] = []
    for layer, (y, y_hat, a) in enumerate(zip(outputs, recon, acts, strict=True)):
        resid = (y - y_hat).pow(2).sum()
        total = (y - y.mean(0)).pow(2).sum()
        fired = (a > 0).sum(0) if activation_counts is None else activation_counts[layer]
        rows.append(
            {
                "layer": layer,
                "fvu": round(float(resid / total), 4),
                "variance_explained": round(float(1 - resid / total), 4),
                "l0": round(float((a > 0).float().sum(-1).mean()), 2),
                "dead_fraction": round(float((fired == 0).float().mean()), 4),
                "silent_fraction": round(float(((a > 0).sum(0) == 0).float().mean()), 4),
            }
        )
    return rows


# -- the Dallas graph: which features mediate " Austin" --------------------------------------------


def _blocks(model: Any) -> Any:
    """The GPT-2 blocks (transformer.h) of a GPT2LMHeadModel."""
    return model.transformer.h


@torch.no_grad()
def mlp_inputs(model: PreTrainedModel, ids: Tensor) -> list[Tensor]:
    """Normalised MLP inputs of every layer: ids (B, T) -> per layer (B, T, d_model)."""
    store: list[Tensor] = []
    blocks = _blocks(model)
    handles = [
        block.ln_2.register_forward_hook(lambda _m, _i, out: store.append(out.detach().float()))
        for block in blocks
    ]
    try:
        model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return store


@dataclass(frozen=True)
class FeatureRef:
    layer: int
    pos: int
    index: int
    activation: float

    def key(self) -> str:
        return f"L{self.layer}/{self.index}@{self.pos}"


@torch.no_grad()
def run_with_edits(
    model: PreTrainedModel,
    ids: Tensor,
    tc: TranscoderSet,
    remove: list[FeatureRef],
    add: Sequence[FeatureRef] = (),
) -> Tensor:
    """Next-token log-probabilities (vocab,) at the last position of ids (1, T) when the MLP outputs carry
    `remove` features' decoder contributions subtracted and `add` features' contributions added.

    The rest of the model runs as usual (later layers see the edited residual stream).
    """
    edits: dict[int, list[tuple[int, Tensor]]] = defaultdict(list)
    for ref, sign in [(r, -1.0) for r in remove] + [(a, 1.0) for a in add]:
        w_dec = tc.layer(ref.layer).W_dec[ref.index, 0]  # (d_model,)
        edits[ref.layer].append((ref.pos, sign * ref.activation * w_dec))

    def make_hook(layer: int):  # type: ignore[no-untyped-def]
        def hook(_module: torch.nn.Module, _inputs: object, output: Tensor) -> Tensor:
            output = output.clone()
            for pos, delta in edits[layer]:
                output[:, pos] += delta.to(output.dtype)
            return output

        return hook

    blocks = _blocks(model)
    handles = [blocks[layer].mlp.register_forward_hook(make_hook(layer)) for layer in edits]
    try:
        logits: Tensor = model(input_ids=ids).logits[0, -1].float()
    finally:
        for h in handles:
            h.remove()
    return logits.log_softmax(-1)


def _margin(logprobs: Tensor, answer: int) -> float:
    """The answer's logit minus the largest other logit."""
    others = torch.cat([logprobs[:answer], logprobs[answer + 1 :]])
    return float(logprobs[answer] - others.max())


def _token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{text!r} is not a single token")
    return int(ids[0])


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
    from attrgraph.demo.corpus import two_hop_prompt

    cities = list(world.cities)
    ids = torch.tensor([tokenizer(two_hop_prompt(c))["input_ids"] for c in cities])  # (n_cities, T)
    inputs = mlp_inputs(model, ids)  # per layer (n_cities, T, d_model)
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
    from attrgraph.demo.corpus import two_hop_prompt

    sf = sf or state_features(model, tokenizer, tc, world)
    kept, flipped, ctrl_kept, ctrl_flipped, n, skipped = 0.0, 0, 0.0, 0, 0, 0
    for city in cities:
        state = world.state_of[city]
        answer = _token_id(tokenizer, f" {world.capital_of[state]}")
        ids = torch.tensor([tokenizer(two_hop_prompt(city))["input_ids"]])
        base = run_with_edits(model, ids, tc, [])
        if int(base.argmax()) != answer:
            continue
        chosen = [ref for _, ref in sf.top(state, city, n_features, min_score=0.5)]
        if not chosen:
            skipped += 1
            continue
        after = run_with_edits(model, ids, tc, chosen)
        controls = []
        for ref in chosen:  # same layer and position, no state preference, closest activation
            offset = sf.length - ref.pos
            a = sf.acts[offset][ref.layer][sf.rows[city]]
            best = torch.stack([sc[ref.layer] for sc in sf.score[offset].values()]).max(0).values
            ok = (a > 0) & (best <= 0)
            if ok.any():
                dist = torch.where(ok, (a - ref.activation).abs(), torch.full_like(a, float("inf")))
                idx = int(dist.argmin())
                controls.append(FeatureRef(ref.layer, ref.pos, idx, float(a[idx])))
        c_after = run_with_edits(model, ids, tc, controls)
        n += 1
        kept += _margin(after, answer) / _margin(base, answer)
        flipped += int(after.argmax()) != answer
        ctrl_kept += _margin(c_after, answer) / _margin(base, answer)
        ctrl_flipped += int(c_after.argmax()) != answer
    return {
        "n_cities": n,
        "n_without_state_feature": skipped,
        "answer_margin_kept": round(kept / max(1, n), 4),
        "answer_flipped": round(flipped / max(1, n), 4),
        "control_answer_margin_kept": round(ctrl_kept / max(1, n), 4),
        "control_answer_flipped": round(ctrl_flipped / max(1, n), 4),
    }


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

    Interventions run the real model with transcoder features' decoder contributions (activation x
    decoder row) removed or added at their layer and position; effects are logit margins (the
    answer's logit minus the best other logit).

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
    from attrgraph.demo.corpus import two_hop_prompt

    city, state = "Dallas", world.state_of["Dallas"]
    capital = world.capital_of[state]
    prompt = two_hop_prompt(city)
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])  # (1, T)
    austin = _token_id(tokenizer, f" {capital}")
    base = run_with_edits(model, ids, tc, [])
    result: dict[str, Any] = {
        "prompt": prompt,
        "prediction": tokenizer.decode([int(base.argmax())]),
        "p_answer": round(float(base[austin].exp()), 4),
        "margin": round(_margin(base, austin), 3),
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
        one = run_with_edits(model, ids, tc, texas[:1])
        every = run_with_edits(model, ids, tc, texas)
        result["ablate_top_texas_feature"] = {
            "p_answer": round(float(one[austin].exp()), 4),
            "margin": round(_margin(one, austin), 3),
            "prediction": tokenizer.decode([int(one.argmax())]),
        }
        result["ablate_all_texas_features"] = {
            "p_answer": round(float(every[austin].exp()), 4),
            "margin": round(_margin(every, austin), 3),
            "prediction": tokenizer.decode([int(every.argmax())]),
        }
        # steering: Texas features out, California features in (at their mean activation on
        # California cities), at the same positions
        other = "California"
        sacramento = _token_id(tokenizer, f" {world.capital_of[other]}")
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
        steered = run_with_edits(model, ids, tc, texas, [ref for _, ref in added])
        result["steer_texas_to_california"] = {
            "added": [describe(sc, ref) for sc, ref in added],
            "p_answer": round(float(steered[austin].exp()), 4),
            "margin": round(_margin(steered, austin), 3),
            "p_sacramento": round(float(steered[sacramento].exp()), 4),
            "prediction": tokenizer.decode([int(steered.argmax())]),
        }
    # every feature at the city token, in every layer, removed at once
    at_city = []
    for layer, x in enumerate(mlp_inputs(model, ids)):
        a = tc.encode(layer, x[0, -CITY_OFFSET])
        pos = ids.shape[1] - CITY_OFFSET
        at_city += [FeatureRef(layer, pos, int(i), float(a[i])) for i in a.nonzero()[:, 0]]
    no_city = run_with_edits(model, ids, tc, at_city)
    result["ablate_city_position"] = {
        "n_features": len(at_city),
        "margin": round(_margin(no_city, austin), 3),
        "prediction": tokenizer.decode([int(no_city.argmax())]),
    }
    result["state_similarity"] = _state_similarity(sf, world)
    result["patch_last_position"] = _patch_last_position(model, tokenizer, tc, world, ids, "Oakland")
    if with_graph:
        try:
            result["graph"] = _graph_summary(model, tokenizer, tc, prompt, texas, root)
        except Exception as exc:  # the engine is optional here: report why there is no graph
            result["graph"] = {"error": f"{type(exc).__name__}: {exc}"}
    result["mediation_trained"] = mediation(model, tokenizer, tc, world, list(world.two_hop_trained), sf)
    result["mediation_held_out"] = mediation(model, tokenizer, tc, world, list(world.two_hop_held_out), sf)
    return result


def _state_similarity(sf: StateFeatures, world: World) -> dict[str, dict[str, float]]:
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


@torch.no_grad()
def _patch_last_position(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tc: TranscoderSet,
    world: World,
    ids: Tensor,
    donor_city: str,
) -> dict[str, Any]:
    """Swap the transcoder features at the last position (" is") of one layer at a time for those of
    the donor city's two-hop prompt: which layer's features carry the city / state to the answer?"""
    from attrgraph.demo.corpus import two_hop_prompt

    donor_ids = torch.tensor([tokenizer(two_hop_prompt(donor_city))["input_ids"]])
    donor_answer = _token_id(tokenizer, f" {world.capital_of[world.state_of[donor_city]]}")
    pos = ids.shape[1] - 1
    here, there = mlp_inputs(model, ids), mlp_inputs(model, donor_ids)
    out: dict[str, Any] = {"donor": donor_city, "donor_answer": tokenizer.decode([donor_answer])}
    for layer in range(tc.n_layers):
        a = tc.encode(layer, here[layer][0, pos])
        b = tc.encode(layer, there[layer][0, pos])
        remove = [FeatureRef(layer, pos, int(i), float(a[i])) for i in a.nonzero().squeeze(1).tolist()]
        add = [FeatureRef(layer, pos, int(i), float(b[i])) for i in b.nonzero().squeeze(1).tolist()]
        after = run_with_edits(model, ids, tc, remove, add)
        out[f"layer_{layer}"] = {
            "prediction": tokenizer.decode([int(after.argmax())]),
            "p_donor_answer": round(float(after[donor_answer].exp()), 4),
        }
    return out


def _label(layer: int, index: int, root: Any) -> str | None:
    if root is None:
        return None
    from attrgraph.bundled import demo_dashboards_dir
    from attrgraph.format.dashboards import load_dashboard

    try:
        return str(load_dashboard(demo_dashboards_dir(root), layer, index).get("label"))
    except KeyError:
        return None


def _graph_summary(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tc: TranscoderSet,
    prompt: str,
    texas: list[FeatureRef],
    root: Any,
) -> dict[str, Any]:
    import time

    from attrgraph.engine import TraceSettings, trace
    from attrgraph.engine.pruning import node_influence, prune

    @dataclass
    class _LM:
        model: Any
        tokenizer: Any
        model_id: str = "attrgraph-demo"
        revision: str = ""

    started = time.perf_counter()
    graph = trace(_LM(model, tokenizer), tc, prompt, settings=TraceSettings())
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
    # do the graph's most influential features matter? ablate the top k (in the real model)
    ids = torch.tensor([graph.token_ids])
    answer = graph.logit_targets[0].token_id
    ablations = {}
    for k in (1, 5, 10, 20):
        refs = [
            FeatureRef(int(graph.features[i, 0]), int(graph.features[i, 1]), int(graph.features[i, 2]),
                       float(graph.activations[i]))
            for i in order[:k].tolist()
        ]  # fmt: skip
        after = run_with_edits(model, ids, tc, refs)
        ablations[f"top_{k}"] = {
            "margin": round(_margin(after, answer), 3),
            "prediction": tokenizer.decode([int(after.argmax())]),
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
