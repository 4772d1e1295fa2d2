"""Chat prompts: rendered with the tokenizer's template, traced from the rendered tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from attrgraph.engine import TraceSettings, trace
from attrgraph.engine.attribution import tokenize
from attrgraph.engine.chat import ChatError, ChatMessage, has_chat_template, render_chat
from attrgraph.engine.models import load_model
from attrgraph.engine.transcoders import load_transcoders
from attrgraph.engine.transcoders.saving import save_transcoders
from tests.support.chat import CHAT, RENDERED, make_tiny_chat_model
from tests.support.models import BOS_TOKEN, make_tokenizer
from tests.support.transcoders import tiny_plt_transcoders


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(tmp_path_factory.mktemp("chat") / "model")


@pytest.fixture(scope="module")
def tokenizer(chat_model: Path) -> Any:
    return AutoTokenizer.from_pretrained(chat_model)


def test_render_uses_the_template_and_opens_the_reply(tokenizer: Any) -> None:
    assert has_chat_template(tokenizer)
    assert render_chat(tokenizer, CHAT) == RENDERED
    assert render_chat(tokenizer, [ChatMessage(**m) for m in CHAT]) == RENDERED


def test_a_last_assistant_message_is_continued(tokenizer: Any) -> None:
    rendered = render_chat(tokenizer, [*CHAT, {"role": "assistant", "content": "Pa"}])
    assert rendered == RENDERED + "Pa"  # no end-of-turn after the prefilled reply


def test_rendered_text_gets_one_bos(tokenizer: Any) -> None:
    ids = tokenize(tokenizer, render_chat(tokenizer, CHAT))
    assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
    # Plain text still gets the tokenizer's BOS.
    assert tokenize(tokenizer, "The capital")[0] == tokenizer.bos_token_id
    assert tokenize(tokenizer, BOS_TOKEN + "The capital") == tokenize(tokenizer, "The capital")


@pytest.mark.parametrize(
    ("chat", "message"),
    [
        ([], "no messages"),
        ([{"role": "user", "content": "  "}], "every message's content is blank"),
        ([{"role": "", "content": "hi"}], "'role' must be a non-empty string"),
        ([{"role": "user", "content": 3}], "'content' must be a string"),
        ([{"role": "user", "content": "hi", "name": "x"}], "unknown field(s) name"),
        (
            [{"role": "tool", "content": "hi"}],
            "template refused these messages: this template has no tool role",
        ),
    ],
)
def test_bad_chats_raise_clear_errors(tokenizer: Any, chat: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ChatError) as raised:
        render_chat(tokenizer, chat)
    assert message in str(raised.value)


def test_a_model_without_a_template_says_so() -> None:
    plain = make_tokenizer()
    assert not has_chat_template(plain)
    with pytest.raises(ChatError, match="no chat template"):
        render_chat(plain, CHAT)


def test_a_chat_traces_from_its_rendered_tokens(chat_model: Path, tmp_path: Path) -> None:
    lm = load_model(chat_model)
    tc_dir = save_transcoders(
        tiny_plt_transcoders(n_layers=2, d_model=64), tmp_path / "tc", model_name="tiny"
    )
    tc = load_transcoders(tc_dir)
    rendered = render_chat(lm.tokenizer, CHAT)
    graph = trace(lm, tc, rendered, settings=TraceSettings(max_feature_nodes=32, max_n_logits=1))
    ids = tokenize(lm.tokenizer, rendered)
    assert graph.prompt == rendered and graph.n_pos == len(ids)
    assert graph.tokens == [lm.tokenizer.decode([i]) for i in ids]
    assert graph.tokens[0] == BOS_TOKEN and "".join(graph.tokens[1:]).startswith("<turn> system")
