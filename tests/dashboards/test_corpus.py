"""Corpus files: lines, blank-line separated paragraphs, .jsonl; documents cut into windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrgraph.dashboards.corpus import CorpusError, CorpusFile, document_windows
from tests.support.models import make_tokenizer


def test_lines_paragraphs_and_jsonl(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("one doc\n\nsecond doc\n")  # a trailing-free blank line between single lines
    assert list(CorpusFile(lines).documents()) == ["one doc", "second doc"]
    flat = tmp_path / "flat.txt"
    flat.write_text("a\nb\n\n")
    assert list(CorpusFile(flat).documents()) == ["a", "b"]
    paragraphs = tmp_path / "p.txt"
    paragraphs.write_text("first line\nsame doc\n\n\nnext doc\n")
    assert list(CorpusFile(paragraphs).documents()) == ["first line\nsame doc", "next doc"]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "x y"}\n\n{"text": "z", "id": 3}\n')
    assert CorpusFile(jsonl).count() == 2
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:1: not JSON"):
        CorpusFile(tmp_path / "bad.jsonl").count()
    with pytest.raises(CorpusError, match="is not a file"):
        CorpusFile(tmp_path)


def test_windows_cut_long_documents() -> None:
    tok = make_tokenizer()
    text = "the cat sat on the mat " * 20
    ids = tok(text)["input_ids"]
    windows = document_windows(text, tok, 16)
    assert [i for w in windows for i in w] == ids
    assert all(len(w) <= 16 for w in windows) and len(windows) == -(-len(ids) // 16)
