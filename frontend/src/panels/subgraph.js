// The subgraph panel: the pinned nodes in a layered layout, with links between them summed over
// supernode members. Check nodes to group them into a named supernode; rename, ungroup, unpin.
// Shows the subgraph's replacement and completeness scores, and exports it as SVG or PNG.

import { clear, download, el, svgEl } from "../lib/dom.js";
import { labelOf } from "../lib/graphdata.js";
import { pct, quoted, signed } from "../lib/format.js";
import { subgraphScores } from "../lib/scores.js";
import { NEG, POS, EMBED_FILL, ERROR_FILL, LOGIT_FILL, activationFill } from "../lib/colors.js";
import { labelOverrides, removeMembers, select, labelsChanged } from "../lib/state.js";

const BOX_H = 34;
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
    items.push({ key: id, supernode: false, label: labelOf(node, overrides), members: [node], layer: node.layer, ctx: node.ctx, node });
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

/**
 * Layered layout: one row per layer (top: outputs), one column per token position, in order, so
 * the subgraph reads like the link graph. Items sharing a cell sit side by side. Returns the size
 * the drawing needs (at least the stage's; the stage scrolls when it needs more).
 */
function layoutItems(items, width, height) {
  const key = (v) => Math.round(v * 2) / 2;
  const layers = [...new Set(items.map((d) => key(d.layer)))].sort((a, b) => b - a);
  const positions = [...new Set(items.map((d) => key(d.ctx)))].sort((a, b) => a - b);
  const rowOf = new Map(layers.map((l, k) => [l, k]));
  const colOf = new Map(positions.map((p, k) => [p, k]));
  const cells = new Map();
  for (const item of items) {
    const cell = `${rowOf.get(key(item.layer))}:${colOf.get(key(item.ctx))}`;
    if (!cells.has(cell)) cells.set(cell, []);
    cells.get(cell).push(item);
  }
  const perCol = positions.map(() => 1);
  for (const [cell, list] of cells) {
    const col = +cell.split(":")[1];
    perCol[col] = Math.max(perCol[col], list.length);
  }
  const pad = 12;
  const gap = 10;
  const minBox = 96;
  const slots = perCol.reduce((a, b) => a + b, 0);
  const w = Math.max(width, pad * 2 + slots * (minBox + gap));
  const boxW = Math.min(170, (w - 2 * pad) / slots - gap);
  const pitch = BOX_H + 22;
  const h = Math.max(height, pad * 2 + layers.length * pitch - 22);
  const rowGap = layers.length > 1 ? (h - 2 * pad - BOX_H) / (layers.length - 1) : 0;
  const colX = [];
  let x = pad;
  for (let c = 0; c < positions.length; c++) {
    const span = ((w - 2 * pad) * perCol[c]) / slots;
    colX.push({ x0: x, span });
    x += span;
  }
  for (const [cell, list] of cells) {
    const [row, col] = cell.split(":").map(Number);
    list.sort((a, b) => a.ctx - b.ctx || a.layer - b.layer);
    const { x0, span } = colX[col];
    const used = list.length * boxW + (list.length - 1) * gap;
    list.forEach((item, k) => {
      item.x = x0 + (span - used) / 2 + k * (boxW + gap);
      item.y = layers.length === 1 ? h / 2 - BOX_H / 2 : pad + row * rowGap;
      item.w = boxW;
    });
  }
  return { width: Math.ceil(w), height: Math.ceil(h) };
}

function fitText(text, width, px = 6.3) {
  const chars = Math.floor(width / px);
  return text.length > chars ? text.slice(0, Math.max(1, chars - 1)) + "…" : text;
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
    if (!label) return render();
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
    clear(listBox);
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
            render();
          }
        };
        label.addEventListener("keydown", (e) => {
          e.stopPropagation();
          if (e.key === "Enter") finish(true);
          if (e.key === "Escape") finish(false);
        });
        label.addEventListener("blur", () => finish(true));
        requestAnimationFrame(() => {
          label.focus();
          label.select();
        });
      } else {
        label = el("label", { for: id }, item.label);
      }
      const go = item.supernode
        ? el("span.members.muted", item.members.map((m) => labelOf(m, labelOverrides(store.get()))).join(", "))
        : el("button.link-button", { type: "button", onclick: () => select(store, item.key), title: "Show its connections" }, "show");
      ul.append(el(`li.${item.supernode ? "is-supernode" : "is-node"}`, { "data-key": item.key }, box, label, el("span.sub.muted", itemSub(item, graph)), go));
    }
    listBox.append(ul);
  }

  function renderSvg(all) {
    clear(stage);
    svg = null;
    if (!all.length) {
      stage.append(
        el(
          "p.empty.sg-empty",
          "Pin nodes to build a subgraph: shift-click them in the graph, press P on the clicked node, or use Pin in the connections panel. ",
          "Then check two or more and Group them into a supernode.",
        ),
      );
      return;
    }
    const { width, height } = layoutItems(all, Math.max(240, stage.clientWidth - 2 || 400), Math.max(120, stage.clientHeight - 2 || 240));
    const links = itemLinks(graph, all);
    const maxW = Math.max(1e-9, ...links.map((l) => Math.abs(l.weight)));
    svg = svgEl("svg", { xmlns: "http://www.w3.org/2000/svg", width, height, viewBox: `0 0 ${width} ${height}`, class: "sg-svg", role: "img", "aria-label": "Pinned subgraph" });
    const checked = new Set(store.get().checked);
    const clicked = store.get().clickedId;
    const linkLayer = svgEl("g", { fill: "none" });
    for (const l of links.sort((a, b) => Math.abs(a.weight) - Math.abs(b.weight))) {
      const a = all[l.from];
      const b = all[l.to];
      const up = b.layer >= a.layer;
      const x0 = a.x + a.w / 2;
      const y0 = up ? a.y : a.y + BOX_H;
      const x1 = b.x + b.w / 2;
      const y1 = up ? b.y + BOX_H : b.y;
      const my = (y0 + y1) / 2;
      const path = svgEl("path", {
        d: `M${x0.toFixed(1)},${y0.toFixed(1)} C${x0.toFixed(1)},${my.toFixed(1)} ${x1.toFixed(1)},${my.toFixed(1)} ${x1.toFixed(1)},${y1.toFixed(1)}`,
        stroke: l.weight >= 0 ? POS : NEG,
        "stroke-width": (0.8 + 4.5 * (Math.abs(l.weight) / maxW)).toFixed(2),
        "stroke-opacity": (0.35 + 0.55 * (Math.abs(l.weight) / maxW)).toFixed(2),
      });
      const t = svgEl("title");
      t.textContent = `${a.label} → ${b.label}: ${signed(l.weight)}`;
      path.append(t);
      linkLayer.append(path);
    }
    svg.append(linkLayer);
    all.forEach((item) => {
      const g = svgEl("g", { transform: `translate(${item.x.toFixed(1)},${item.y.toFixed(1)})`, class: "sg-item", "data-key": item.key, tabindex: "-1" });
      const style = itemStyle(item, graph);
      const isChecked = checked.has(item.key);
      const isClicked = item.members.some((m) => m.id === clicked);
      g.append(
        svgEl("rect", {
          width: item.w,
          height: BOX_H,
          rx: item.supernode ? 9 : 4,
          fill: style.fill,
          stroke: isChecked ? "#b45309" : isClicked ? "#111827" : "#6b7280",
          "stroke-width": isChecked || isClicked ? 2.5 : item.supernode ? 1.8 : 1,
        }),
      );
      if (style.stripe) g.append(svgEl("rect", { x: 1, y: 1, width: STRIPE, height: BOX_H - 2, rx: 2, fill: style.stripe }));
      const left = style.stripe ? STRIPE + 5 : 6;
      const label = svgEl("text", { x: left, y: 14, "font-size": 11.5, "font-family": FONT, "font-weight": 600, fill: style.text });
      label.textContent = fitText(item.label, item.w - left - 4, 6.6);
      const sub = svgEl("text", { x: left, y: 28, "font-size": 10, "font-family": FONT, fill: style.sub });
      sub.textContent = fitText(itemSub(item, graph), item.w - left - 4, 5.8);
      const title = svgEl("title");
      title.textContent = item.supernode ? `${item.label}: ${item.members.map((m) => m.label).join(", ")}` : item.label;
      g.append(label, sub, title);
      g.addEventListener("click", (event) => {
        if (event.shiftKey || event.metaKey || event.ctrlKey || item.supernode) toggleCheck(item.key);
        else select(store, item.key);
      });
      svg.append(g);
    });
    stage.append(svg);
  }

  function render() {
    const all = items();
    renderActions(all);
    renderScores();
    renderList(all);
    renderSvg(all);
  }

  function standaloneSvg() {
    if (!svg) return null;
    const copy = svg.cloneNode(true);
    const w = +svg.getAttribute("width");
    const h = +svg.getAttribute("height") + 28;
    copy.setAttribute("height", h);
    copy.setAttribute("viewBox", `0 -28 ${w} ${h}`);
    copy.removeAttribute("class");
    const bg = svgEl("rect", { x: 0, y: -28, width: w, height: h, fill: "#ffffff" });
    const caption = svgEl("text", { x: 8, y: -10, "font-size": 12, "font-family": FONT, fill: "#111827" });
    caption.textContent = title;
    copy.insertBefore(caption, copy.firstChild);
    copy.insertBefore(bg, copy.firstChild);
    return { text: new XMLSerializer().serializeToString(copy), width: w, height: h };
  }

  function exportSvg() {
    const out = standaloneSvg();
    if (out) download("subgraph.svg", new Blob([out.text], { type: "image/svg+xml" }));
  }

  function exportPng() {
    const out = standaloneSvg();
    if (!out) return;
    const img = new Image();
    const url = URL.createObjectURL(new Blob([out.text], { type: "image/svg+xml" }));
    img.onload = () => {
      const scale = 2;
      const canvas = el("canvas", { width: out.width * scale, height: out.height * scale });
      const ctx = canvas.getContext("2d");
      ctx.scale(scale, scale);
      ctx.drawImage(img, 0, 0);
      URL.revokeObjectURL(url);
      canvas.toBlob((blob) => blob && download("subgraph.png", blob), "image/png");
    };
    img.src = url;
  }

  store.subscribe((state, changed) => {
    if (["pinnedIds", "supernodes", "checked", "clickedId"].some((k) => changed.has(k)) || labelsChanged(changed)) render();
  });
  new ResizeObserver(() => renderSvg(items())).observe(stage);
  render();
  return { exportSvg, exportPng, standaloneSvg };
}
