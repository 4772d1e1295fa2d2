"""Which outputs a graph explains, and the direction each one reads from the final residual.

A logit target reads the final-norm output through the *demeaned* unembedding column
(W_U[v] - mean_v W_U[v]): a shift common to all logits does not change any probability, so it should
not be attributed. A logit difference A - B reads W_U[A] - W_U[B] (the means cancel).
"""

from __future__ import annotations

import difflib
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
    """The vocabulary id of `token`: an id, or text that is exactly one token of the vocabulary.

    Strict, because a silently substituted target explains the wrong output: text that splits into
    several tokens or reads as the unknown token is an error naming the nearest real tokens, and a
    word that exists both bare ("Austin") and after a space (" Austin", how a word mid-sentence is
    usually written) is an error asking which one is meant.
    """
    vocab_size = len(tokenizer)
    if isinstance(token, int):
        if not 0 <= token < vocab_size:
            raise TargetError(f"token id {token} is outside the vocabulary (size {vocab_size})")
        return token
    if not token:
        raise TargetError("a target token cannot be empty")
    token_id = single_token(tokenizer, token)
    if token_id is None:
        raise TargetError(_not_a_token(tokenizer, token))
    if not token[0].isspace():
        spaced = single_token(tokenizer, " " + token)
        if spaced is not None and spaced != token_id:
            raise TargetError(
                f"target {token!r} is ambiguous: did you mean {' ' + token!r} (id {spaced}), the word "
                f"after a space as it follows a prompt? {token!r} without the space is id {token_id}; "
                "give the text with its space, or the id"
            )
    return token_id


def single_token(tokenizer: PreTrainedTokenizerBase, text: str) -> int | None:
    """The id `text` encodes to when it is exactly one real token (not the unknown token), else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        return None
    token_id = int(ids[0])
    unk = tokenizer.unk_token_id
    if unk is not None and token_id == unk and text != tokenizer.unk_token:
        return None
    return token_id


def _not_a_token(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    ids = tokenizer.encode(text, add_special_tokens=False)
    unk = tokenizer.unk_token_id
    if ids and all(i == unk for i in ids):
        why = f"it reads as the unknown token {tokenizer.unk_token!r}"
    else:
        pieces = [_decode(tokenizer, int(i)) for i in ids]
        why = f"it splits into {len(ids)} tokens: {', '.join(map(repr, pieces))}"
    message = f"target {text!r} is not a single token of the vocabulary ({why})"
    nearest = suggest_tokens(tokenizer, text)
    if nearest:
        message += f"; did you mean {' or '.join(map(repr, nearest))}?"
    return message


def suggest_tokens(tokenizer: PreTrainedTokenizerBase, text: str, n: int = 3) -> list[str]:
    """Up to `n` real tokens close to `text`: first its spellings with a leading space or another
    capitalisation, then the vocabulary's nearest by edit similarity."""
    found: list[str] = []
    special = set(tokenizer.all_special_ids)

    def add(candidate: str) -> None:
        token_id = single_token(tokenizer, candidate)
        if token_id is not None and token_id not in special and len(found) < n:
            decoded = _decode(tokenizer, token_id)
            if decoded not in found and decoded != text:
                found.append(decoded)

    core = text.strip()
    if not core:
        return found
    for variant in (core, core.capitalize(), core.lower(), core.title()):
        add(" " + variant)
        add(variant)
    if len(found) >= n:
        return found
    # Only tokens sharing the first letter: keeps difflib to a fraction of a large vocabulary.
    key = core.lower()
    pool: dict[str, list[str]] = {}
    for token_id, decoded in enumerate(_vocabulary(tokenizer)):
        stripped = decoded.strip().lower()
        if token_id not in special and stripped[:1] == key[:1] and "\ufffd" not in decoded:
            pool.setdefault(stripped, []).append(decoded)
    for close in difflib.get_close_matches(key, list(pool), n=n, cutoff=0.6):
        # The spaced spelling first: it is what follows a prompt.
        for decoded in sorted(pool[close], key=lambda d: not d.startswith(" ")):
            add(decoded)
    return found


def _vocabulary(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Every token as text, by id."""
    return [str(t) for t in tokenizer.batch_decode([[i] for i in range(len(tokenizer))])]


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
