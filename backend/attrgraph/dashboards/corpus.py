"""A user's text corpus, read one document at a time.

Formats: `.jsonl` (one JSON object per line with a "text" field) or plain text. A plain text file
with a blank line between non-blank lines holds blank-line separated documents (paragraphs may span
lines); otherwise each line is a document. A document becomes the token windows the model reads:
the tokenizer's encoding (special tokens written in the text, such as `<bos>`, are honoured) cut
into pieces of at most `context` tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class CorpusError(ValueError):
    """The corpus file cannot be read as documents."""


class CorpusFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CorpusError(f"corpus {self.path} is not a file")
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self.paragraphs = not self.jsonl and _has_blank_separator(self.path)

    def documents(self) -> Iterator[str]:
        if self.jsonl:
            yield from self._jsonl()
        elif self.paragraphs:
            yield from self._paragraphs()
        else:
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield line.rstrip("\n")

    def count(self) -> int:
        """How many documents (one pass over the file, nothing kept)."""
        return sum(1 for _ in self.documents())

    def _jsonl(self) -> Iterator[str]:
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record: Any = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{self.path}:{number}: not JSON ({exc.msg})") from exc
                text = record.get("text") if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise CorpusError(f'{self.path}:{number}: no string "text" field')
                if text.strip():
                    yield text

    def _paragraphs(self) -> Iterator[str]:
        lines: list[str] = []
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    lines.append(line.rstrip("\n"))
                elif lines:
                    yield "\n".join(lines)
                    lines = []
        if lines:
            yield "\n".join(lines)


def _has_blank_separator(path: Path) -> bool:
    seen_text, blank = False, False
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                blank = seen_text
            elif blank:
                return True
            else:
                seen_text = True
    return False


def document_windows(text: str, tokenizer: Any, context: int) -> list[list[int]]:
    """The token windows of one document: its encoding in pieces of at most `context` tokens."""
    ids: list[int] = list(tokenizer(text)["input_ids"])
    return [ids[i : i + context] for i in range(0, len(ids), context)]
