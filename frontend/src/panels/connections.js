// The connections panel: the clicked node's inputs and outputs, sorted by signed weight. Clicking
// an entry walks to that node; the keyboard cursor (arrow keys) moves through the entries.
// For graphs sent thinned, the full edge list of the clicked node comes from the API.

import { clear, el } from "../lib/dom.js";
import { getJSON } from "../lib/api.js";
import { edgesOf, labelDisplay, placeOf, visibleMask } from "../lib/graphdata.js";
import { num, pct, quoted, signed } from "../lib/format.js";
import { togglePin, walkTo, labelsChanged } from "../lib/state.js";

const SHOWN = 40;

export function createConnections(root, { graph, store, graphId, onEdge }) {
  clear(root);
  const head = el("div.panel-head");
  const body = el("div.conn-body");
  root.append(head, body);
  const expanded = { inputs: false, outputs: false };
  const fetched = new Map(); // node id -> {incoming, outgoing} from the API (thinned graphs)
  let rows = []; // rendered rows, in cursor order: {id, button}
  let current = null;

  function localEdges(node) {
    const { src, tgt, weight } = graph.links;
    const inputs = Array.from(edgesOf(graph.incoming, node.i), (e) => ({ id: graph.nodes[src[e]].id, weight: weight[e] }));
    const outputs = Array.from(edgesOf(graph.outgoing, node.i), (e) => ({ id: graph.nodes[tgt[e]].id, weight: weight[e] }));
    return { inputs, outputs };
  }

  function edgesFor(node) {
    if (!graph.thinned) return localEdges(node);
    const detail = fetched.get(node.id);
    if (detail) {
      const known = (e) => graph.byId.has(e);
      return {
        inputs: detail.incoming.filter((e) => known(e.source)).map((e) => ({ id: e.source, weight: e.weight })),
        outputs: detail.outgoing.filter((e) => known(e.target)).map((e) => ({ id: e.target, weight: e.weight })),
      };
    }
    getJSON(`/api/graphs/${graphId}/nodes/${encodeURIComponent(node.id)}`)
      .then((d) => {
        fetched.set(node.id, d);
        if (store.get().clickedId === node.id) render();
      })
      .catch(() => {});
    return { ...localEdges(node), partial: true };
  }

  // Share of the target's input: for inputs the clicked node's input, for outputs each target's.
  function inputTotal(nodeId) {
    const node = graph.byId.get(nodeId);
    let total = 0;
    for (const e of edgesOf(graph.incoming, node.i)) total += Math.abs(graph.links.weight[e]);
    return total || 1;
  }

  function row(entry, share, visible, show) {
    const node = graph.byId.get(entry.id);
    const shown = show(node);
    const label = shown.base; // the place beside it says the layer
    const button = el(
      "button.conn-row",
      {
        type: "button",
        "data-id": node.id,
        title: visible ? `Walk to ${label}` : `Walk to ${label} (hidden by the pruning threshold)`,
        onclick: () => walkTo(store, node.id),
      },
      el(`span.swatch.sw-${node.kind}`),
      el(`span.conn-label${shown.weak ? ".weak" : ""}`, shown.weak ? { title: "automatic label: the tokens it fires on most" } : {}, label),
      el("span.conn-place", `${placeOf(node)} ${quoted(graph.tokens[node.ctx] ?? "")}`),
      el(`span.conn-weight.${entry.weight >= 0 ? "pos" : "neg"}`, signed(entry.weight)),
      el(
        "span.conn-bar",
        { "aria-hidden": "true" },
        el(`span.${entry.weight >= 0 ? "pos" : "neg"}`, { style: { width: `${Math.min(100, Math.abs(share) * 100).toFixed(1)}%` } }),
      ),
    );
    if (!visible) button.classList.add("pruned");
    return el("li", button);
  }

  function list(kind, entries, shareOf, mask, show) {
    const sorted = entries.slice().sort((a, b) => b.weight - a.weight);
    const showAll = expanded[kind] || sorted.length <= SHOWN;
    // Strongest by |weight| are always in the shortlist, in signed order.
    let shown = sorted;
    if (!showAll) {
      const keep = new Set(sorted.slice().sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)).slice(0, SHOWN));
      shown = sorted.filter((e) => keep.has(e));
    }
    const ol = el(`ol.conn-list.conn-${kind}`);
    for (const entry of shown) {
      const item = row(entry, shareOf(entry), mask[graph.byId.get(entry.id).i], show);
      const clicked = graph.byId.get(store.get().clickedId);
      // An input from another position came by attention: ask which heads carried it.
      if (onEdge && kind === "inputs" && clicked && graph.byId.get(entry.id).ctx !== clicked.ctx) {
        item.append(el("button.conn-heads", { type: "button", title: "Which attention heads carried this edge", onclick: () => onEdge(entry.id, clicked.id) }, "heads"));
      }
      rows.push({ id: entry.id, button: item.firstChild });
      ol.append(item);
    }
    const title = kind === "inputs" ? "Inputs" : "Outputs";
    return el(
      `section.conn-section.${kind}`,
      el("h3", `${title} `, el("span.count", `(${entries.length})`)),
      shown.length ? ol : el("p.empty", kind === "inputs" ? "No inputs (a source node)." : "No outputs in this graph."),
      showAll
        ? null
        : el("button.link-button", { type: "button", onclick: () => ((expanded[kind] = true), render()) }, `Show all ${entries.length}`),
    );
  }

  function render() {
    const state = store.get();
    const node = graph.byId.get(state.clickedId);
    clear(head);
    clear(body);
    rows = [];
    if (current !== state.clickedId) {
      expanded.inputs = expanded.outputs = false;
      current = state.clickedId;
    }
    if (!node) {
      head.append(el("h2.panel-title", "Connections"));
      body.append(el("p.empty", "Click a node, or an output token at the top of the graph, to see what drives it."));
      return;
    }
    const show = labelDisplay(graph, state);
    const shownLabel = show(node);
    const pinned = state.pinnedIds.includes(node.id);
    head.append(
      el("h2.panel-title", "Connections"),
      el(
        "div.node-head",
        el(`span.swatch.sw-${node.kind}`),
        el(`span.node-label${shownLabel.weak ? ".weak" : ""}`, { id: "clicked-label" }, shownLabel.base),
        el("span.node-place", `${placeOf(node)} ${quoted(graph.tokens[node.ctx] ?? "")}`),
        node.kind === "logit" ? el("span.node-stat", `p = ${pct(node.prob, 1)}`) : null,
        node.kind === "feature" ? el("span.node-stat", `act ${num(node.activation)}`) : null,
        el(
          "button.pin-button",
          { type: "button", "aria-pressed": pinned ? "true" : "false", onclick: () => togglePin(store, node.id), title: "Pin to the subgraph (P)" },
          pinned ? "Unpin" : "Pin",
        ),
      ),
    );
    const { inputs, outputs, partial } = edgesFor(node);
    const mask = visibleMask(graph, state);
    const ownTotal = inputTotal(node.id);
    body.append(
      list("inputs", inputs, (e) => e.weight / ownTotal, mask, show),
      list("outputs", outputs, (e) => e.weight / inputTotal(e.id), mask, show),
    );
    if (partial) body.append(el("p.note", "Loading the full edge list…"));
    applyCursor(false);
  }

  function applyCursor(scroll = true) {
    const { cursor } = store.get();
    rows.forEach((r, k) => r.button.classList.toggle("cursor", k === cursor));
    const active = rows[cursor];
    if (active && scroll) active.button.scrollIntoView({ block: "nearest" });
  }

  store.subscribe((state, changed) => {
    if (changed.has("clickedId") || changed.has("pinnedIds") || labelsChanged(changed) || changed.has("pruningThreshold") || changed.has("hideErrors")) {
      render();
    } else if (changed.has("cursor")) {
      applyCursor();
    }
  });
  render();

  return {
    moveCursor(delta) {
      if (!rows.length) return;
      const { cursor } = store.get();
      const next = cursor < 0 ? (delta > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, cursor + delta));
      store.set({ cursor: next });
    },
    activateCursor() {
      const active = rows[store.get().cursor];
      if (active) walkTo(store, active.id);
      return !!active;
    },
  };
}
