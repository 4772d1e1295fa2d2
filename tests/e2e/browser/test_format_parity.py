"""The page reads graph JSON as the server does: frontend/src/lib/graphformat.js gives every node the
same type, feature key and error address as attrgraph.format, so a label written from the page is
stored under the key the API looks up (as test_scores.py does for the subgraph scores)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attrgraph.format.feature_keys import feature_key_text, parse_feature_key
from attrgraph.format.node_ids import cantor_pair, cantor_unpair, error_address, node_type
from tests.support.browser import VIEWPORT, Console
from tests.support.format_cases import node_cases

pytest.importorskip("playwright.sync_api")

MODULE = Path(__file__).resolve().parents[3] / "frontend" / "src" / "lib" / "graphformat.js"


@pytest.fixture
def format_page(browser: Any) -> Iterator[Any]:
    """A blank page with graphformat.js imported as the module it is (window.graphformat)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    console = Console(page)
    url = "data:text/javascript;base64," + base64.b64encode(MODULE.read_bytes()).decode()
    page.evaluate("async (url) => { window.graphformat = await import(url); }", url)
    yield page
    context.close()
    assert not console.problems, console.problems


def test_node_reading_matches_the_server(format_page: Any) -> None:
    cases = node_cases()
    answers = format_page.evaluate(
        """(nodes) => nodes.map((n) => ({
            type: window.graphformat.nodeType(n.feature_type),
            key: window.graphformat.featureKeyText(n),
            error: window.graphformat.errorAddress(n),
        }))""",
        cases,
    )
    assert len(answers) == len(cases)
    for node, page in zip(cases, answers, strict=True):
        error = error_address(node)
        want = {
            "type": node_type(node.get("feature_type")).value,
            "key": feature_key_text(node),
            "error": list(error) if error is not None else None,
        }
        assert page == want, node


def test_cantor_pairing_and_key_text_match(format_page: Any) -> None:
    values = [0, 1, 2, 3, 5, 62, 4801, 121843834, 2**40 + 12345, 2**52 - 1]
    values += [cantor_pair(w, 0) for w in (10**6, 4 * 10**6)] + [
        cantor_pair(0, w) for w in (10**6, 4 * 10**6)
    ]
    unpaired = format_page.evaluate("(vs) => vs.map((v) => window.graphformat.cantorUnpair(v))", values)
    assert [tuple(p) for p in unpaired] == [cantor_unpair(v) for v in values]
    pairs = [[20, 15589], [0, 0], [61, 2_500_000]]
    paired = format_page.evaluate("(ps) => ps.map(([l, i]) => window.graphformat.cantorPair(l, i))", pairs)
    assert paired == [cantor_pair(layer, index) for layer, index in pairs]
    texts = ["20_15589", "20", "20_1_5", "a_b", "20_-1", " 20_1"]
    parsed = format_page.evaluate("(ts) => ts.map((t) => window.graphformat.parseFeatureKey(t))", texts)
    want = [parse_feature_key(t) for t in texts]
    assert parsed == [[k.layer, k.index] if k is not None else None for k in want]
