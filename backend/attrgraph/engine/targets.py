"""Which outputs a graph explains, and the direction each one reads from the final residual.

A logit target reads the final-norm output through the *demeaned* unembedding column
(W_U[v] - mean_v W_U[v]): a shift common to all logits does not change any probability, so it should
not be attributed. A logit difference A - B reads W_U[A] - W_U[B] (the means cancel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from attrgraph.engine.graph import LogitTarget


class TargetError(ValueError):
    """A requested target is not a single token of the model's vocabulary."""


@dataclass(frozen=True)
class TargetSpec:
    """What to explain. Default (both None): the top logits up to a cumulative probability."""

    tokens: tuple[str | int, ...] | None = None
    logit_diff: tuple[str | int, str | int] | None = None


def resolve_token(tokenizer: PreTrainedTokenizerBase, token: str | int) -> int:
    """A vocabulary id for `token`: an id, or text that encodes to exactly one token.

    Text is tried as given and then with a leading space, because most vocabularies store words with
    their preceding space (" Austin"): typing "Austin" should find it.
    """
    vocab_size = len(tokenizer)
    if isinstance(token, int):
        if not 0 <= token < vocab_size:
            raise TargetError(f"token id {token} is outside the vocabulary (size {vocab_size})")
        return token
    for text in (token, " " + token) if not token.startswith(" ") else (token,):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(token, add_special_tokens=False))
    raise TargetError(f"target {token!r} is not a single token (it splits into {pieces})")


def _decode(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    return str(tokenizer.decode([token_id]))


def select_targets(
    tokenizer: PreTrainedTokenizerBase,
    last_logits: Tensor,  # (vocab,)
    spec: TargetSpec,
    *,
    max_n_logits: int,
    desired_logit_prob: float,
) -> list[LogitTarget]:
    probs = torch.softmax(last_logits.float(), dim=-1)

    def target(token_id: int) -> LogitTarget:
        return LogitTarget(token_id, _decode(tokenizer, token_id), float(probs[token_id]))

    if spec.logit_diff is not None:
        a, b = (resolve_token(tokenizer, t) for t in spec.logit_diff)
        if a == b:
            raise TargetError("a logit difference needs two different tokens")
        return [LogitTarget(a, _decode(tokenizer, a), float(probs[a]), b, _decode(tokenizer, b))]
    if spec.tokens:
        ids = list(dict.fromkeys(resolve_token(tokenizer, t) for t in spec.tokens))
        return [target(i) for i in ids]
    top_probs, top_ids = probs.sort(descending=True)
    cumulative = top_probs.cumsum(0)
    # Smallest prefix reaching the desired mass, capped at max_n_logits, at least one.
    n = int((cumulative < desired_logit_prob).sum()) + 1
    n = max(1, min(n, max_n_logits, probs.numel()))
    return [target(int(i)) for i in top_ids[:n]]


def target_directions(unembed: Tensor, targets: list[LogitTarget]) -> Tensor:
    """(n_targets, d_model) read directions on the final-norm output."""
    w = unembed.detach().float()  # (vocab, d_model)
    mean = w.mean(0)
    rows = []
    for t in targets:
        if t.minus_token_id is None:
            rows.append(w[t.token_id] - mean)
        else:
            rows.append(w[t.token_id] - w[t.minus_token_id])
    return torch.stack(rows)


def target_biases(unembed_bias: Tensor | None, targets: list[LogitTarget]) -> Tensor:
    """(n_targets,) the constant each target direction adds through the unembedding bias."""
    if unembed_bias is None:
        return torch.zeros(len(targets))
    b = unembed_bias.detach().float()
    mean = b.mean()
    return torch.stack(
        [b[t.token_id] - (mean if t.minus_token_id is None else b[t.minus_token_id]) for t in targets]
    )
