// The link graph. Layers, bottom to top:
//
//   canvas.lg-edges   every visible link, as hairlines (faint; alpha by strength)
//   svg.lg-svg        every visible node (crisp, hit-testable, styled by CSS)
//   div.lg-dim        a translucent veil, shown while a node is clicked
//   canvas.lg-lit     the clicked node's links, wide and strong
//   svg.lg-top        axes, output labels, and copies of the clicked node and its neighbours
//
// A click therefore touches a few dozen elements and one small canvas, never all nodes: the veil
// dims everything else. Pan and zoom move node positions (semantic zoom: nodes keep their size);
// while a gesture runs the compositor just moves the drawn layers, which are redrawn when it pauses.

import { select as d3select, zoom as d3zoom, zoomIdentity } from "d3";
import { clear, el, svgEl, perFrame } from "../lib/dom.js";
import { edgesOf, labelDisplay, placeOf, searchNodes, visibleMask } from "../lib/graphdata.js";
import { layoutGraph, MARGIN } from "../lib/layout.js";
import { activationFill, EMBED_FILL, ERROR_FILL, LOGIT_FILL, NEG_RGB, POS_RGB, rgba } from "../lib/colors.js";
import { num, pct, quoted, tokenText } from "../lib/format.js";
import { labelOverrides, select, togglePin, labelsChanged } from "../lib/state.js";

const LAYOUT_KEYS = ["pruningThreshold", "hideErrors", "pinnedIds", "trail", "clickedId", "hiddenIds"];
const WIDE_LIT = 200; // the clicked node's strongest links drawn wide; any beyond as hairlines
const SHARP_AFTER_MS = 140; // redraw everything this long after the last pan/zoom event

export function nodeRadius(node) {
  if (node.kind === "logit") return 4 + 8 * Math.sqrt(node.prob || 0);
  if (node.kind === "embedding") return 5;
  if (node.kind === "error") return 3.5;
  const inf = node.influence ?? 0.5;
  return 2.6 + 4.4 * (1 - Math.min(1, inf)) ** 1.5;
}

function nodeFill(node, maxActivation) {
  if (node.kind === "feature") return activationFill(node.activation, maxActivation);
  if (node.kind === "error") return ERROR_FILL;
  if (node.kind === "embedding") return EMBED_FILL;
  return LOGIT_FILL;
}

export function createLinkGraph(root, { graph, store, timing }) {
  clear(root);
  const stage = el("div.lg-stage");
  const edgeCanvas = el("canvas.lg-edges", { "aria-hidden": "true" });
  const litCanvas = el("canvas.lg-lit", { "aria-hidden": "true" });
  const dim = el("div.lg-dim", { hidden: true });
  const svg = svgEl("svg", { class: "lg-svg", role: "img", "aria-label": "Link graph: nodes by layer and token position" });
  const top = svgEl("svg", { class: "lg-top", "aria-hidden": "true" });
  const grid = svgEl("g", { class: "lg-grid" });
  const nodeLayer = svgEl("g", { class: "lg-nodes" });
  svg.append(grid, nodeLayer);
  const axes = svgEl("g", { class: "lg-axes" });
  const labelLayer = svgEl("g", { class: "lg-labels" });
  const matchLayer = svgEl("g", { class: "lg-matches" });
  const litLayer = svgEl("g", { class: "lg-litnodes" });
  top.append(axes, matchLayer, litLayer, labelLayer);
  const tooltip = el("div.tooltip", { role: "tooltip", hidden: true });
  const legend = el(
    "div.lg-legend",
    el("span.lg-hint", "wheel: zoom · drag: pan · click: connections · shift-click: pin"),
    el("span.key.key-pos", "excites"),
    el("span.key.key-neg", "inhibits"),
    el("span.key.key-feature", "feature"),
    el("span.key.key-error", "error"),
    el("span.key.key-embed", "token"),
    el("span.key.key-logit", "output"),
    el("span.key.key-pinned", "pinned"),
  );
  stage.append(edgeCanvas, svg, dim, litCanvas, top, tooltip);
  root.append(el("h2.panel-title.visually-hidden", "Link graph"), stage, legend);

  const n = graph.nodes.length;
  const elements = new Array(n).fill(null);
  let settled = zoomIdentity; // the transform everything was last drawn at (see gestureFrame)
  let moving = false;
  let mask = new Uint8Array(n);
  let layout = null;
  let transform = zoomIdentity;
  let size = { width: 0, height: 0, dpr: 1 };
  let litCopies = []; // {i, el} copies of the clicked node and its neighbours, above the veil
  let matchCopies = []; // copies of the nodes the search matches, above the veil
  let pinnedEls = [];
  let columnLabels = [];
  let rowLabels = [];
  let logitLabels = [];

  // -- nodes ------------------------------------------------------------------------------------
  // A token's square is as large as the layout leaves room for (long prompts: smaller).
  const radiusOf = (node) => (node.kind === "embedding" && layout ? layout.embedHalf : nodeRadius(node));

  function makeElement(node) {
    const r = radiusOf(node);
    let shape;
    if (node.kind === "feature" || node.kind === "logit") {
      shape = svgEl("circle", { r: r.toFixed(2) });
    } else {
      shape = svgEl("rect", { width: 2 * r, height: 2 * r, rx: node.kind === "embedding" ? 2 : 0 });
      shape.half = r;
    }
    shape.setAttribute("class", `n n-${node.kind}`);
    shape.setAttribute("data-i", node.i);
    shape.setAttribute("data-id", node.id);
    shape.setAttribute("fill", nodeFill(node, graph.maxActivation));
    if (node.kind === "logit") shape.setAttribute("aria-label", `Output “${node.token}” ${pct(node.prob)}`);
    else if (node.kind === "embedding") shape.setAttribute("aria-label", node.label);
    return shape;
  }

  function sizeSquare(e, half) {
    if (e.half === half) return;
    e.half = half;
    e.setAttribute("width", 2 * half);
    e.setAttribute("height", 2 * half);
  }

  function syncElements() {
    for (let i = 0; i < n; i++) {
      let e = elements[i];
      if (mask[i]) {
        if (!e) {
          e = elements[i] = makeElement(graph.nodes[i]);
          nodeLayer.append(e);
        } else if (graph.nodes[i].kind === "embedding") {
          sizeSquare(e, layout.embedHalf);
        }
        if (e.style.display) e.style.display = "";
      } else if (e && e.style.display !== "none") {
        e.style.display = "none";
      }
    }
  }

  const sx = (i) => transform.applyX(layout.x[i]);
  const sy = (i) => transform.applyY(layout.y[i]);

  // Positions as cx/cy and x/y, never a transform attribute: each transformed SVG element gets its
  // own paint property node, and thousands of them make every frame's commit slow.
  function place(e, i) {
    const x = sx(i);
    const y = sy(i);
    if (!Number.isFinite(x) || !Number.isFinite(y)) return; // not laid out (hidden)
    if (e.half === undefined) {
      e.setAttribute("cx", x.toFixed(1));
      e.setAttribute("cy", y.toFixed(1));
    } else {
      e.setAttribute("x", (x - e.half).toFixed(1));
      e.setAttribute("y", (y - e.half).toFixed(1));
    }
  }

  function positionNodes() {
    for (let i = 0; i < n; i++) if (mask[i]) place(elements[i], i);
    for (const { i, el: copy } of litCopies) place(copy, i);
    for (const { i, el: copy } of matchCopies) place(copy, i);
  }

  // -- axes and labels --------------------------------------------------------------------------
  // Every label is placed so that none overlaps another or leaves the stage: token labels under
  // the graph (horizontal where each fits its column, else at 45 degrees, as many as have room,
  // busy positions first; abbreviated, the full token in the tooltip), output labels in rows above
  // the outputs with a leader line, and short labels beside the strongest feature nodes.
  const ANGLE = 45;
  const SIN = Math.SQRT1_2;
  const TOKEN_PITCH = 19; // px between the anchors of two angled token labels
  const widths = new Map(); // "class|text" -> px
  let measure = null;
  let nodeLabels = [];
  let leaderLayer = null;

  function textWidth(cls, text) {
    const key = `${cls}|${text}`;
    let w = widths.get(key);
    if (w === undefined) {
      if (!measure || !measure.isConnected) {
        measure = svgEl("text", { x: -1000, y: -1000, "aria-hidden": "true" });
        top.append(measure);
      }
      measure.setAttribute("class", `${cls} measuring`);
      measure.textContent = text;
      w = measure.getComputedTextLength();
      widths.set(key, w);
    }
    return w;
  }

  const abbreviate = (label, chars) => (label.length > chars ? label.slice(0, Math.max(1, chars - 1)) + "…" : label);
  const overlaps = (a, b, pad = 1) => a[0] < b[2] + pad && b[0] < a[2] + pad && a[1] < b[3] + pad && b[1] < a[3] + pad;

  function buildAxes() {
    clear(grid);
    clear(axes);
    clear(labelLayer);
    measure = null;
    leaderLayer = svgEl("g", { class: "lg-leaders" });
    labelLayer.append(leaderLayer);
    rowLabels = layout.rows.map((row) => {
      const line = svgEl("line", { class: "row-line", x1: MARGIN.left - 6, x2: size.width - MARGIN.right });
      const text = svgEl("text", { class: "row-label", x: 6, dy: "0.32em" });
      text.textContent = row.label;
      grid.append(line);
      axes.append(text);
      return { row, line, text };
    });
    columnLabels = layout.columns.map((col) => {
      const text = svgEl("text", { class: "col-label", "data-pos": col.pos });
      const title = svgEl("title");
      title.textContent = `position ${col.pos}: ${quoted(col.token)}`;
      const span = svgEl("tspan");
      text.append(title, span);
      axes.append(text);
      return { col, text, span, label: tokenText(col.token).replace(/^ /, "·") };
    });
    logitLabels = graph.logits
      .filter((d) => mask[d.i])
      .map((d) => {
        const text = svgEl("text", { class: "logit-label", "data-id": d.id });
        text.textContent = `${d.token.trim() || quoted(d.token)} ${pct(d.prob)}`;
        const leader = svgEl("line", { class: "leader" });
        labelLayer.append(text);
        leaderLayer.append(leader);
        return { node: d, text, leader };
      });
    // The strongest feature nodes (lowest cumulative influence) that have a label of their own.
    const strongest = graph.nodes
      .filter((d) => mask[d.i] && d.kind === "feature" && d.featureIndex >= 0)
      .sort((a, b) => (a.influence ?? 1) - (b.influence ?? 1))
      .slice(0, 60);
    nodeLabels = strongest.map((node) => {
      const text = svgEl("text", { class: "node-label", "data-id": node.id });
      labelLayer.append(text);
      return { node, text, shown: "" };
    });
  }

  function placeTokenLabels(placed) {
    const flatY = size.height - MARGIN.bottom + 8;
    // An angled label's top corner rises some 7 px above its anchor: below the token squares.
    const angledY = flatY + Math.max(0, layout.embedBottom + 1);
    const maxLen = (size.height - angledY - 6) / SIN; // an angled label's length that stays on the stage
    const cols = columnLabels.map((c) => ({ ...c, x0: transform.applyX(c.col.x0), x1: transform.applyX(c.col.x1) }));
    const charW = textWidth("col-label", "M");
    const fitsFlat = cols.every((c) => c.x1 - c.x0 - 4 >= Math.min(c.label.length, 10) * charW);
    const inView = (x) => x >= MARGIN.left - 8 && x <= size.width - 2;
    if (fitsFlat) {
      const baseY = flatY;
      for (const c of cols) {
        const x = (c.x0 + c.x1) / 2;
        const chars = Math.floor((c.x1 - c.x0 - 4) / charW);
        const show = inView(x) && chars >= 1;
        c.span.textContent = show ? abbreviate(c.label, chars) : "";
        c.text.style.display = show ? "" : "none";
        c.text.setAttribute("text-anchor", "middle");
        c.text.removeAttribute("transform");
        c.text.setAttribute("x", x.toFixed(1));
        c.text.setAttribute("y", (baseY + 10).toFixed(1));
        if (show) {
          const w = textWidth("col-label", c.span.textContent);
          placed.push([x - w / 2, baseY, x + w / 2, baseY + 13]);
        }
      }
      return;
    }
    // Angled: busy positions first, then the rest left to right, each where it has room.
    const baseY = angledY;
    const order = [...cols].sort((a, b) => b.col.busy - a.col.busy || a.col.pos - b.col.pos);
    const anchors = [];
    for (const c of order) {
      const x = (c.x0 + c.x1) / 2;
      c.text.removeAttribute("x");
      c.text.removeAttribute("y");
      c.text.setAttribute("text-anchor", "end");
      const room = inView(x) && anchors.every((a) => Math.abs(a - x) >= TOKEN_PITCH);
      let chars = Math.floor(Math.min(maxLen, (x - 4) / SIN) / charW);
      if (!room || chars < 1) {
        c.text.style.display = "none";
        continue;
      }
      chars = Math.min(chars, 14);
      c.span.textContent = abbreviate(c.label, chars);
      const len = textWidth("col-label", c.span.textContent);
      const ax = x + 4;
      c.text.style.display = "";
      c.text.setAttribute("transform", `translate(${ax.toFixed(1)},${baseY.toFixed(1)}) rotate(-${ANGLE})`);
      anchors.push(x);
      placed.push([ax - len * SIN - 8, baseY - 8, ax + 8, baseY + len * SIN + 8]);
    }
  }

  function placeLogitLabels(placed) {
    const ROW = 15;
    const rows = [[], [], [], []]; // intervals already used in each row
    const sorted = [...logitLabels].sort((a, b) => b.node.prob - a.node.prob);
    for (const item of sorted) {
      const { node, text, leader } = item;
      const nx = sx(node.i);
      const ny = sy(node.i) - radiusOf(node) - 4;
      const w = textWidth("logit-label", text.textContent);
      let spot = null;
      for (let r = 0; r < rows.length && !spot; r++) {
        const y = ny - 10 - r * ROW; // baseline
        if (y - 11 < 2 || nx < 0 || nx > size.width) break;
        const candidates = [nx - w / 2, ...rows[r].flatMap(([a, b]) => [b + 6, a - 6 - w])]
          .map((x0) => Math.min(size.width - 3 - w, Math.max(MARGIN.left, x0)))
          .sort((p, q) => Math.abs(p + w / 2 - nx) - Math.abs(q + w / 2 - nx));
        for (const x0 of candidates) {
          const box = [x0, y - 11, x0 + w, y + 3];
          if (Math.abs(x0 + w / 2 - nx) > 300) break;
          if (rows[r].some(([a, b]) => x0 < b + 5 && a < x0 + w + 5)) continue;
          if (placed.some((p) => overlaps(p, box))) continue;
          spot = { x0, y, r, box };
          break;
        }
      }
      if (!spot) {
        text.style.display = "none";
        leader.style.display = "none";
        continue;
      }
      rows[spot.r].push([spot.x0, spot.x0 + w]);
      placed.push(spot.box);
      text.style.display = "";
      text.removeAttribute("transform");
      text.setAttribute("x", spot.x0.toFixed(1));
      text.setAttribute("y", spot.y.toFixed(1));
      leader.style.display = "";
      leader.setAttribute("x1", (spot.x0 + w / 2).toFixed(1));
      leader.setAttribute("y1", (spot.y + 3).toFixed(1));
      leader.setAttribute("x2", nx.toFixed(1));
      leader.setAttribute("y2", (ny + 3).toFixed(1));
    }
  }

  function placeNodeLabels(placed) {
    const show = labelDisplay(graph, store.get());
    const area = size.width * size.height;
    const budget = Math.max(6, Math.min(nodeLabels.length, Math.round(area / 22000)));
    const bottom = size.height - MARGIN.bottom + 4;
    let shown = 0;
    for (const item of nodeLabels) {
      const { node, text } = item;
      const label = show(node);
      const x = sx(node.i);
      const y = sy(node.i);
      let box = null;
      let short = "";
      if (shown < budget && label.base && !/^L\d+ #\d+$/.test(label.base) && Number.isFinite(x) && Number.isFinite(y)) {
        // The layer that tells two features of one label apart is never cut off.
        short = abbreviate(label.base, Math.max(6, 18 - label.suffix.length)) + label.suffix;
        const w = textWidth(label.weak ? "node-label weak" : "node-label", short);
        const r = radiusOf(node) + 3;
        for (const [x0, anchor] of [[x + r, "start"], [x - r - w, "end"]]) {
          const b = [x0, y - 8, x0 + w, y + 4];
          if (b[0] < MARGIN.left || b[2] > size.width - 3 || b[1] < 2 || b[3] > bottom) continue;
          if (placed.some((p) => overlaps(p, b, 2))) continue;
          box = b;
          text.setAttribute("text-anchor", anchor);
          text.setAttribute("x", (anchor === "start" ? x0 : x0 + w).toFixed(1));
          break;
        }
      }
      if (!box) {
        text.style.display = "none";
        continue;
      }
      if (item.shown !== short) text.textContent = item.shown = short;
      text.classList.toggle("weak", label.weak);
      text.setAttribute("y", (y + 3.5).toFixed(1));
      text.style.display = "";
      placed.push(box);
      shown++;
    }
  }

  function positionAxes() {
    const placed = [];
    for (const { row, line, text } of rowLabels) {
      const y = transform.applyY(row.y);
      line.setAttribute("y1", y.toFixed(1));
      line.setAttribute("y2", y.toFixed(1));
      text.setAttribute("y", y.toFixed(1));
      const visible = y > 4 && y < size.height - MARGIN.bottom + 6;
      text.style.display = visible ? "" : "none";
      if (visible) placed.push([2, y - 8, 6 + textWidth("row-label", row.label) + 2, y + 8]);
    }
    placeTokenLabels(placed);
    placeLogitLabels(placed);
    placeNodeLabels(placed);
  }

  // -- links ------------------------------------------------------------------------------------
  function context(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.setTransform(size.dpr, 0, 0, size.dpr, 0, 0);
    ctx.clearRect(0, 0, size.width, size.height);
    return ctx;
  }

  function curve(ctx, s, t) {
    const x0 = sx(s);
    const y0 = sy(s);
    const x1 = sx(t);
    const y1 = sy(t);
    const my = (y0 + y1) / 2;
    ctx.moveTo(x0, y0);
    ctx.bezierCurveTo(x0, my, x1, my, x1, y1);
  }

  // Links are drawn as hairlines (a software rasteriser strokes 1px lines some 30x faster than
  // wider ones), strongest first, a slice per frame: the first frame already shows the structure,
  // and no frame blocks input for long. `timing.edgesDrawn` marks when the last slice is done.
  const BUCKETS = 4;
  const PER_FRAME = 6000;
  const order = Int32Array.from(graph.links.share.keys()).sort(
    (a, b) => Math.abs(graph.links.share[b]) - Math.abs(graph.links.share[a]),
  );
  let edgeJob = 0; // id of the drawing in progress; bumping it cancels the rest of that drawing

  function drawEdges() {
    const job = ++edgeJob;
    const ctx = context(edgeCanvas);
    const minShare = store.get().densityThreshold;
    let next = 0;
    const slice = () => {
      if (job !== edgeJob) return;
      next = strokeSlice(ctx, next, minShare);
      if (next < order.length) requestAnimationFrame(slice);
      else if (timing && !timing.edgesDrawn) timing.edgesDrawn = performance.now();
    };
    slice();
  }

  /** Stroke links order[from..] until PER_FRAME are drawn; returns where to continue. */
  function strokeSlice(ctx, from, minShare) {
    const { src, tgt, share } = graph.links;
    ctx.lineWidth = 1;
    let style = -1;
    let drawn = 0;
    let k = from;
    for (; k < order.length && drawn < PER_FRAME; k++) {
      const e = order[k];
      const a = Math.abs(share[e]);
      if (a < minShare) {
        k = order.length; // sorted by strength: everything after is fainter still
        break;
      }
      if (!mask[src[e]] || !mask[tgt[e]]) continue;
      const b = Math.min(BUCKETS - 1, Math.floor(Math.sqrt(a) * BUCKETS)) + (share[e] >= 0 ? 0 : BUCKETS);
      if (b !== style) {
        if (style >= 0) ctx.stroke();
        style = b;
        const level = b % BUCKETS;
        ctx.strokeStyle = rgba(b < BUCKETS ? POS_RGB : NEG_RGB, 0.1 + 0.16 * level);
        ctx.beginPath();
      }
      curve(ctx, src[e], tgt[e]);
      if (++drawn % 1000 === 0) {
        ctx.stroke();
        ctx.beginPath();
      }
    }
    if (style >= 0) ctx.stroke();
    return k;
  }

  /** The clicked node's links the link-type filter shows: its inputs, its outputs, or both. */
  function connectedEdges(i) {
    const type = store.get().linkType;
    return [
      ...(type !== "outputs" ? edgesOf(graph.incoming, i) : []),
      ...(type !== "inputs" ? edgesOf(graph.outgoing, i) : []),
    ];
  }

  function drawLit() {
    const ctx = context(litCanvas);
    const clicked = graph.byId.get(store.get().clickedId);
    if (!clicked) return;
    const { src, tgt, weight } = graph.links;
    const edges = connectedEdges(clicked.i).filter((e) => mask[src[e]] && mask[tgt[e]]);
    edges.sort((a, b) => Math.abs(weight[b]) - Math.abs(weight[a]));
    const max = edges.length ? Math.abs(weight[edges[0]]) : 1;
    // Weakest first, so the strongest links end up on top.
    for (let k = edges.length - 1; k >= 0; k--) {
      const e = edges[k];
      const a = Math.abs(weight[e]) / (max || 1);
      ctx.beginPath();
      curve(ctx, src[e], tgt[e]);
      ctx.strokeStyle = rgba(weight[e] >= 0 ? POS_RGB : NEG_RGB, 0.35 + 0.6 * a);
      ctx.lineWidth = k < WIDE_LIT ? 1 + 4 * a : 1;
      ctx.stroke();
    }
  }

  // -- node states ------------------------------------------------------------------------------
  function copyOf(i, classes, layer = litLayer, list = litCopies) {
    const copy = makeElement(graph.nodes[i]);
    copy.classList.add(...classes);
    place(copy, i);
    layer.append(copy);
    list.push({ i, el: copy });
  }

  function updateVeil() {
    dim.hidden = !graph.byId.has(store.get().clickedId) && !matchCopies.length;
  }

  function applyFocus() {
    clear(litLayer);
    litCopies = [];
    const state = store.get();
    const clicked = graph.byId.get(state.clickedId);
    updateVeil();
    if (!clicked || !mask[clicked.i]) return;
    const { src, tgt, weight } = graph.links;
    const pinned = new Set(state.pinnedIds);
    const seen = new Set([clicked.i]);
    const add = (i, w) => {
      if (seen.has(i) || !mask[i]) return;
      seen.add(i);
      const classes = ["lit", w >= 0 ? "lit-pos" : "lit-neg"];
      if (pinned.has(graph.nodes[i].id)) classes.push("pinned");
      copyOf(i, classes);
    };
    const type = state.linkType;
    if (type !== "outputs") for (const e of edgesOf(graph.incoming, clicked.i)) add(src[e], weight[e]);
    if (type !== "inputs") for (const e of edgesOf(graph.outgoing, clicked.i)) add(tgt[e], weight[e]);
    // Pinned nodes stay in sight above the veil too.
    for (const id of pinned) {
      const node = graph.byId.get(id);
      if (node && mask[node.i] && !seen.has(node.i)) {
        seen.add(node.i);
        copyOf(node.i, ["pinned"]);
      }
    }
    copyOf(clicked.i, ["lit", "clicked"]);
  }

  function applyPinned() {
    for (const e of pinnedEls) e.classList.remove("pinned");
    pinnedEls = [];
    for (const id of store.get().pinnedIds) {
      const node = graph.byId.get(id);
      const e = node && elements[node.i];
      if (e) {
        e.classList.add("pinned");
        pinnedEls.push(e);
      }
    }
  }

  function applySearch() {
    clear(matchLayer);
    matchCopies = [];
    const state = store.get();
    for (const node of searchNodes(graph, state.search, labelOverrides(state))) {
      if (mask[node.i]) copyOf(node.i, ["match"], matchLayer, matchCopies);
    }
    updateVeil();
  }

  /** The visible nodes less those the user hid (a clicked, walked or pinned node stays). */
  function shownMaskFor(state) {
    const m = visibleMask(graph, state);
    if (!state.hiddenIds.length) return m;
    const keep = new Set([state.clickedId, ...state.trail, ...state.pinnedIds]);
    for (const id of state.hiddenIds) {
      const node = graph.byId.get(id);
      if (node && !keep.has(id) && node.kind !== "embedding" && node.kind !== "logit") m[node.i] = 0;
    }
    return m;
  }

  // -- layout and redraw ------------------------------------------------------------------------
  function resize() {
    const rect = stage.getBoundingClientRect();
    const width = Math.max(200, Math.floor(rect.width));
    const height = Math.max(200, Math.floor(rect.height));
    const dpr = window.devicePixelRatio || 1;
    if (width === size.width && height === size.height && dpr === size.dpr) return false;
    size = { width, height, dpr };
    for (const canvas of [edgeCanvas, litCanvas]) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    zoomer.extent([[0, 0], [width, height]]).translateExtent([[0, 0], [width, height]]);
    for (const s of [svg, top]) {
      s.setAttribute("width", width);
      s.setAttribute("height", height);
      s.setAttribute("viewBox", `0 0 ${width} ${height}`);
    }
    return true;
  }

  function relayout() {
    settle();
    resize();
    mask = shownMaskFor(store.get());
    layout = layoutGraph(graph, mask, size.width, size.height);
    syncElements();
    buildAxes();
    applyFocus();
    applySearch();
    redraw();
    applyPinned();
  }

  // While a pan or zoom gesture runs, the drawn layers are moved by the compositor (a CSS
  // transform from where they were drawn to where they should be: no repaint at all). When the
  // gesture pauses, everything is drawn again at the new positions, nodes at their own size.
  const layers = [edgeCanvas, svg, litCanvas, top];
  let settleTimer = 0;
  const gestureFrame = perFrame(() => {
    if (!moving) return;
    const s = transform.k / settled.k;
    const dx = transform.x - settled.x * s;
    const dy = transform.y - settled.y * s;
    for (const layer of layers) layer.style.transform = `translate(${dx}px, ${dy}px) scale(${s})`;
  });

  function settle() {
    clearTimeout(settleTimer);
    if (!moving) return;
    moving = false;
    stage.classList.remove("panning");
    for (const layer of layers) layer.style.transform = "";
    redraw();
  }

  function redraw() {
    settled = transform;
    positionNodes();
    positionAxes();
    drawEdges();
    drawLit();
  }

  const zoomer = d3zoom()
    .scaleExtent([1, 40])
    .filter((event) => (!event.ctrlKey || event.type === "wheel") && !event.button && event.type !== "dblclick")
    .on("zoom", (event) => {
      transform = event.transform;
      tooltip.hidden = true;
      if (!moving && event.sourceEvent?.type === "mousemove") stage.classList.add("panning");
      moving = true;
      gestureFrame();
      clearTimeout(settleTimer);
      settleTimer = setTimeout(settle, SHARP_AFTER_MS);
    });
  d3select(stage).call(zoomer).on("dblclick.zoom", null);

  function resetZoom() {
    d3select(stage).call(zoomer.transform, zoomIdentity);
  }

  // -- events -----------------------------------------------------------------------------------
  function nodeFromEvent(event) {
    const target = event.target instanceof Element ? event.target.closest("[data-i]") : null;
    return target ? graph.nodes[+target.getAttribute("data-i")] : null;
  }

  stage.addEventListener("click", (event) => {
    const node = nodeFromEvent(event);
    if (!node) return;
    if (event.shiftKey || event.metaKey || event.ctrlKey) togglePin(store, node.id);
    else select(store, node.id);
  });

  stage.addEventListener("pointerover", (event) => {
    const node = nodeFromEvent(event);
    if (!node) return;
    const label = labelDisplay(graph, store.get())(node);
    clear(tooltip);
    tooltip.dataset.kind = "node";
    tooltip.append(
      el(`div.tt-label${label.weak ? ".weak" : ""}`, label.text),
      label.weak ? el("div.tt-meta", "automatic label: the tokens it fires on most") : null,
      el("div.tt-meta", `${placeOf(node)} ${quoted(graph.tokens[node.ctx] ?? "")}`),
      node.kind === "feature"
        ? el("div.tt-meta", `activation ${num(node.activation)} · influence ${num(node.influence)}`)
        : node.kind === "logit"
          ? el("div.tt-meta", `probability ${pct(node.prob, 1)}`)
          : null,
      el("div.tt-hint", "click: connections · shift-click: pin"),
    );
    tooltip.hidden = false;
    const x = sx(node.i);
    const y = sy(node.i);
    const w = tooltip.offsetWidth;
    tooltip.style.left = `${Math.min(size.width - w - 4, Math.max(4, x - w / 2))}px`;
    tooltip.style.top = `${y > 90 ? y - tooltip.offsetHeight - 12 : y + 14}px`;
  });
  // Under the graph: the token of the column under the pointer, labelled or not.
  stage.addEventListener("pointermove", (event) => {
    if (!layout || nodeFromEvent(event)) return;
    const rect = stage.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    if (y < size.height - MARGIN.bottom + 4) {
      if (tooltip.dataset.kind === "token") tooltip.hidden = true;
      return;
    }
    const col = layout.columns.find((c) => transform.applyX(c.x0) <= x && x < transform.applyX(c.x1));
    if (!col) return;
    clear(tooltip);
    tooltip.dataset.kind = "token";
    tooltip.append(el("div.tt-label", quoted(col.token)), el("div.tt-meta", `position ${col.pos}`));
    tooltip.hidden = false;
    tooltip.style.left = `${Math.min(size.width - tooltip.offsetWidth - 4, Math.max(4, x - tooltip.offsetWidth / 2))}px`;
    tooltip.style.top = `${size.height - MARGIN.bottom - tooltip.offsetHeight - 6}px`;
  });
  stage.addEventListener("pointerleave", () => {
    if (tooltip.dataset.kind === "token") tooltip.hidden = true;
  });
  stage.addEventListener("pointerout", (event) => {
    if (nodeFromEvent(event)) tooltip.hidden = true;
  });

  // -- state ------------------------------------------------------------------------------------
  let shownMask = null;
  store.subscribe((state, changed) => {
    settle(); // a change in the middle of a gesture: draw at the current positions first
    if (LAYOUT_KEYS.some((k) => changed.has(k))) {
      const next = shownMaskFor(state);
      const same = shownMask && next.every((v, i) => v === shownMask[i]);
      shownMask = next;
      if (!same) return relayout();
    }
    if (changed.has("clickedId")) {
      drawLit();
      applyFocus();
    } else if (changed.has("pinnedIds")) {
      applyFocus();
    }
    if (changed.has("pinnedIds")) applyPinned();
    if (changed.has("search") || labelsChanged(changed)) applySearch();
    if (labelsChanged(changed)) positionAxes();
    if (changed.has("linkType")) {
      drawLit();
      applyFocus();
    }
    if (changed.has("densityThreshold")) drawEdges();
  });

  new ResizeObserver(
    perFrame(() => {
      if (resize()) relayout();
    }),
  ).observe(stage);
  shownMask = shownMaskFor(store.get());
  relayout();
  if (timing) timing.linkgraph = performance.now();

  return {
    resetZoom,
    visibleCount: () => mask.reduce((a, b) => a + b, 0),
    redraw,
    /** Where position p's column is centred, in stage pixels (tests). */
    columnCenter: (p) => {
      const col = layout.columns[p];
      return col ? transform.applyX(col.center) : null;
    },
    /** Screen position of a node within the stage (tests and benchmarks). */
    screenPosition: (id) => {
      const node = graph.byId.get(id);
      return node && mask[node.i] ? { x: sx(node.i), y: sy(node.i) } : null;
    },
  };
}
