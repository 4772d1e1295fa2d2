"""Label geometry of the explorer's link graph, read from the page: every visible label's four corners
(rotated labels included) in the link-graph stage's coordinates, and which pairs overlap or leave the
stage. Used by the layout tests (tests/e2e/browser/test_layout.py)."""

from __future__ import annotations

from typing import Any

# Each label's corners from its SVG bounding box and current transform matrix, relative to the
# link graph's top layer (the stage).
LABEL_QUADS_JS = """
() => {
  const top = document.querySelector('#linkgraph svg.lg-top');
  // (text.measuring: the off-stage element the page measures label widths with)
  const sel = ['col-label', 'logit-label', 'node-label', 'row-label']
    .map((c) => `text.${c}:not(.measuring)`).join(', ');
  const out = [];
  for (const t of top.querySelectorAll(sel)) {
    if (getComputedStyle(t).display === 'none' || !t.textContent.trim()) continue;
    const b = t.getBBox();
    if (!b.width) continue;
    const m = t.getCTM();
    const ref = top.getCTM();
    const inv = ref.inverse().multiply(m);
    const pts = [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
      .map(([x, y]) => [inv.a * x + inv.c * y + inv.e, inv.b * x + inv.d * y + inv.f]);
    const span = t.querySelector('tspan');
    out.push({kind: t.classList[0], text: (span || t).textContent, quad: pts});
  }
  return {labels: out, width: top.width.baseVal.value, height: top.height.baseVal.value};
}
"""


def _axes(quad: list[list[float]]) -> list[tuple[float, float]]:
    return [
        (quad[1][0] - quad[0][0], quad[1][1] - quad[0][1]),
        (quad[3][0] - quad[0][0], quad[3][1] - quad[0][1]),
    ]


def quads_overlap(a: list[list[float]], b: list[list[float]], tolerance: float = 0.5) -> bool:
    """Separating-axis test for two convex quads (rectangles, possibly rotated)."""
    for ax, ay in _axes(a) + _axes(b):
        pa = [x * ax + y * ay for x, y in a]
        pb = [x * ax + y * ay for x, y in b]
        norm = (ax * ax + ay * ay) ** 0.5 or 1.0
        if max(pa) - tolerance * norm <= min(pb) or max(pb) - tolerance * norm <= min(pa):
            return False
    return True


def label_problems(page: Any) -> tuple[list[str], dict[str, int]]:
    """(problems, count of visible labels by class): labels that overlap one another or stick out of
    the stage."""
    data = page.evaluate(LABEL_QUADS_JS)
    labels = data["labels"]
    w, h = data["width"], data["height"]
    problems = []
    counts: dict[str, int] = {}
    for label in labels:
        counts[label["kind"]] = counts.get(label["kind"], 0) + 1
        xs = [p[0] for p in label["quad"]]
        ys = [p[1] for p in label["quad"]]
        if min(xs) < -0.5 or min(ys) < -0.5 or max(xs) > w + 0.5 or max(ys) > h + 0.5:
            problems.append(f"clipped: {label['kind']} {label['text']!r} {label['quad']}")
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if quads_overlap(a["quad"], b["quad"]):
                problems.append(f"overlap: {a['kind']} {a['text']!r} / {b['kind']} {b['text']!r}")
    return problems, counts


# The link graph's square nodes (tokens and errors) in the same coordinates: their screen boxes
# less the stage's origin.
SQUARES_JS = """
() => {
  const stage = document.querySelector('#linkgraph .lg-stage').getBoundingClientRect();
  const out = [];
  for (const r of document.querySelectorAll('#linkgraph svg.lg-svg rect.n')) {
    if (getComputedStyle(r).display === 'none') continue;
    const b = r.getBoundingClientRect();
    if (!b.width) continue;
    out.push({kind: r.classList[1], id: r.dataset.id,
              box: [b.left - stage.left, b.top - stage.top, b.right - stage.left, b.bottom - stage.top]});
  }
  return out;
}
"""


def _box_quad(box: list[float]) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def square_problems(
    page: Any, kinds: tuple[str, ...] = ("n-embedding",), *, zoomed: bool = False
) -> tuple[list[str], int]:
    """(problems, squares checked): node squares of `kinds` that overlap one another; unless
    `zoomed` (nodes then move past the stage's edges and the fixed token axis), also those that
    overlap a token label or leave the stage."""
    squares = [s for s in page.evaluate(SQUARES_JS) if s["kind"] in kinds]
    data = page.evaluate(LABEL_QUADS_JS)
    w, h = data["width"], data["height"]
    tokens = [label for label in data["labels"] if label["kind"] == "col-label"]
    problems = []
    squares.sort(key=lambda s: s["box"][0])
    for i, a in enumerate(squares):
        x0, y0, x1, y1 = a["box"]
        if not zoomed and (x0 < -0.5 or y0 < -0.5 or x1 > w + 0.5 or y1 > h + 0.5):
            problems.append(f"clipped: {a['kind']} {a['id']} {a['box']}")
        for b in squares[i + 1 :]:
            if b["box"][0] >= x1:
                break  # sorted by left edge: no later square reaches back
            if b["box"][1] < y1 and y0 < b["box"][3]:
                problems.append(f"overlap: {a['kind']} {a['id']} {a['box']} / {b['id']} {b['box']}")
        for label in [] if zoomed else tokens:
            if quads_overlap(_box_quad(a["box"]), label["quad"]):
                problems.append(f"overlap: {a['kind']} {a['id']} / token label {label['text']!r}")
    return problems, len(squares)
