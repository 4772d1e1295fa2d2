"""Measure what the demo model and its transcoders do: behaviour accuracy and transcoder quality
(the numbers docs/demo-model.md reports; the Dallas analysis is in dallas.py)."""

from __future__ import annotations

from collections import defaultdict
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
