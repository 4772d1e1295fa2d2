"""Chat prompts in tests: a tiny instruct-style model (tests/support/models.py's, with a chat template
set on its tokenizer) and a sample chat.

    path = make_tiny_chat_model(tmp_path / "chat")   # llama family, template starts with BOS
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.models import make_tiny_model

# Gemma-like turns. It starts with the BOS token, as Gemma's and Llama 3's do, so tracing it checks
# that the tokenizer's own BOS is not added a second time.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}{{ raise_exception('this template has no tool role') }}{% endif %}"
    "<turn> {{ m['role'] }}\n{{ m['content'] }}"
    "{% if not (loop.last and m['role'] == 'assistant') %}<end>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<turn> assistant\n{% endif %}"
)

CHAT: list[dict[str, str]] = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "The capital of France is"},
]
RENDERED = (
    "<|bos|><turn> system\nAnswer in one word.<end>\n<turn> user\nThe capital of France is<end>\n"
    "<turn> assistant\n"
)


def set_chat_template(model_dir: Path, template: str = CHAT_TEMPLATE) -> Path:
    """Give the tokenizer saved in `model_dir` a chat template (as instruct checkpoints ship)."""
    from transformers import AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(model_dir)
    return model_dir


def make_tiny_chat_model(directory: Path, family: str = "llama", **kwargs: Any) -> Path:
    """A tiny random model whose tokenizer has CHAT_TEMPLATE."""
    return set_chat_template(make_tiny_model(family, directory, **kwargs))
