"""Chat prompts: a list of messages rendered with the model's own chat template.

An instruct model (and a transcoder trained on its template, such as Gemma Scope 2's IT sets) sees
a conversation as the template lays it out: turn markers, roles, the start of the reply. The
rendered text is then traced like any prompt, so the graph shows the template's tokens, and
re-tokenizing the stored prompt (interventions on a chat graph) gives the same ids again
(attribution.tokenize does not add a second BOS to text that already starts with one).

A chat whose last message is the assistant's is continued (a prefilled reply: "The capital is");
otherwise the template's generation prompt opens the assistant's reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

ASSISTANT = "assistant"


class ChatError(ValueError):
    """The chat cannot be rendered: no template, no messages, or the template refuses them."""


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


Chat = Sequence[ChatMessage | Mapping[str, Any]]


def messages(chat: Chat) -> list[ChatMessage]:
    """`chat` as ChatMessages, each checked: a role and a text content."""
    out = []
    for k, item in enumerate(chat):
        if isinstance(item, ChatMessage):
            out.append(item)
            continue
        role, content = item.get("role"), item.get("content")
        extra = sorted(set(item) - {"role", "content"})
        if not isinstance(role, str) or not role.strip():
            raise ChatError(f"message {k}: 'role' must be a non-empty string (user, assistant, system)")
        if not isinstance(content, str):
            raise ChatError(f"message {k}: 'content' must be a string")
        if extra:
            raise ChatError(
                f"message {k}: unknown field(s) {', '.join(extra)} (a message is role and content)"
            )
        out.append(ChatMessage(role, content))
    if not out:
        raise ChatError("the chat has no messages")
    if not any(m.content.strip() for m in out):
        raise ChatError("the chat is empty: every message's content is blank")
    return out


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: PreTrainedTokenizerBase, chat: Chat) -> str:
    """The prompt text `chat` becomes under the tokenizer's chat template."""
    checked = messages(chat)
    if not has_chat_template(tokenizer):
        raise ChatError(
            "this model has no chat template (it is not an instruct model): give the prompt as plain text"
        )
    continue_reply = checked[-1].role == ASSISTANT
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in checked],
            tokenize=False,
            add_generation_prompt=not continue_reply,
            continue_final_message=continue_reply,
        )
    except Exception as exc:  # jinja2's TemplateError, raise_exception() in templates, ValueError
        raise ChatError(f"the model's chat template refused these messages: {exc}") from None
    if not isinstance(rendered, str) or not rendered:
        raise ChatError("the model's chat template rendered nothing")
    return rendered
