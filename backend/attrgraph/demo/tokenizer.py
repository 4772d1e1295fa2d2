"""A word-level tokenizer for the toy world, saved so `AutoTokenizer.from_pretrained` loads it.

Pre-tokenisation is GPT-2's byte-level regex, so the leading-space convention is GPT-2's: " Austin"
is the single token `ĠAustin`, "36+59=95" is `36`, `+`, `59`, `=`, `95`. Every piece of the corpus is
one vocabulary entry (word level, no merges); anything else maps to `<unk>`. Every encoding starts
with `<bos>` (id 1; circuit-tracer needs a BOS whose id is not 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

UNK, BOS, EOS, PAD = "<unk>", "<bos>", "<eos>", "<pad>"
SPECIALS = (UNK, BOS, EOS, PAD)  # ids 0, 1, 2, 3


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def build_tokenizer(texts: Iterable[str], extra_words: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every pre-tokenised piece of `texts`.

    `extra_words` (and the numbers 0-199) are added with and without a leading space, so entity
    names and numbers are single tokens wherever they appear. Ids are deterministic: specials, then
    pieces by descending count, ties alphabetical.
    """
    pre = _pre_tokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    words = [*extra_words, *(str(i) for i in range(200))]
    for word in words:
        for form in (word, " " + word):
            for piece, _ in pre.pre_tokenize_str(form):
                counts[piece] += 0  # present, no count of its own
    ordered = sorted(counts, key=lambda p: (-counts[p], p))
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for piece in ordered:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, 1)]
    )
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=96, add_bos_token=True,
    )  # fmt: skip


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Write tokenizer.json and tokenizer_config.json (loadable by AutoTokenizer)."""
    tokenizer.save_pretrained(str(directory))
