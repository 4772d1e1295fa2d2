"""Collaboration in real browsers: a label edited in one context appears in another within 2 s, a
script payload stored as a label stays inert text, and a share link restores the exact view in a
fresh context. Uses a service of its own (its own key prefix), so its shared labels cannot leak
into the other browser tests."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.browser import VIEWPORT, Console, Service, shoot
from tests.support.environment import require_module
from tests.support.services import clear_prefix

sync_api = require_module("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def collab_service(browser_redis_url: str) -> Iterator[Service]:
    svc = Service(browser_redis_url)
    with svc.api, svc.worker:
        yield svc
    clear_prefix(browser_redis_url, svc.settings.key_prefix)


@pytest.fixture(scope="module")
def graph_id(collab_service: Service) -> str:
    return collab_service.trace()


class Contexts:
    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[Any] = []
        self.consoles: list[Console] = []

    def page(self) -> Any:
        context = self.browser.new_context(viewport=VIEWPORT, base_url=self.base_url)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        pg = context.new_page()
        self.consoles.append(Console(pg))
        return pg

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        problems = [p for c in self.consoles for p in c.problems]
        assert not problems, "the pages reported errors:\n" + "\n".join(problems)


@pytest.fixture
def contexts(browser: Any, collab_service: Service) -> Iterator[Contexts]:
    found = Contexts(browser, collab_service.url)
    yield found
    found.close()


def open_graph(page: Any, path: str) -> None:
    page.goto(path)
    page.wait_for_selector("#explorer[data-interactive='1']")
    page.wait_for_selector("body[data-live='1']")


def feature_ids(page: Any) -> list[str]:
    return list(
        page.evaluate(
            "() => { const seen = new Set(); return window.__attrgraph.graph.nodes"
            ".filter((n) => n.kind === 'feature' && !seen.has(n.featureLayer + '_' + n.featureIndex)"
            " && seen.add(n.featureLayer + '_' + n.featureIndex)).map((n) => n.id) }"
        )
    )


def click_node(page: Any, node_id: str) -> None:
    page.evaluate("(id) => window.__attrgraph.store.set({ clickedId: id, trail: [id] })", node_id)
    expect(page.locator("#feature .feature-label")).to_be_visible()


def rename(page: Any, text: str) -> None:
    page.locator("#feature .label-row button").click()
    field = page.locator("#feature .rename-input")
    field.fill(text)
    field.press("Enter")


def label_of(page: Any, node_id: str) -> str:
    return str(page.evaluate("(id) => window.__attrgraph.graph.byId.get(id).label", node_id))


def test_label_edit_reaches_another_context_live(contexts: Contexts, graph_id: str) -> None:
    alice, bob = contexts.page(), contexts.page()
    open_graph(alice, f"/graph/{graph_id}")
    node = feature_ids(alice)[0]
    open_graph(bob, f"/graph/{graph_id}?clickedId={node}")
    alice.fill("#display-name", "Alice")
    alice.locator("#display-name").dispatch_event("change")
    click_node(alice, node)
    start = time.monotonic()
    rename(alice, "Shared by Alice")
    bob.wait_for_function(
        "([id, text]) => window.__attrgraph.graph.byId.get(id).label === text",
        arg=[node, "Shared by Alice"],
        timeout=2000,
    )
    assert time.monotonic() - start < 2.0
    expect(bob.locator("#feature-label")).to_have_text("Shared by Alice", timeout=1000)
    expect(bob.locator(".label-author")).to_contain_text("Alice")
    # Every position of the feature carries the label, and it survives a reload.
    bob.reload()
    bob.wait_for_selector("#explorer[data-interactive='1']")
    bob.wait_for_function(
        "([id, t]) => window.__attrgraph.graph.byId.get(id).label === t", arg=[node, "Shared by Alice"]
    )
    shoot(bob, "collab-live-label")


def test_conflicting_edit_shows_the_other_value(
    contexts: Contexts, graph_id: str, collab_service: Service
) -> None:
    alice, bob = contexts.page(), contexts.page()
    open_graph(alice, f"/graph/{graph_id}")
    node = feature_ids(alice)[1]
    open_graph(bob, f"/graph/{graph_id}")
    click_node(alice, node)
    rename(alice, "Alice first")
    bob.wait_for_function(
        "([id, t]) => window.__attrgraph.graph.byId.get(id).label === t", arg=[node, "Alice first"]
    )
    # A stale write (from version 0) is refused with the current value; nobody's page changes.
    # (Through httpx: Chrome logs every 4xx response as a console error.)
    layer, index = node.split("_")[:2]
    reply = httpx.put(
        f"{collab_service.url}/api/labels/dallas-plt/{layer}/{index}",
        json={"value": "Bob late", "version": 0},
    )
    status = reply.status_code
    assert reply.json()["current"]["value"] == "Alice first"
    assert status == 409
    assert label_of(bob, node) == "Alice first"


def test_script_in_a_label_stays_inert(contexts: Contexts, graph_id: str) -> None:
    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    writer, reader = contexts.page(), contexts.page()
    open_graph(writer, f"/graph/{graph_id}")
    node = feature_ids(writer)[2]
    open_graph(reader, f"/graph/{graph_id}?clickedId={node}")
    click_node(writer, node)
    rename(writer, payload)
    expect(writer.locator("#feature-label")).to_have_text(payload)
    expect(reader.locator("#feature-label")).to_have_text(payload, timeout=2000)
    fresh = contexts.page()
    open_graph(fresh, f"/graph/{graph_id}?clickedId={node}&pinnedIds={node}")
    expect(fresh.locator("#feature-label")).to_have_text(payload)
    fresh.locator("#feature .label-history-box summary").click()
    expect(fresh.locator(".label-history li").first).to_contain_text(payload)
    for page in (writer, reader, fresh):
        assert page.evaluate("() => window.__xss") is None
        assert page.locator("img[src='x']").count() == 0


def test_share_link_restores_the_exact_view(contexts: Contexts, graph_id: str) -> None:
    page = contexts.page()
    open_graph(page, f"/graph/{graph_id}")
    ids = feature_ids(page)
    a, b, c = ids[3], ids[4], ids[5]
    click_node(page, a)
    rename(page, "Label when shared")
    page.wait_for_function(
        "([id, t]) => window.__attrgraph.graph.byId.get(id).label === t", arg=[a, "Label when shared"]
    )
    page.evaluate(
        "([a, b, c]) => window.__attrgraph.store.set({ pinnedIds: [a, b, c], supernodes: [['group', b, c]],"
        " clickedId: c, trail: [c], pruningThreshold: 0.6, densityThreshold: 0.05 })",
        [a, b, c],
    )
    state_keys = [
        "clickedId",
        "trail",
        "pinnedIds",
        "supernodes",
        "clerps",
        "pruningThreshold",
        "densityThreshold",
        "hideErrors",
        "interventions",
    ]
    expected = page.evaluate(
        "(keys) => Object.fromEntries(keys.map((k) => [k, window.__attrgraph.store.get()[k]]))", state_keys
    )
    page.click("#share")
    link = page.locator("#share-link")
    expect(link).to_have_value(re.compile(r"/v/[A-Za-z0-9]{8}$"))
    url = link.input_value()

    # The label changes after the link was made: the link still shows it as it was.
    click_node(page, a)
    rename(page, "Label changed later")
    page.wait_for_function(
        "([id, t]) => window.__attrgraph.graph.byId.get(id).label === t", arg=[a, "Label changed later"]
    )

    fresh = contexts.page()
    fresh.goto(url)
    fresh.wait_for_selector("#explorer[data-interactive='1']")
    restored = fresh.evaluate(
        "(keys) => Object.fromEntries(keys.map((k) => [k, window.__attrgraph.store.get()[k]]))", state_keys
    )
    assert restored == expected
    fresh.wait_for_function(
        "([id, t]) => window.__attrgraph.graph.byId.get(id).label === t", arg=[a, "Label when shared"]
    )
    shoot(fresh, "collab-share-restored")


def test_token_field_appears_only_where_tokens_are_required(
    contexts: Contexts, graph_id: str, browser: Any, browser_redis_url: str
) -> None:
    open_page = contexts.page()
    open_graph(open_page, f"/graph/{graph_id}")
    expect(open_page.locator("#write-token")).to_be_hidden()  # no tokens configured here

    svc = Service(browser_redis_url, tokens="alice:s3cret")
    with svc.api, svc.worker:
        gid = svc.trace()
        guarded = Contexts(browser, svc.url)
        try:
            page = guarded.page()
            open_graph(page, f"/graph/{gid}")
            field = page.locator("#write-token")
            expect(field).to_be_visible()
            field.fill("s3cret")
            field.dispatch_event("change")
            node = feature_ids(page)[0]
            save = (
                "(id) => window.__attrgraph.collab.saveLabel("
                "window.__attrgraph.graph.byId.get(id), 'With a token')"
            )
            saved = page.evaluate(save, node)
            assert saved["ok"], saved
            layer, index, _ = node.split("_")
            labels = httpx.get(f"{svc.url}/api/graphs/{gid}/labels").json()["labels"]
            assert labels[f"{layer}_{index}"]["value"] == "With a token"
            assert labels[f"{layer}_{index}"]["author"] == "alice"  # the token names the author
        finally:
            guarded.close()
    clear_prefix(browser_redis_url, svc.settings.key_prefix)
