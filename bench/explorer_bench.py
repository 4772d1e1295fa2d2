"""The explorer in headless Chromium on a large graph: time to interactive, click -> highlighted edges.

    python bench/explorer_bench.py [--nodes 3000] [--links 30000] [--loads 7] [--clicks 40]
                                   [--no-write] [--strict]

A synthetic graph of that size (18 layers, 24 tokens, every node above the default pruning threshold
so all of it is drawn) is stored through the worker's own writer; the API runs as deployed (uvicorn,
its own process); the page is driven by Playwright through Debian's Chromium (never `playwright
install`). Goals: time to interactive <= 1 s, click -> highlighted edges <= 50 ms.

Time to interactive: from navigation start until the graph is drawn and every panel answers clicks
(the page's own mark), and until the first frame after that is painted. Click latency: a real mouse
click on a feature node, from the input event's timestamp until its edges are drawn on the canvas
and every panel has updated (synchronous), and until the next frame is painted.
Results go to bench/out/explorer.json and between the explorer markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attrgraph.format.synthetic import synthetic_graph  # noqa: E402
from attrgraph.protocol import stored_graph  # noqa: E402
from attrgraph.protocol.keys import Keys  # noqa: E402
from attrgraph.protocol.store import GraphWriter  # noqa: E402
from service_common import api_process, percentile, redis_server  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:explorer:start -->", "<!-- bench:explorer:end -->"
OUT = ROOT / "bench" / "out"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
N_LAYERS, N_POS, N_LOGITS = 18, 24, 10
WORDS = [
    "Fact",
    ":",
    "the",
    "capital",
    "of",
    "the",
    "state",
    "containing",
    "Dallas",
    "is",
    "Austin",
    "and",
    "the",
    "river",
    "near",
    "Houston",
    "flows",
    "into",
    "the",
    "gulf",
]


def large_graph(n_nodes: int, n_links: int, seed: int = 0) -> dict[str, Any]:
    """A graph JSON of about n_nodes nodes and exactly n_links links, shaped like a traced one."""
    tokens = ["<bos>"] + [" " + WORDS[i % len(WORDS)] for i in range(N_POS - 1)]
    n_errors = N_LAYERS * 3
    return synthetic_graph(
        "".join(tokens[1:]),
        tokens,
        n_features=n_nodes - N_POS - N_LOGITS - n_errors,
        n_links=n_links,
        n_layers=N_LAYERS,
        n_errors=n_errors,
        n_logits=N_LOGITS,
        seed=seed,
        slug="bench",
        scan="bench-model",
    )


def store_graph(redis_url: str, prefix: str, graph: dict[str, Any]) -> tuple[str, int, int]:
    graph_id = uuid.uuid4().hex
    meta, gz, node_index = stored_graph.encode(
        graph, graph_id=graph_id, model="bench", transcoders="bench-tc"
    )
    GraphWriter(redis.Redis.from_url(redis_url), Keys(prefix), 2 * 1024**3).put(meta, gz, node_index)
    raw = len(stored_graph.decompress(gz))
    return graph_id, raw, len(gz)


CLICK_PROBE = """
() => {
  window.__clicks = [];
  const svg = document.querySelector('svg.lg-svg');
  svg.addEventListener('click', (event) => {
    // Runs after the page's own click handler (registered earlier): everything it drew is done.
    const drawn = performance.now();
    const record = { input: event.timeStamp, drawn };
    window.__clicks.push(record);
    requestAnimationFrame(() => setTimeout(() => { record.frame = performance.now(); }, 0));
  });
}
"""


def chromium() -> str:
    path = os.environ.get("ATTRGRAPH_CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).is_file():
        found = shutil.which("chromium")
        if not found:
            raise SystemExit("no Chromium: apt-get install chromium (or set ATTRGRAPH_CHROMIUM)")
        path = found
    return path


def run(n_nodes: int, n_links: int, loads: int, clicks: int) -> dict[str, Any]:
    from playwright.sync_api import ConsoleMessage, sync_playwright

    graph = large_graph(n_nodes, n_links)
    prefix = f"bench-explorer:{uuid.uuid4().hex[:8]}:"
    results: dict[str, Any] = {"nodes": len(graph["nodes"]), "links": len(graph["links"])}
    with redis_server() as redis_url, api_process(redis_url, prefix) as url:
        graph_id, raw_bytes, gz_bytes = store_graph(redis_url, prefix, graph)
        results.update(json_bytes=raw_bytes, gzip_bytes=gz_bytes)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
            tti, painted, fetched, parsed, links_drawn = [], [], [], [], []
            errors: list[str] = []

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(message.text)

            for k in range(loads + 1):  # the first load warms the server and the disk cache
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                page = context.new_page()
                page.on("console", on_console)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"{url}/graph/{graph_id}")
                page.wait_for_selector("#explorer[data-interactive='1']", timeout=30_000)
                page.wait_for_function("window.__attrgraph.timing.firstFrame")
                timing = page.evaluate(
                    "({...window.__attrgraph.timing, painted: window.__attrgraph.timing.firstFrame})"
                )
                page.wait_for_function("window.__attrgraph.timing.edgesDrawn")
                all_links = page.evaluate(
                    "() => new Promise(r => requestAnimationFrame(() => setTimeout(() =>"
                    " r(performance.now()), 0)))"
                )
                if k:
                    tti.append(timing["interactive"])
                    painted.append(timing["painted"])
                    fetched.append(timing["fetched"])
                    parsed.append(timing["parsed"] - timing["fetched"])
                    links_drawn.append(all_links)
                if k == loads:
                    page.screenshot(path=str(OUT / "explorer-3k.png"))
                    visible = page.evaluate("window.__attrgraph.linkGraph.visibleCount()")
                    results["visible_nodes"] = visible
                    latencies, frames = click_latencies(page, clicks)
                    results["gesture_ms"] = summary(gesture_frames(page))
                    page.screenshot(path=str(OUT / "explorer-3k-clicked.png"))
                context.close()
            browser.close()
    results.update(
        tti_ms=summary(tti),
        painted_ms=summary(painted),
        links_drawn_ms=summary(links_drawn),
        fetch_ms=summary(fetched),
        parse_ms=summary(parsed),
        click_drawn_ms=summary(latencies),
        click_frame_ms=summary(frames),
        console_errors=errors,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
        load=" / ".join(f"{x:.1f}" for x in os.getloadavg()),
        chromium=chromium_version(),
    )
    return results


def click_latencies(page: Any, clicks: int) -> tuple[list[float], list[float]]:
    page.evaluate(CLICK_PROBE)
    ids = page.evaluate(
        "() => window.__attrgraph.graph.nodes.filter(n => n.kind === 'feature' && n.influence < 0.3)"
        ".map(n => n.id)"
    )
    rng = random.Random(1)
    box = page.locator("svg.lg-svg").bounding_box()
    done = 0
    attempts = 0
    while done < clicks and attempts < clicks * 5:
        attempts += 1
        node_id = rng.choice(ids)
        pos = page.evaluate("(id) => window.__attrgraph.linkGraph.screenPosition(id)", node_id)
        if not pos:
            continue
        hit = page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.getAttribute('data-id')",
            [box["x"] + pos["x"], box["y"] + pos["y"]],
        )
        if not hit:
            continue
        page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
        page.wait_for_function("() => window.__clicks.length && window.__clicks.at(-1).frame")
        clicked = page.evaluate("window.__attrgraph.store.get().clickedId")
        assert clicked == hit, (clicked, hit)
        done += 1
        time.sleep(0.05)
    records = page.evaluate("window.__clicks")
    return [r["drawn"] - r["input"] for r in records], [r["frame"] - r["input"] for r in records]


WHEEL_PROBE = """
() => {
  window.__wheels = [];
  window.addEventListener('wheel', (event) => {
    const record = { input: event.timeStamp };
    window.__wheels.push(record);
    requestAnimationFrame(() => setTimeout(() => { record.frame = performance.now(); }, 0));
  }, { capture: true, passive: true });
}
"""


def gesture_frames(page: Any, steps: int = 30) -> list[float]:
    """Zoom in and out with the mouse wheel: input -> the frame that shows the moved graph."""
    page.evaluate(WHEEL_PROBE)
    box = page.locator(".lg-stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    for step in range(steps):
        page.mouse.wheel(0, -120 if step < steps // 2 else 120)
        page.wait_for_function("() => window.__wheels.length && window.__wheels.at(-1).frame")
        time.sleep(0.03)
    records = page.evaluate("window.__wheels")
    return [r["frame"] - r["input"] for r in records]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "p95": round(percentile(values, 95), 1),
        "max": round(max(values), 1),
        "n": len(values),
    }


def chromium_version() -> str:
    import subprocess

    out = subprocess.run([chromium(), "--version"], capture_output=True, text=True).stdout.strip()
    return out.split(" built")[0] or "chromium"


ROWS = [
    ("fetch_ms", "navigation start -> graph JSON received"),
    ("parse_ms", "JSON parse + indexing (links as typed arrays, adjacency)"),
    ("tti_ms", "navigation start -> interactive (every panel mounted)"),
    ("painted_ms", "navigation start -> first frame painted after that"),
    ("links_drawn_ms", "navigation start -> every link drawn (strongest first, a slice per frame)"),
    ("click_drawn_ms", "click -> edges highlighted and panels updated"),
    ("click_frame_ms", "click -> next frame painted"),
    ("gesture_ms", "mouse-wheel zoom -> frame showing it (layers moved by the compositor)"),
]


def markdown(r: dict[str, Any]) -> str:
    goal_tti = "met" if r["painted_ms"]["median"] <= 1000 else "NOT met"
    goal_click = "met" if r["click_frame_ms"]["p95"] <= 50 else "NOT met"
    table = ["| | median | p95 | max |", "|---|---|---|---|"]
    for key, label in ROWS:
        v = r[key]
        table.append(f"| {label} | {v['median']} ms | {v['p95']} ms | {v['max']} ms |")
    rows = "\n".join(table)
    size = f"{r['json_bytes'] / 1e6:.1f} MB JSON, {r['gzip_bytes'] / 1e6:.2f} MB gzip as sent"
    return f"""## Explorer (`bench/explorer_bench.py`)

A synthetic graph of {r["nodes"]:,} nodes and {r["links"]:,} links ({size}); all {r["visible_nodes"]:,}
nodes are drawn at the default pruning threshold.
Headless {r["chromium"]} (software rendering, `--disable-gpu`), 1600x1000 window; API and Redis on
the same machine ({r["machine"]}, load average {r["load"]} while measuring, other jobs running).
Each load is a fresh browser context (no HTTP cache): {r["tti_ms"]["n"]} loads after one warm-up.
Clicks are real mouse clicks on {r["click_drawn_ms"]["n"]} random feature nodes; zoom steps are real
mouse-wheel events.

{rows}

Goals: time to interactive <= 1 s (median, first painted frame): **{goal_tti}**.
Click -> highlighted edges <= 50 ms (p95, next painted frame): **{goal_click}**.

How: nodes are SVG, links two canvases (all links as hairlines, drawn strongest first a slice per
frame; the clicked node's links on their own canvas), and a click only adds copies of the clicked
node and its neighbours above a translucent veil instead of restyling every node. Pan and zoom move
the drawn layers on the compositor and redraw them once the gesture pauses (140 ms).
Graphs with more than 150,000 links are sent thinned (every node, the strongest links) and the
clicked node's full edge list is fetched from `/api/graphs/{{id}}/nodes/{{node}}`."""


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else ""
    block = f"{START}\n{text.strip()}\n{END}"
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        doc = head + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--links", type=int, default=30000)
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--clicks", type=int, default=40)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a goal is not met")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results = run(args.nodes, args.links, args.loads, args.clicks)
    (OUT / "explorer.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    print(text)
    if results["console_errors"]:
        print("console errors:", *results["console_errors"], sep="\n  ")
        raise SystemExit(1)
    if not args.no_write:
        write_doc(text)
    if args.strict and "NOT met" in text:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
