"""A chat prompt from the home page: the "Chat" toggle turns the prompt box into messages, the preview
shows the chat template's tokens, and the graph is traced from them (scripted Dallas backend, whose
template is Gemma's turn layout)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support.browser import Service, shoot
from tests.support.environment import require_module

sync_api = require_module("playwright.sync_api")
expect = sync_api.expect

QUESTION = "Fact: the capital of the state containing Dallas is"


def test_a_chat_traces_with_the_templates_tokens(page: Any, service: Service) -> None:
    page.goto("/")
    expect(page.locator("#model-select")).to_have_value("dallas-demo")
    page.fill("#prompt", QUESTION)
    page.check("#chat-toggle")
    expect(page.locator("#prompt")).to_be_hidden()
    # The typed prompt becomes the first user message.
    messages = page.locator(".chat-message")
    expect(messages).to_have_count(1)
    expect(messages.nth(0).locator("select")).to_have_value("user")
    expect(messages.nth(0).locator("textarea")).to_have_value(QUESTION)

    page.click("#chat-add")  # the next message defaults to the assistant's (a prefilled reply)
    expect(messages).to_have_count(2)
    expect(messages.nth(1).locator("select")).to_have_value("assistant")
    messages.nth(1).locator("textarea").fill("Austin, because")
    messages.nth(1).locator("button").click()  # removed again
    expect(messages).to_have_count(1)

    tokens = page.locator("#tokens")
    expect(tokens).to_contain_text("<start_of_turn>")
    expect(tokens).to_contain_text("<end_of_turn>")
    expect(tokens).to_contain_text("model")
    expect(page.locator(".prediction-list")).to_contain_text("Austin")
    shoot(page, "chat-01-preview")

    page.click("#submit")
    page.wait_for_url(re.compile(r"/graph/[0-9a-f]{32}"))
    page.wait_for_selector("#explorer[data-interactive='1']")
    expect(page.locator(".prompt-title")).to_contain_text("<start_of_turn>user")
    shoot(page, "chat-02-graph")

    graph_id = page.url.rsplit("/", 1)[-1]
    metadata = httpx.get(f"{service.url}/api/graphs/{graph_id}").json()["metadata"]
    assert metadata["prompt"] == f"<start_of_turn>user\n{QUESTION}<end_of_turn>\n<start_of_turn>model\n"
    assert metadata["prompt_tokens"][:3] == ["<bos>", "<start_of_turn>", "user"]


def test_an_empty_chat_is_refused_on_the_page(page: Any, service: Service) -> None:
    page.goto("/")
    expect(page.locator("#model-select")).to_have_value("dallas-demo")
    page.check("#chat-toggle")
    page.click("#submit")
    expect(page.locator("#form-error")).to_have_text("Write a message first.")
    page.uncheck("#chat-toggle")
    expect(page.locator("#prompt")).to_be_visible()
