"""The subgraph as a figure: a 6-node subgraph (one of them a supernode of two) exported as PNG and SVG.
The PNG is at least 1600 px wide; the SVG opens on its own, every box holds its whole label (checked
against the labels' text and the boxes' geometry), with the prompt as title and a legend."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.support.browser import Service, shoot
from tests.support.dallas import DALLAS_PROMPT

SVG_NS = "{http://www.w3.org/2000/svg}"
# Layer 1 "Dallas/Houston (Texas cities)", layer 2 "Texas" at " Dallas"; "Texas", "say a capital" at
# the last position; the two "say Austin" features grouped into one supernode.
FEATURES = ["1_233_9", "2_88_9", "3_88_10", "3_409_10", "4_12_10", "5_277_10"]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_subgraph_figure_export(page: Any, service: Service, tmp_path: Path) -> None:
    graph_id = service.trace()
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"/graph/{graph_id}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    austin = page.evaluate("window.__attrgraph.graph.logits.find((d) => d.isTarget).id")
    dallas = page.evaluate(
        "window.__attrgraph.graph.nodes.find((d) => d.kind === 'embedding' && d.token === ' Dallas').id"
    )
    pinned = [dallas, *FEATURES, austin]
    supernodes = [["say Austin (layers 4 and 5)", "4_12_10", "5_277_10"]]
    page.evaluate(
        "([pinnedIds, supernodes]) => window.__attrgraph.store.set({ pinnedIds, supernodes })",
        [pinned, supernodes],
    )
    stage = page.locator("#subgraph .sg-stage")
    expect(stage).to_have_attribute("data-ready", "1")
    items = page.locator("#subgraph .sg-item")
    expect(items).to_have_count(7)  # 8 pinned, two of them one supernode
    # Full labels in the page's drawing too, and the weight of a link shows on hover.
    expected = page.evaluate(
        "(() => [...document.querySelectorAll('#subgraph .pinned-list li > label')]"
        ".map((l) => l.textContent))()"
    )
    drawn = page.eval_on_selector_all(
        "#subgraph .sg-item text.sg-label", "ts => ts.map((t) => t.textContent)"
    )
    assert sorted(drawn) == sorted(expected), (drawn, expected)
    assert "Dallas/Houston (Texas cities)" in drawn
    link = page.locator("#subgraph .sg-link").first
    link.hover(force=True)
    expect(page.locator("#subgraph .sg-wlabel.on")).to_have_count(1)
    # The large view.
    page.click("#subgraph-max")
    expect(page.locator("#subgraph")).to_have_class("panel panel-subgraph is-max")
    shoot(page, "figure-large-view")
    page.keyboard.press("Escape")

    with page.expect_download() as png_download:
        page.click("#sg-export-png")
    png = tmp_path / "subgraph.png"
    png_download.value.save_as(png)
    width, height = png_size(png)
    assert width >= 1600, (width, height)

    with page.expect_download() as svg_download:
        page.click("#sg-export-svg")
    svg_path = tmp_path / "subgraph.svg"
    svg_download.value.save_as(svg_path)
    text = svg_path.read_text()
    root = ET.fromstring(text)  # well-formed, namespaced: a standalone SVG
    assert root.tag == f"{SVG_NS}svg"
    assert float(root.get("width", 0)) * 2 <= width + 1  # the PNG is at least 2x
    labels = ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}text") if t.get("class") == "sg-label"]
    assert sorted(labels) == sorted(expected)
    title = "".join(next(t for t in root.iter(f"{SVG_NS}text") if t.get("class") == "sg-title").itertext())
    assert title.startswith(DALLAS_PROMPT)
    assert any(g.get("class") == "sg-legend" for g in root.iter(f"{SVG_NS}g"))

    # Opened on its own (no page styles, no scripts): every label inside its box, every box inside
    # the figure, the title and legend too.
    viewer = page.context.new_page()
    viewer.set_content(f"<!doctype html><body style='margin:0'>{text}</body>")
    geometry = viewer.evaluate(
        """() => {
          const svg = document.querySelector('svg');
          const r = svg.getBoundingClientRect();
          const inside = (a, b) =>
            a.left >= b.left - 0.5 && a.right <= b.right + 0.5 &&
            a.top >= b.top - 0.5 && a.bottom <= b.bottom + 0.5;
          const bad = [];
          for (const g of svg.querySelectorAll('.sg-item')) {
            const box = g.querySelector('.sg-box').getBoundingClientRect();
            for (const t of g.querySelectorAll('text')) {
              if (!inside(t.getBoundingClientRect(), box)) bad.push(t.textContent);
            }
            if (!inside(box, r)) bad.push('box ' + g.dataset.key);
          }
          for (const t of svg.querySelectorAll('.sg-title, .sg-legend text')) {
            if (!inside(t.getBoundingClientRect(), r)) bad.push(t.textContent);
          }
          return { bad, width: r.width };
        }"""
    )
    assert not geometry["bad"], geometry
    viewer.screenshot(path=str(tmp_path / "standalone.png"))
    shoot(viewer, "figure-standalone-svg")
    viewer.close()
