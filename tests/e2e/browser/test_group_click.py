"""After Group, the next click is not swallowed: Group opens the new supernode's name field, and the
click that leaves it (on a node of the link graph, a row of the connections panel, a button of the
subgraph list) both keeps the group, named, and does what it was aimed at."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.support.browser import Service, shoot

PINNED = ["3_88_10", "4_12_10", "5_277_10"]  # Texas (L3), say Austin (L4), say Austin (L5)


def open_grouped(page: Any, service: Service) -> None:
    """The Dallas graph with three nodes pinned; two checked and grouped, the name field open."""
    graph_id = service.trace()
    page.goto(f"/graph/{service_path(graph_id)}")
    page.wait_for_selector("#explorer[data-interactive='1']")
    items = page.locator(".pinned-list li")
    expect(items).to_have_count(3)
    items.nth(0).locator("input[type=checkbox]").check()
    items.nth(1).locator("input[type=checkbox]").check()
    page.click("#sg-group")
    expect(page.locator("#sg-rename-input")).to_be_focused()


def service_path(graph_id: str) -> str:
    return f"{graph_id}?pinnedIds={','.join(PINNED)}"


def grouped(page: Any) -> list[list[str]]:
    return page.evaluate("window.__attrgraph.store.get().supernodes")  # type: ignore[no-any-return]


def test_click_on_a_graph_node_after_group(page: Any, service: Service) -> None:
    open_grouped(page, service)
    # A feature node that is visible, not pinned and not clicked: its place on the screen.
    target = page.evaluate(
        """() => {
          const { graph, store, linkGraph } = window.__attrgraph;
          const s = store.get();
          const node = graph.nodes.find((n) => n.kind === 'feature' && n.id !== s.clickedId
            && !s.pinnedIds.includes(n.id) && linkGraph.screenPosition(n.id) && n.influence < 0.6);
          return { id: node.id, ...linkGraph.screenPosition(node.id) };
        }"""
    )
    stage = page.locator("#linkgraph .lg-stage").bounding_box()
    page.mouse.click(stage["x"] + target["x"], stage["y"] + target["y"])
    # The click took effect: that node is the clicked one, its connections are shown.
    page.wait_for_function("(id) => window.__attrgraph.store.get().clickedId === id", arg=target["id"])
    expect(page.locator("#clicked-label")).to_be_visible()
    # And the group was kept, under its default name, the name field closed.
    expect(page.locator("#sg-rename-input")).to_have_count(0)
    supernodes = grouped(page)
    assert len(supernodes) == 1 and sorted(supernodes[0][1:]) == sorted(PINNED[:2]), supernodes
    expect(page.locator(".pinned-list li.is-supernode")).to_have_count(1)
    shoot(page, "group-then-click-node")


def test_click_on_a_connection_row_after_group(page: Any, service: Service) -> None:
    open_grouped(page, service)
    before = page.evaluate("window.__attrgraph.store.get().clickedId")
    row = page.locator(".conn-inputs .conn-row").first
    wanted = row.get_attribute("data-id")
    assert wanted and wanted != before
    box = row.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("(id) => window.__attrgraph.store.get().clickedId === id", arg=wanted)
    trail = page.evaluate("window.__attrgraph.store.get().trail")
    assert trail[-2:] == [before, wanted], trail  # a walk step, as a click on the row makes
    assert len(grouped(page)) == 1


def test_click_on_a_subgraph_button_after_group(page: Any, service: Service) -> None:
    open_grouped(page, service)
    # The third pinned node, not in the group: its "show" button selects it.
    show = page.locator(f".pinned-list li[data-key='{PINNED[2]}'] button.link-button")
    box = show.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("(id) => window.__attrgraph.store.get().clickedId === id", arg=PINNED[2])
    assert len(grouped(page)) == 1
    # The checkbox of the new supernode takes a click too.
    box = page.locator(".pinned-list li.is-supernode input[type=checkbox]").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator(".pinned-list li.is-supernode input[type=checkbox]")).to_be_checked()
