"""Automatic feature labels from what a feature fires on and what it promotes (editable later).

Three rules, tried in order; `label_source` names the one that fired:

* "say Austin" (logits): the decoder promotes one token at least 1.5x more than any other;
* "Texas (Dallas, Houston)" or "Dallas, Houston, Waco" (activations): the tokens it fires on most,
  grouped when `LabelHints.groups` puts them all in one group (cities of one state, say);
* "'is' after Texas (Dallas, Houston)" (context): a feature that fires on a function word is named
  by what most of its top examples' contexts share: a group or a content word.

`LabelHints` is what a corpus knows about its words. It is optional; without it labels fall back
to generic function words and no grouping. It can be read from JSON:
`{"groups": {"Dallas": "Texas", "Texas": "Texas"}, "function_words": ["is", "of"]}`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

GENERIC_FUNCTION_WORDS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "of",
        "in",
        "the",
        "a",
        "an",
        "to",
        "and",
        "or",
        "but",
        "not",
        "no",
        "by",
        "at",
        "on",
        "for",
        "from",
        "with",
        "as",
        "that",
        "this",
        "it",
        "its",
        "he",
        "she",
        "they",
        "we",
        "you",
        "i",
        "had",
        "has",
        "have",
        "do",
        "does",
        "did",
        "so",
        "then",
        "than",
        "more",
        "one",
        ",",
        ".",
        ":",
        ";",
        "=",
        "+",
        "-",
        "!",
        "?",
        "'",
        '"',
        "(",
        ")",
        "<bos>",
        "<eos>",
        "<s>",
        "</s>",
        "<|endoftext|>",
        "<pad>",
        "de",
        "le",
        "la",
        "les",
        "lo",
        "el",
        "los",
        "las",
        "un",
        "une",
        "est",
        "es",
        "y",
        "et",
    ]
)


@dataclass(frozen=True)
class LabelHints:
    """Word -> group (a group's own name maps to itself), and the words too common to name a feature by."""

    groups: Mapping[str, str] = field(default_factory=dict)
    function_words: frozenset[str] = GENERIC_FUNCTION_WORDS

    @classmethod
    def read(cls, path: str | Path) -> LabelHints:
        """Hints from a JSON file (see the module docstring). Raises ValueError on a malformed file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read label hints {path}: {exc}") from exc
        groups = data.get("groups", {}) if isinstance(data, dict) else None
        words = data.get("function_words") if isinstance(data, dict) else None
        if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
            raise ValueError(f"{path}: 'groups' must map words to group names")
        if words is not None and not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
            raise ValueError(f"{path}: 'function_words' must be a list of words")
        function_words = frozenset(w.lower() for w in words) if words is not None else GENERIC_FUNCTION_WORDS
        return cls({str(k): v for k, v in groups.items()}, function_words)

    def to_json(self) -> str:
        return json.dumps(
            {"groups": dict(self.groups), "function_words": sorted(self.function_words)},
            ensure_ascii=False,
            indent=1,
        )


class Labeller:
    def __init__(self, hints: LabelHints | None = None) -> None:
        self.hints = hints or LabelHints()

    def _function(self, word: str) -> bool:
        return word.lower() in self.hints.function_words

    def name(self, words: list[str]) -> str:
        """'Texas (Dallas, Houston)' for words of one group, else the first words."""
        owners = {self.hints.groups.get(w) for w in words}
        if len(words) >= 2 and len(owners) == 1 and None not in owners:
            group = owners.pop()
            assert group is not None
            members = [w for w in words if w != group]
            return f"{group} ({', '.join(members[:2])})" if members else group
        return ", ".join(words[:3])

    def context(self, contexts: list[list[str]]) -> str | None:
        """What most contexts share: a group (named with the members seen), else a content word."""
        if not contexts:
            return None
        groups: Counter[str] = Counter()
        members: dict[str, Counter[str]] = {}
        words: Counter[str] = Counter()
        for ctx in contexts:
            seen = sorted({w.strip() for w in ctx if w.strip()})  # sorted: ties break the same way every run
            for w in seen:
                group = self.hints.groups.get(w)
                if group is not None:
                    members.setdefault(group, Counter())[w] += 1
            for group in sorted({g for w in seen if (g := self.hints.groups.get(w)) is not None}):
                groups[group] += 1
            words.update(w for w in seen if not self._function(w))
        if groups:
            group, count = groups.most_common(1)[0]
            if count >= 0.6 * len(contexts):
                named = [w for w, _ in members[group].most_common(3) if w != group][:2]
                return f"{group} ({', '.join(named)})" if named else group
        if words:
            word, count = words.most_common(1)[0]
            if count >= 0.6 * len(contexts):
                return word
        return None

    def label(
        self,
        top_tokens: list[str],
        contexts: list[list[str]],
        top_logits: list[str],
        logit_values: list[float],
    ) -> tuple[str, str]:
        """(label, source): source is "logits", "activations" or "context"."""
        if (
            len(logit_values) >= 2
            and logit_values[0] > 0
            and logit_values[0] >= 1.5 * max(logit_values[1], 1e-6)
        ):
            return f"say {top_logits[0].strip()}", "logits"
        words = [t.strip() for t in top_tokens if t.strip()]
        content = [w for w in words if not self._function(w)]
        if words and content and words[0] == content[0]:
            return self.name(content), "activations"
        shared = self.context(contexts)
        if shared and words:
            return f"{words[0]!r} after {shared}", "context"
        if words:
            return self.name(words), "activations"
        return (repr(top_tokens[0]) if top_tokens else "(no examples)"), "activations"
