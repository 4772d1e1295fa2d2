// The subgraph panel: the pinned nodes in a layered layout, with links between them summed over
// supernode members. Check nodes to group them into a named supernode; rename, ungroup, unpin.
// Shows the subgraph's replacement and completeness scores, and exports it as SVG or PNG.

import ELK from "elkjs/lib/elk.bundled.js";

import { clear, download, el, svgEl } from "../lib/dom.js";
import { labelDisplay, labelOf } from "../lib/graphdata.js";
import { pct, quoted, signed } from "../lib/format.js";
import { subgraphScores } from "../lib/scores.js";
import { NEG, POS, EMBED_FILL, ERROR_FILL, LOGIT_FILL, activationFill } from "../lib/colors.js";
import { labelOverrides, removeMembers, select, labelsChanged } from "../lib/state.js";

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

/** Pinned nodes as subgraph items: each supernode is one item, every other pinned node its own. */
export function subgraphItems(graph, state) {
  const overrides = labelOverrides(state);
  const items = [];
  const grouped = new Set();
  state.supernodes.forEach(([label, ...ids], k) => {
    const members = ids.map((id) => graph.byId.get(id)).filter(Boolean);
    if (!members.length) return;
    members.forEach((m) => grouped.add(m.id));
    items.push({
      key: `sn:${k}`,
      index: k,
      supernode: true,
      label,
      members,
      layer: members.reduce((a, m) => a + m.layer, 0) / members.length,
      ctx: members.reduce((a, m) => a + m.ctx, 0) / members.length,
    });
  });
  for (const id of state.pinnedIds) {
    const node = graph.byId.get(id);
    if (!node || grouped.has(id)) continue;
    const weak = labelDisplay(graph, state)(node).weak; // a bare token list: drawn apart
    items.push({ key: id, supernode: false, label: labelOf(node, overrides), weak, members: [node], layer: node.layer, ctx: node.ctx, node });
  }
  return items;
}

/** Summed link weights between items (links inside one item left out). */
export function itemLinks(graph, items) {
  const owner = new Map();
  items.forEach((item, k) => item.members.forEach((m) => owner.set(m.i, k)));
  const sums = new Map();
  const { src, tgt, weight, n } = graph.links;
  for (let e = 0; e < n; e++) {
    const a = owner.get(src[e]);
    const b = owner.get(tgt[e]);
    if (a === undefined || b === undefined || a === b) continue;
    const key = a * 100003 + b;
    sums.set(key, (sums.get(key) || 0) + weight[e]);
  }
  return [...sums].map(([key, w]) => ({ from: Math.floor(key / 100003), to: key % 100003, weight: w }));
}

const STRIPE = 5; // activation stripe on the left of a feature box

function itemStyle(item, graph) {
  const node = item.members[0];
  if (item.supernode) return { fill: "#fef3c7", text: "#111827", sub: "#374151", stripe: null };
  if (node.kind === "feature") {
    return { fill: "#fffaf3", text: "#111827", sub: "#374151", stripe: activationFill(node.activation, graph.maxActivation) };
  }
  if (node.kind === "error") return { fill: ERROR_FILL, text: "#111827", sub: "#1f2937", stripe: null };
  if (node.kind === "embedding") return { fill: EMBED_FILL, text: "#ffffff", sub: "#e5e7eb", stripe: null };
  return { fill: LOGIT_FILL, text: "#ffffff", sub: "#e5e7eb", stripe: null };
}

function itemSub(item, graph) {
  if (item.supernode) {
    const layers = [...new Set(item.members.map((m) => (m.kind === "feature" || m.kind === "error" ? `L${m.layer}` : m.kind === "logit" ? "out" : "emb")))];
    return `${item.members.length} nodes · ${layers.join(" ")}`;
  }
  const n = item.node;
  const where = quoted(graph.tokens[n.ctx] ?? "");
  if (n.kind === "logit") return `output ${pct(n.prob)}`;
  if (n.kind === "embedding") return `token @${n.ctx}`;
  return `L${n.layer} ${where}`;
}

// -- layered layout (ELK) -------------------------------------------------------------------------
// Boxes are as large as their full label needs (long labels wrap, nothing is cut), and ELK's
// layered algorithm places them: one partition per model layer, so inputs sit at the bottom and
// outputs on top as in the link graph, with crossings minimised and token order kept where it can.

const LABEL_FONT = `600 12px ${FONT}`;
const SUB_FONT = `11px ${FONT}`;
const LINE_H = 15;
const MAX_TEXT_W = 230;
let measureCtx = null;

function textWidth(text, font) {
  if (!measureCtx) measureCtx = document.createElement("canvas").getContext("2d");
  measureCtx.font = font;
  return measureCtx.measureText(text).width;
}

/** Word-wrap `text` into lines no wider than `max` px; the lines joined give `text` back exactly. */
export function wrapText(text, max, font = LABEL_FONT) {
  const parts = text.match(/\S+\s*|\s+/g) || [""];
  const lines = [];
  let line = "";
  for (let part of parts) {
    while (textWidth(part.trimEnd(), font) > max) {
      // A word longer than a line: break it where it fills one.
      let k = part.length;
      while (k > 1 && textWidth((line + part.slice(0, k)).trimEnd(), font) > max) k--;
      if (line && textWidth((line + part.slice(0, k)).trimEnd(), font) > max) {
        lines.push(line);
        line = "";
        continue;
      }
      lines.push(line + part.slice(0, k));
      line = "";
      part = part.slice(k);
    }
    if (line && textWidth((line + part).trimEnd(), font) > max) {
      lines.push(line);
      line = "";
    }
    line += part;
  }
  if (line || !lines.length) lines.push(line);
  return lines;
}

function sizeItem(item, graph) {
  item.lines = wrapText(item.label, MAX_TEXT_W);
  item.sub = itemSub(item, graph);
  const left = item.supernode || item.members[0].kind !== "feature" ? 8 : STRIPE + 7;
  const textW = Math.max(...item.lines.map((l) => textWidth(l.trimEnd(), LABEL_FONT)), textWidth(item.sub, SUB_FONT));
  item.left = left;
  item.w = Math.ceil(Math.max(90, left + textW + 10));
  item.h = 8 + item.lines.length * LINE_H + 16;
}

let elk = null;

/** Positions (item.x, item.y) for every item; resolves to the drawing's size. */
export async function layoutItems(items, links, graph) {
  for (const item of items) sizeItem(item, graph);
  const ranks = [...new Set(items.map((d) => d.layer))].sort((a, b) => a - b);
  const rankOf = new Map(ranks.map((l, k) => [l, k]));
  const order = items.map((_, k) => k).sort((a, b) => items[a].ctx - items[b].ctx || items[a].layer - items[b].layer);
  const edges = links
    .filter((l) => rankOf.get(items[l.from].layer) < rankOf.get(items[l.to].layer))
    .map((l, k) => ({ id: `e${k}`, sources: [`n${l.from}`], targets: [`n${l.to}`] }));
  if (!elk) elk = new ELK();
  const laid = await elk.layout({
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "UP",
      "elk.partitioning.activate": "true",
      "elk.spacing.nodeNode": "22",
      "elk.layered.spacing.nodeNodeBetweenLayers": "54",
      "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
      "elk.padding": "[top=14,left=14,bottom=14,right=14]",
      "elk.separateConnectedComponents": "false",
    },
    children: order.map((k) => ({
      id: `n${k}`,
      width: items[k].w,
      height: items[k].h,
      layoutOptions: { "elk.partitioning.partition": String(rankOf.get(items[k].layer)) },
    })),
    edges,
  });
  for (const child of laid.children) {
    const item = items[+child.id.slice(1)];
    item.x = child.x;
    item.y = child.y;
  }
  return { width: Math.ceil(laid.width), height: Math.ceil(laid.height) };
}

export function createSubgraph(root, { graph, store, title }) {
  clear(root);
  const head = el("div.panel-head");
  const scores = el("div.scores", { id: "subgraph-scores", "aria-live": "polite" });
  const actions = el("div.sg-actions", { role: "toolbar", "aria-label": "Subgraph actions" });
  const stage = el("div.sg-stage");
  const listBox = el("div.sg-list");
  const main = el("div.sg-main", stage, listBox);
  root.append(head, scores, actions, main);
  head.append(el("h2.panel-title", "Subgraph"));
  let renaming = null; // item key being renamed
  // No re-render between a press and its click: replacing the list (or the buttons) under the
  // pointer would swallow the click. A change meanwhile (a name saved as its field loses focus
  // to this very press) is drawn once the click is done.
  let pointerIsDown = false;
  let pendingRender = false;
  let rendering = false; // the list is being replaced: a field losing focus to that is no edit
  window.addEventListener("pointerdown", () => (pointerIsDown = true), true);
  const released = () =>
    setTimeout(() => {
      pointerIsDown = false;
      if (pendingRender) update();
    });
  window.addEventListener("pointerup", released, true);
  window.addEventListener("pointercancel", released, true);

  function update() {
    if (pointerIsDown) {
      pendingRender = true;
      return;
    }
    pendingRender = false;
    render();
  }
  let scoreMemo = { pinned: null, scores: null };
  let svg = null;

  const button = (text, attrs, onclick) => el("button", { type: "button", ...attrs, onclick }, text);

  function items() {
    return subgraphItems(graph, store.get());
  }

  function checkedItems(all) {
    const checked = new Set(store.get().checked);
    return all.filter((it) => checked.has(it.key));
  }

  function toggleCheck(key) {
    const checked = store.get().checked;
    store.set({ checked: checked.includes(key) ? checked.filter((k) => k !== key) : [...checked, key] });
  }

  function group() {
    const state = store.get();
    const chosen = checkedItems(items());
    if (chosen.length < 2) return;
    const members = chosen.flatMap((it) => it.members.map((m) => m.id));
    const indexes = new Set(chosen.filter((it) => it.supernode).map((it) => it.index));
    const kept = state.supernodes.filter((_, k) => !indexes.has(k));
    const first = chosen[0];
    const label = first.supernode ? first.label : first.label.slice(0, 40);
    const supernodes = [...kept, [label, ...members]];
    renaming = `sn:${supernodes.length - 1}`;
    store.set({ supernodes, checked: [] });
  }

  function ungroup() {
    const chosen = new Set(checkedItems(items()).filter((it) => it.supernode).map((it) => it.index));
    if (!chosen.size) return;
    store.set({ supernodes: store.get().supernodes.filter((_, k) => !chosen.has(k)), checked: [] });
  }

  function unpin() {
    const chosen = checkedItems(items());
    if (!chosen.length) return;
    const ids = new Set(chosen.flatMap((it) => it.members.map((m) => m.id)));
    const state = store.get();
    store.set({
      pinnedIds: state.pinnedIds.filter((id) => !ids.has(id)),
      supernodes: removeMembers(state.supernodes, ids),
      checked: [],
    });
  }

  function rename(item, label) {
    const state = store.get();
    renaming = null;
    if (!label) return update();
    if (item.supernode) {
      store.set({ supernodes: state.supernodes.map((g, k) => (k === item.index ? [label, ...g.slice(1)] : g)) });
    } else {
      const clerps = state.clerps.filter(([id]) => id !== item.key);
      if (label !== item.node.label) clerps.push([item.key, label]);
      store.set({ clerps });
    }
  }

  function renderActions(all) {
    const chosen = checkedItems(all);
    const supers = chosen.filter((it) => it.supernode);
    clear(actions);
    actions.append(
      button("Group", { id: "sg-group", disabled: chosen.length < 2, title: "Group the checked nodes into a supernode" }, group),
      button("Ungroup", { id: "sg-ungroup", disabled: !supers.length }, ungroup),
      button("Rename", { id: "sg-rename", disabled: chosen.length !== 1 }, () => {
        renaming = chosen[0].key;
        render();
      }),
      button("Unpin", { id: "sg-unpin", disabled: !chosen.length }, unpin),
      el("span.spacer"),
      button("SVG", { id: "sg-export-svg", disabled: !all.length, title: "Download the subgraph as SVG" }, () => exportSvg()),
      button("PNG", { id: "sg-export-png", disabled: !all.length, title: "Download the subgraph as PNG" }, () => exportPng()),
    );
  }

  function renderScores() {
    const state = store.get();
    clear(scores);
    const whole = graph.extras.scores || {};
    const fmt = (x) => (Number.isFinite(x) ? pct(x, 1) : "–");
    if (state.pinnedIds.length) {
      if (scoreMemo.pinned !== state.pinnedIds) scoreMemo = { pinned: state.pinnedIds, scores: subgraphScores(graph, state.pinnedIds) };
      const s = scoreMemo.scores;
      scores.append(
        el(
          "span.score",
          { title: "Share of the influence on the outputs that reaches the tokens through pinned nodes only. Input this page does not hold (pruned on the server) counts as unexplained." },
          "Replacement ",
          el("b", { id: "sg-replacement" }, fmt(s.replacement)),
        ),
        el(
          "span.score",
          { title: "Influence-weighted share of the pinned nodes' input that comes from pinned nodes or tokens." },
          "Completeness ",
          el("b", { id: "sg-completeness" }, fmt(s.completeness)),
        ),
      );
    }
    // The engine's scores: the full traced graph, and the part kept by server-side pruning.
    const engineScores = [
      ["Full graph", "every traced node and edge", whole],
      ["Pruned graph", "the nodes and edges kept by pruning on the server", whole.pruned],
    ];
    for (const [name, what, value] of engineScores) {
      if (!value || !Number.isFinite(value.replacement_score)) continue;
      scores.append(
        el(
          "span.score.muted",
          { title: `The engine's scores for ${what}` },
          `${name}: replacement ${fmt(value.replacement_score)} · completeness ${fmt(value.completeness_score)}`,
        ),
      );
    }
  }

  function renderList(all) {
    rendering = true;
    try {
      clear(listBox);
    } finally {
      rendering = false;
    }
    main.classList.toggle("is-empty", !all.length);
    listBox.hidden = !all.length;
    if (!all.length) return;
    const checked = new Set(store.get().checked);
    const ul = el("ul.pinned-list", { "aria-label": "Pinned nodes" });
    for (const item of all) {
      const id = `chk-${item.key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
      const box = el("input", { type: "checkbox", id, checked: checked.has(item.key), "data-key": item.key, onchange: () => toggleCheck(item.key) });
      let label;
      if (renaming === item.key) {
        label = el("input.rename-input", { type: "text", value: item.label, "aria-label": item.supernode ? "Supernode name" : "Node label", id: "sg-rename-input" });
        let done = false;
        const finish = (save) => {
          if (done) return;
          done = true;
          if (save) rename(item, label.value.trim());
          else {
            renaming = null;
            update();
          }
        };
        label.addEventListener("keydown", (e) => {
          e.stopPropagation();
          if (e.key === "Enter") finish(true);
          if (e.key === "Escape") finish(false);
        });
        // Leaving the field saves the name; a click that left it is drawn after (see update).
        label.addEventListener("blur", () => {
          if (!rendering) finish(true);
        });
        requestAnimationFrame(() => {
          label.focus();
          label.select();
        });
      } else {
        label = el(`label${item.weak ? ".weak" : ""}`, { for: id }, item.label);
      }
      const go = item.supernode
        ? el("span.members.muted", item.members.map((m) => labelDisplay(graph, store.get())(m).text).join(", "))
        : el("button.link-button", { type: "button", onclick: () => select(store, item.key), title: "Show its connections" }, "show");
      ul.append(el(`li.${item.supernode ? "is-supernode" : "is-node"}`, { "data-key": item.key }, box, label, el("span.sub.muted", itemSub(item, graph)), go));
    }
    listBox.append(ul);
  }

  // The drawing, at its natural size (the stage scales it down to fit, or scrolls); a new render
  // supersedes one whose layout is still running.
  let renderSeq = 0;
  let natural = null; // {width, height} of the last drawing

  async function renderSvg(all) {
    const seq = ++renderSeq;
    if (!all.length) {
      clear(stage);
      svg = null;
      natural = null;
      stage.dataset.ready = "1";
      stage.append(
        el(
          "p.empty.sg-empty",
          "Pin nodes to build a subgraph: shift-click them in the graph, press P on the clicked node, or use Pin in the connections panel. ",
          "Then check two or more and Group them into a supernode.",
        ),
      );
      return;
    }
    stage.dataset.ready = "";
    const links = itemLinks(graph, all);
    let size;
    try {
      size = await layoutItems(all, links, graph);
    } catch (err) {
      if (seq !== renderSeq) return;
      clear(stage);
      stage.append(el("p.error", `Could not lay out the subgraph: ${err.message}`));
      return;
    }
    if (seq !== renderSeq) return;
    const { width, height } = size;
    natural = size;
    const maxW = Math.max(1e-9, ...links.map((l) => Math.abs(l.weight)));
    const next = svgEl("svg", { xmlns: "http://www.w3.org/2000/svg", width, height, viewBox: `0 0 ${width} ${height}`, class: "sg-svg", role: "img", "aria-label": "Pinned subgraph" });
    const checked = new Set(store.get().checked);
    const clicked = store.get().clickedId;
    const linkLayer = svgEl("g", { fill: "none", class: "sg-links" });
    const weightLayer = svgEl("g", { class: "sg-weights" });
    for (const l of links.sort((p, q) => Math.abs(p.weight) - Math.abs(q.weight))) {
      const a = all[l.from];
      const b = all[l.to];
      const up = b.y + b.h / 2 <= a.y + a.h / 2;
      const x0 = a.x + a.w / 2;
      const y0 = up ? a.y : a.y + a.h;
      const x1 = b.x + b.w / 2;
      const y1 = up ? b.y + b.h : b.y;
      const my = (y0 + y1) / 2;
      const d = `M${x0.toFixed(1)},${y0.toFixed(1)} C${x0.toFixed(1)},${my.toFixed(1)} ${x1.toFixed(1)},${my.toFixed(1)} ${x1.toFixed(1)},${y1.toFixed(1)}`;
      const strength = Math.abs(l.weight) / maxW;
      const g = svgEl("g", { class: "sg-link", "data-from": a.key, "data-to": b.key, "data-weight": l.weight.toPrecision(4) });
      const path = svgEl("path", {
        d,
        stroke: l.weight >= 0 ? POS : NEG,
        "stroke-width": (0.8 + 4.5 * strength).toFixed(2),
        "stroke-opacity": (0.35 + 0.55 * strength).toFixed(2),
      });
      const hit = svgEl("path", { d, stroke: "transparent", "stroke-width": 12, class: "sg-hit" });
      const t = svgEl("title");
      t.textContent = `${a.label} → ${b.label}: ${signed(l.weight)}`;
      g.append(path, hit, t);
      linkLayer.append(g);
      // The weight at the link's middle, shown while the pointer is on the link.
      const wl = svgEl("text", { class: "sg-wlabel", x: ((x0 + x1) / 2).toFixed(1), y: (my + 4).toFixed(1), "text-anchor": "middle", "font-size": 11, "font-family": FONT, fill: l.weight >= 0 ? POS : NEG });
      wl.textContent = signed(l.weight);
      weightLayer.append(wl);
      g.addEventListener("pointerenter", () => wl.classList.add("on"));
      g.addEventListener("pointerleave", () => wl.classList.remove("on"));
    }
    next.append(linkLayer);
    all.forEach((item) => {
      const g = svgEl("g", { transform: `translate(${item.x.toFixed(1)},${item.y.toFixed(1)})`, class: "sg-item", "data-key": item.key, tabindex: "-1" });
      const style = itemStyle(item, graph);
      const isChecked = checked.has(item.key);
      const isClicked = item.members.some((m) => m.id === clicked);
      g.append(
        svgEl("rect", {
          width: item.w,
          height: item.h,
          rx: item.supernode ? 9 : 4,
          fill: style.fill,
          stroke: isChecked ? "#b45309" : isClicked ? "#111827" : "#6b7280",
          "stroke-width": isChecked || isClicked ? 2.5 : item.supernode ? 1.8 : 1,
          class: "sg-box",
        }),
      );
      if (style.stripe) g.append(svgEl("rect", { x: 1, y: 1, width: STRIPE, height: item.h - 2, rx: 2, fill: style.stripe }));
      const label = svgEl("text", { x: item.left, y: 19, "font-size": 12, "font-family": FONT, "font-weight": item.weak ? 400 : 600, fill: item.weak ? "#4b5563" : style.text, class: item.weak ? "sg-label weak" : "sg-label" });
      item.lines.forEach((line, k) => {
        const span = svgEl("tspan", { x: item.left, dy: k ? LINE_H : 0 });
        span.textContent = line;
        label.append(span);
      });
      const sub = svgEl("text", { x: item.left, y: 19 + item.lines.length * LINE_H, "font-size": 11, "font-family": FONT, fill: style.sub, class: "sg-sub" });
      sub.textContent = item.sub;
      const title = svgEl("title");
      const show = labelDisplay(graph, store.get());
      title.textContent = item.supernode ? `${item.label}: ${item.members.map((m) => show(m).text).join(", ")}` : item.label;
      g.append(label, sub, title);
      g.addEventListener("click", (event) => {
        if (event.shiftKey || event.metaKey || event.ctrlKey || item.supernode) toggleCheck(item.key);
        else select(store, item.key);
      });
      next.append(g);
    });
    next.append(weightLayer);
    clear(stage);
    svg = next;
    stage.append(svg);
    fitStage();
    stage.dataset.ready = "1";
  }

  /** Scale the drawing to the stage (down to 55%; below that the stage scrolls). */
  function fitStage() {
    if (!svg || !natural) return;
    const sw = Math.max(100, stage.clientWidth - 4);
    const sh = Math.max(60, stage.clientHeight - 4);
    const k = Math.max(0.55, Math.min(1.6, sw / natural.width, sh / natural.height));
    svg.setAttribute("width", Math.floor(natural.width * k));
    svg.setAttribute("height", Math.floor(natural.height * k));
  }

  function render() {
    const all = items();
    renderActions(all);
    renderScores();
    renderList(all);
    return renderSvg(all);
  }

  /** The subgraph as a figure: a title (the prompt), the drawing, a legend; white background.
   * Every size is in the SVG's own units, so it opens standalone at full resolution. */
  function standaloneSvg() {
    if (!svg || !natural) return null;
    const pad = 24;
    const w = Math.max(800, natural.width + 2 * pad);
    const titleLines = wrapText(title, w - 2 * pad, `600 16px ${FONT}`);
    const head = 18 + titleLines.length * 21;
    const legendH = 44;
    const h = head + natural.height + legendH;
    const out = svgEl("svg", { xmlns: "http://www.w3.org/2000/svg", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
    out.append(svgEl("rect", { x: 0, y: 0, width: w, height: h, fill: "#ffffff" }));
    const caption = svgEl("text", { x: pad, y: 24, "font-size": 16, "font-weight": 600, "font-family": FONT, fill: "#111827", class: "sg-title" });
    titleLines.forEach((line, k) => {
      const span = svgEl("tspan", { x: pad, dy: k ? 21 : 0 });
      span.textContent = line;
      caption.append(span);
    });
    out.append(caption);
    const body = svg.cloneNode(true);
    for (const wl of body.querySelectorAll(".sg-wlabel, .sg-hit")) wl.remove();
    const drawing = svgEl("g", { transform: `translate(${((w - natural.width) / 2).toFixed(1)},${head})` });
    drawing.append(...body.childNodes);
    out.append(drawing);
    // Legend: what the colours and lines mean.
    const legend = svgEl("g", { transform: `translate(${pad},${head + natural.height + 14})`, "font-size": 12, "font-family": FONT, fill: "#111827", class: "sg-legend" });
    let x = 0;
    const entry = (mark, text) => {
      legend.append(mark(x));
      const t = svgEl("text", { x: x + 22, y: 12 });
      t.textContent = text;
      legend.append(t);
      x += 22 + textWidth(text, `12px ${FONT}`) + 18;
    };
    const box = (fill, stroke = "#6b7280") => (x0) => svgEl("rect", { x: x0, y: 1, width: 16, height: 14, rx: 3, fill, stroke });
    const line = (color) => (x0) => svgEl("path", { d: `M${x0},8 H${x0 + 16}`, stroke: color, "stroke-width": 3 });
    entry(box(activationFill(1, 1)), "feature (colour: activation)");
    entry(box("#fef3c7"), "supernode");
    entry(box(EMBED_FILL), "token");
    entry(box(LOGIT_FILL), "output");
    entry(box(ERROR_FILL), "error");
    entry(line(POS), "excites");
    entry(line(NEG), "inhibits");
    out.append(legend);
    return { text: new XMLSerializer().serializeToString(out), width: w, height: h };
  }

  function exportSvg() {
    const out = standaloneSvg();
    if (out) download("subgraph.svg", new Blob([out.text], { type: "image/svg+xml" }));
  }

  /** PNG at 2x or more: at least 2000 px wide. */
  function exportPng() {
    const out = standaloneSvg();
    if (!out) return;
    const img = new Image();
    const url = URL.createObjectURL(new Blob([out.text], { type: "image/svg+xml" }));
    img.onload = () => {
      const scale = Math.min(6, Math.max(2, 2000 / out.width));
      const canvas = el("canvas", { width: Math.round(out.width * scale), height: Math.round(out.height * scale) });
      const ctx = canvas.getContext("2d");
      ctx.scale(scale, scale);
      ctx.drawImage(img, 0, 0, out.width, out.height);
      URL.revokeObjectURL(url);
      canvas.toBlob((blob) => blob && download("subgraph.png", blob), "image/png");
    };
    img.src = url;
  }

  store.subscribe((state, changed) => {
    if (["pinnedIds", "supernodes", "checked", "clickedId"].some((k) => changed.has(k)) || labelsChanged(changed)) update();
  });
  new ResizeObserver(() => fitStage()).observe(stage);
  render();
  return { exportSvg, exportPng, standaloneSvg, render, ready: () => stage.dataset.ready === "1" };
}
