"""The explorer's layout at three window sizes and three prompt lengths: the link graph gets most of
the window and grows with it; no token, output or node label is clipped or overlaps another (from
the labels' real, rotated boxes), and no token square overlaps another or a token label; panels
collapse, the graph goes full-window."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.browser import Service, shoot
from tests.support.dallas import tokenize_text
from tests.support.labels import label_problems, square_problems

SIZES = [(1024, 768), (1440, 900), (1920, 1200)]
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "saw",
    "Dallas",
    "and",
    "Austin",
    "near",
    "Houston",
    "while",
    "Nora",
    "met",
    "Paul",
    "in",
    "Texas",
]


def prompt_of(n_tokens: int) -> str:
    """A prompt the scripted tracer splits into exactly n_tokens tokens (with <bos>)."""
    words = [WORDS[k % len(WORDS)] for k in range(n_tokens - 2)]
    text = " ".join([*words, "is"])  # the scripted circuit ends on " is"
    assert len(tokenize_text(text)) == n_tokens
    return text


@pytest.fixture(scope="module")
def graphs(service: Service) -> dict[int, str]:
    return {n: service.trace(prompt_of(n)) for n in (5, 40, 200)}


@pytest.fixture
def sized(browser: Any, service: Service) -> Any:
    contexts = []

    def open_at(width: int, height: int, path: str) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=service.url)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.errors = errors
        page.goto(path)
        page.wait_for_selector("#explorer[data-interactive='1']")
        page.wait_for_timeout(250)  # ResizeObserver relayout and label placement
        return page

    yield open_at
    for context in contexts:
        context.close()


def stage_area(page: Any) -> float:
    box = page.locator("#linkgraph .lg-stage").bounding_box()
    return float(box["width"] * box["height"])


def test_graph_gets_most_of_the_window_and_grows(sized: Any, graphs: dict[int, str]) -> None:
    areas = []
    for width, height in SIZES:
        page = sized(width, height, f"/graph/{graphs[40]}")
        area = stage_area(page)
        areas.append(area)
        share = area / (width * height)
        if (width, height) == (1440, 900):
            assert share >= 0.55, f"the graph gets {share:.0%} of a 1440x900 window"
        # The toolbar is one line at every size.
        toolbar = page.locator("#toolbar").bounding_box()
        assert toolbar["height"] < 48, toolbar
        overflow = page.evaluate(
            "(() => { const t = document.getElementById('toolbar'); return [...t.children]"
            ".filter((c) => c.offsetParent"
            " && c.getBoundingClientRect().right > t.getBoundingClientRect().right + 1)"
            ".map((c) => c.textContent || c.className); })()"
        )
        assert not overflow, f"toolbar items past its edge at {width}x{height}: {overflow}"
        # The interventions column takes no room until it is opened.
        assert not page.locator("#interventions").is_visible()
        shoot(page, f"layout-{width}x{height}")
        assert not page.errors, page.errors
    assert areas[0] < areas[1] < areas[2], areas


@pytest.mark.parametrize("n_tokens", [5, 40, 200])
def test_labels_never_clip_or_overlap(sized: Any, graphs: dict[int, str], n_tokens: int) -> None:
    for width, height in SIZES:
        page = sized(width, height, f"/graph/{graphs[n_tokens]}")
        problems, counts = label_problems(page)
        assert not problems, f"{n_tokens} tokens at {width}x{height}:\n" + "\n".join(problems[:20])
        # Every token has its square in the bottom row, none on another, each large enough to see.
        squares, n_squares = square_problems(page)
        assert not squares, f"{n_tokens} tokens at {width}x{height}:\n" + "\n".join(squares[:20])
        assert n_squares == n_tokens
        smallest = page.eval_on_selector_all(
            "#linkgraph svg.lg-svg rect.n-embedding",
            "rs => Math.min(...rs.map((r) => r.getBoundingClientRect().width))",
        )
        assert smallest >= 3, smallest
        # The labels are there: every output of the Dallas graph, a token label for every position
        # of a short prompt and for as many as the width has room for (one per 32 px) in a long
        # one, some node labels.
        stage_w = page.locator("#linkgraph .lg-stage").bounding_box()["width"]
        assert counts.get("logit-label", 0) == 5, counts
        assert counts.get("col-label", 0) >= min(n_tokens, int(stage_w / 32)), counts
        assert counts.get("node-label", 0) >= 3, counts
        # Abbreviated tokens carry the whole token in their tooltip.
        titles = page.eval_on_selector_all(
            "#linkgraph text.col-label title", "ts => ts.map(t => t.textContent)"
        )
        assert len(titles) == n_tokens
        # The same after a zoom (labels are placed again where the nodes are now).
        page.mouse.move(width * 0.4, height * 0.5)
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(400)
        problems, _ = label_problems(page)
        assert not problems, f"{n_tokens} tokens at {width}x{height}, zoomed:\n" + "\n".join(problems[:20])
        squares, _ = square_problems(page, zoomed=True)
        assert not squares, f"{n_tokens} tokens at {width}x{height}, zoomed:\n" + "\n".join(squares[:20])
        page.evaluate("window.__attrgraph.linkGraph.resetZoom()")
        page.wait_for_timeout(300)
        # Any token, labelled or not, shows in full under the pointer.
        last = page.evaluate(
            "(() => { const t = window.__attrgraph.graph.tokens; return t[t.length - 2]; })()"
        )
        box = page.locator("#linkgraph .lg-stage").bounding_box()
        column = page.evaluate(
            "(() => { const g = window.__attrgraph.linkGraph;"
            " return g.columnCenter(window.__attrgraph.graph.tokens.length - 2); })()"
        )
        page.mouse.move(box["x"] + column, box["y"] + box["height"] - 20)
        expect(page.locator("#linkgraph .tooltip")).to_contain_text(last.strip())
        if width in (1024, 1440) or n_tokens == 200:
            shoot(page, f"labels-{n_tokens}tok-{width}x{height}")
        assert not page.errors, page.errors


def test_panels_collapse_resize_and_full_window(sized: Any, graphs: dict[int, str]) -> None:
    page = sized(1440, 900, f"/graph/{graphs[40]}")
    before = stage_area(page)
    # Full window: the graph's stage covers (nearly) the whole viewport; Escape brings it back.
    page.click("#graph-full")
    page.wait_for_timeout(200)
    full = page.locator("#linkgraph .lg-stage").bounding_box()
    assert full["width"] >= 1400 and full["height"] >= 840, full
    problems, _ = label_problems(page)
    assert not problems, problems[:10]
    shoot(page, "layout-full-window")
    page.keyboard.press("Escape")
    page.wait_for_timeout(200)
    assert abs(stage_area(page) - before) < 2
    # Collapse the connections panel: the feature panel takes its room.
    feature = page.locator("#feature").bounding_box()
    page.click("#connections-collapse")
    grown = page.locator("#feature").bounding_box()
    assert grown["height"] > feature["height"] + 100, (feature, grown)
    # Drag the side column's gutter left: the side column widens, the graph narrows.
    gutter = page.locator(".gutter[data-split='side']").bounding_box()
    page.mouse.move(gutter["x"] + gutter["width"] / 2, gutter["y"] + gutter["height"] / 2)
    page.mouse.down()
    page.mouse.move(gutter["x"] - 200, gutter["y"] + gutter["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_timeout(200)
    assert stage_area(page) < before - 100 * 500
    # Interventions open beside the graph when asked for.
    page.click("#iv-toggle")
    expect(page.locator("#interventions")).to_be_visible()
    # The feature dashboard opens large.
    page.locator("svg.lg-svg .n-feature").first.click()
    page.click("#feature-max")
    big = page.locator("#feature").bounding_box()
    assert big["width"] > 1200 and big["height"] > 800, big
    shoot(page, "layout-feature-large")
    page.keyboard.press("Escape")
    page.evaluate("localStorage.clear()")
    assert not page.errors, page.errors
