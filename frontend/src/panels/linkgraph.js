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
import { edgesOf, labelOf, placeOf, searchNodes, visibleMask } from "../lib/graphdata.js";
import { layoutGraph, MARGIN } from "../lib/layout.js";
import { activationFill, EMBED_FILL, ERROR_FILL, LOGIT_FILL, NEG_RGB, POS_RGB, rgba } from "../lib/colors.js";
import { num, pct, quoted } from "../lib/format.js";
import { labelOverrides, select, togglePin, labelsChanged } from "../lib/state.js";

const LAYOUT_KEYS = ["pruningThreshold", "hideErrors", "pinnedIds", "trail", "clickedId"];
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
  function makeElement(node) {
    const r = nodeRadius(node);
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

  function syncElements() {
    for (let i = 0; i < n; i++) {
      let e = elements[i];
      if (mask[i]) {
        if (!e) {
          e = elements[i] = makeElement(graph.nodes[i]);
          nodeLayer.append(e);
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
  function buildAxes() {
    clear(grid);
    clear(axes);
    clear(labelLayer);
    rowLabels = layout.rows.map((row) => {
      const line = svgEl("line", { class: "row-line", x1: MARGIN.left - 6, x2: size.width - MARGIN.right });
      const text = svgEl("text", { class: "row-label", x: 6, dy: "0.32em" });
      text.textContent = row.label;
      grid.append(line);
      axes.append(text);
      return { row, line, text };
    });
    columnLabels = layout.columns.map((col) => {
      const text = svgEl("text", { class: "col-label", "text-anchor": "middle" });
      const title = svgEl("title");
      title.textContent = `position ${col.pos}: ${quoted(col.token)}`;
      const span = svgEl("tspan");
      text.append(title, span);
      axes.append(text);
      return { col, text, span };
    });
    logitLabels = graph.logits
      .filter((d) => mask[d.i])
      .map((d) => {
        const text = svgEl("text", { class: "logit-label", "data-id": d.id });
        text.textContent = `${d.token.trim() || quoted(d.token)} ${pct(d.prob)}`;
        labelLayer.append(text);
        return { node: d, text };
      });
  }

  function positionAxes() {
    const bottom = size.height - MARGIN.bottom + 22;
    for (const { row, line, text } of rowLabels) {
      const y = transform.applyY(row.y).toFixed(1);
      line.setAttribute("y1", y);
      line.setAttribute("y2", y);
      text.setAttribute("y", y);
    }
    for (const { col, text, span } of columnLabels) {
      const x0 = transform.applyX(col.x0);
      const x1 = transform.applyX(col.x1);
      const chars = Math.floor((x1 - x0) / 6.4);
      const label = col.token.replace(/^ /, "·");
      span.textContent = chars >= 2 ? (label.length > chars ? label.slice(0, Math.max(1, chars - 1)) + "…" : label) : "";
      text.setAttribute("x", ((x0 + x1) / 2).toFixed(1));
      text.setAttribute("y", bottom);
    }
    // Output labels lean right; where outputs crowd, a label shows only with room beside it
    // (most probable first), and the rest are in the tooltip.
    let lastX = -Infinity;
    const shown = [...logitLabels].sort((a, b) => sx(a.node.i) - sx(b.node.i));
    for (const { node, text } of shown) {
      const x = sx(node.i);
      const y = sy(node.i) - nodeRadius(node) - 5;
      const room = x - lastX >= 12;
      text.style.display = room ? "" : "none";
      if (room) lastX = x;
      text.setAttribute("transform", `translate(${x.toFixed(1)},${y.toFixed(1)}) rotate(-40)`);
    }
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

  function connectedEdges(i) {
    return [...edgesOf(graph.incoming, i), ...edgesOf(graph.outgoing, i)];
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
    for (const e of edgesOf(graph.incoming, clicked.i)) add(src[e], weight[e]);
    for (const e of edgesOf(graph.outgoing, clicked.i)) add(tgt[e], weight[e]);
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
    mask = visibleMask(graph, store.get());
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
    const overrides = labelOverrides(store.get());
    clear(tooltip);
    tooltip.append(
      el("div.tt-label", labelOf(node, overrides)),
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
  stage.addEventListener("pointerout", (event) => {
    if (nodeFromEvent(event)) tooltip.hidden = true;
  });

  // -- state ------------------------------------------------------------------------------------
  let shownMask = null;
  store.subscribe((state, changed) => {
    settle(); // a change in the middle of a gesture: draw at the current positions first
    if (LAYOUT_KEYS.some((k) => changed.has(k))) {
      const next = visibleMask(graph, state);
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
    if (changed.has("densityThreshold")) drawEdges();
  });

  new ResizeObserver(
    perFrame(() => {
      if (resize()) relayout();
    }),
  ).observe(stage);
  shownMask = visibleMask(graph, store.get());
  relayout();
  if (timing) timing.linkgraph = performance.now();

  return {
    resetZoom,
    visibleCount: () => mask.reduce((a, b) => a + b, 0),
    redraw,
    /** Screen position of a node within the stage (tests and benchmarks). */
    screenPosition: (id) => {
      const node = graph.byId.get(id);
      return node && mask[node.i] ? { x: sx(node.i), y: sy(node.i) } : null;
    },
  };
}
