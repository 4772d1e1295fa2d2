"""The prompt and the logit targets of an imported graph: token ids from `metadata.attrgraph` or the
embedding nodes, token texts, and which logit node is which target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from attrgraph.engine.graph import LogitTarget
from attrgraph.engine.interop.reading import fail, read_int, read_number


class ParsedNodes(Protocol):
    """What the import found: embedding nodes by position (node id, token id) and logit nodes
    (node id, vocabulary id, probability, token)."""

    tokens: dict[int, tuple[str, int]]
    logits: list[tuple[str, int, float, str]]


def prompt_tokens(
    parsed: ParsedNodes, metadata: Mapping[str, Any], extras: Mapping[str, Any] | None
) -> tuple[list[int], list[str]]:
    prompt_tokens = metadata.get("prompt_tokens")
    if extras is not None and isinstance(extras.get("token_ids"), list):
        token_ids = [read_int(t, "metadata.attrgraph.token_ids entry") for t in extras["token_ids"]]
    else:
        if isinstance(prompt_tokens, list) and prompt_tokens:
            n_pos = len(prompt_tokens)
        elif parsed.tokens:
            n_pos = max(parsed.tokens) + 1
        else:
            raise fail("no embedding nodes and no prompt_tokens: the prompt is unknown")
        missing = [p for p in range(n_pos) if p not in parsed.tokens]
        if missing:
            raise fail(f"no embedding node (E_token_position) for positions {missing[:10]}")
        token_ids = [parsed.tokens[p][1] for p in range(n_pos)]
    n_pos = len(token_ids)
    if n_pos == 0:
        raise fail("the prompt has no tokens")
    for pos, (node_id, token_id) in parsed.tokens.items():
        if pos >= n_pos or token_ids[pos] != token_id:
            raise fail(f"embedding node {node_id!r} does not match the prompt's tokens")
    if extras is not None and isinstance(extras.get("tokens"), list) and len(extras["tokens"]) == n_pos:
        tokens = [str(t) for t in extras["tokens"]]
    elif isinstance(prompt_tokens, list) and len(prompt_tokens) == n_pos:
        tokens = [str(t) for t in prompt_tokens]
    else:
        tokens = [str(t) for t in token_ids]
    return token_ids, tokens


def read_logit_targets(parsed: ParsedNodes, extras: Mapping[str, Any] | None) -> list[LogitTarget]:
    raw = extras.get("logit_targets") if extras is not None else None
    if raw is None:
        if not parsed.logits:
            raise fail("no logit nodes")
        return [
            LogitTarget(token_id=vocab, token=token, probability=probability)
            for _, vocab, probability, token in parsed.logits
        ]
    if not isinstance(raw, list) or not raw:
        raise fail("metadata.attrgraph.logit_targets must be a non-empty list")
    targets = []
    for k, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise fail(f"logit target {k} is not an object")
        minus_id = entry.get("minus_token_id")
        minus_token = entry.get("minus_token")
        targets.append(
            LogitTarget(
                token_id=read_int(entry.get("token_id"), f"logit target {k} token_id"),
                token=str(entry.get("token", "")),
                probability=read_number(entry.get("probability"), f"logit target {k} probability"),
                minus_token_id=None
                if minus_id is None
                else read_int(minus_id, f"logit target {k} minus_token_id"),
                minus_token=None if minus_token is None else str(minus_token),
            )
        )
    return targets


def logit_node_indices(parsed: ParsedNodes, targets: list[LogitTarget]) -> dict[str, int]:
    """node id -> logit index. Logit nodes pair with targets in order, matched on vocabulary id."""
    result: dict[str, int] = {}
    remaining = list(range(len(targets)))
    for node_id, vocab, _, _ in parsed.logits:
        match = next((i for i in remaining if targets[i].token_id == vocab), None)
        if match is None:
            raise fail(f"logit node {node_id!r} matches no logit target")
        remaining.remove(match)
        result[node_id] = match
    return result
