// The toolbar (pruning and link-density sliders, error nodes on/off, node search, zoom reset,
// keyboard help) and the breadcrumb of the walk.

import { clear, el, perFrame } from "../lib/dom.js";
import { labelOf, placeOf, searchNodes } from "../lib/graphdata.js";
import { plural, quoted } from "../lib/format.js";
import { labelOverrides, select, walkToStep, labelsChanged } from "../lib/state.js";

export const KEYS = [
  ["↑ ↓", "move through the connections list"],
  ["→ or Enter", "walk to the highlighted connection"],
  ["← or Backspace", "go back one step of the walk"],
  ["P", "pin or unpin the clicked node"],
  ["/", "search nodes"],
  ["H", "hide or show the clicked node"],
  ["F", "graph full-window (Esc to leave)"],
  ["Esc", "clear the selection"],
  ["shift-click", "pin a node in the graph"],
  ["wheel / drag", "zoom and pan the graph"],
];

export function createToolbar(root, { graph, store, linkGraph, panes }) {
  clear(root);
  const state = store.get();
  const pruneValue = el("output.slider-value", { for: "prune-slider" });
  const prune = el("input#prune-slider", { type: "range", min: "0.05", max: "1", step: "0.01", value: String(state.pruningThreshold), "aria-describedby": "prune-count" });
  const count = el("span.count.muted#prune-count");
  const densityValue = el("output.slider-value", { for: "density-slider" });
  const density = el("input#density-slider", { type: "range", min: "0", max: "0.3", step: "0.005", value: String(state.densityThreshold) });
  const errors = el("input#errors-toggle", { type: "checkbox", checked: !state.hideErrors });
  const search = el("input#search", { type: "search", placeholder: "Search label or token  ( / )", value: state.search, "aria-label": "Search nodes by label or token" });
  const searchInfo = el("span.muted.search-info", { "aria-live": "polite" });
  const help = el("div.help-pop", { hidden: true, role: "dialog", "aria-label": "Keyboard shortcuts" },
    el("h3", "Keyboard"),
    el("dl", KEYS.flatMap(([k, v]) => [el("dt", el("kbd", k)), el("dd", v)])),
  );
  const helpButton = el("button.icon-button", { type: "button", "aria-expanded": "false", title: "Keyboard shortcuts (?)" }, "?");
  helpButton.addEventListener("click", () => toggleHelp());

  const linkType = el("div.segmented#link-type", { role: "radiogroup", "aria-label": "Links of the clicked node" },
    [["inputs", "in"], ["outputs", "out"], ["both", "both"]].map(([type, text]) =>
      el("button", { type: "button", role: "radio", "data-type": type, "aria-checked": String(state.linkType === type), title: `Links: the clicked node's ${type === "both" ? "inputs and outputs" : type}`, onclick: () => store.set({ linkType: type }) }, text)));
  const hidden = el("button.link-button#show-hidden", { type: "button", hidden: true, title: "Show the nodes you hid (H hides the clicked node)", onclick: () => store.set({ hiddenIds: [] }) });
  const ivToggle = el("button#iv-toggle", { type: "button", "aria-pressed": "false", title: "Clamp, ablate or swap features and watch the prediction change", onclick: () => panes.setInterventions(!panes.interventionsOpen()) }, "Interventions");
  const fullButton = el("button#graph-full", { type: "button", title: "The graph full-window (F; Esc to leave)", onclick: () => panes.maximize(panes.maximized() === "linkgraph" ? null : "linkgraph") }, "⤢ Full");
  root.append(
    el("div.tool", el("label", { for: "prune-slider" }, "Pruning"), prune, pruneValue, count),
    el("div.tool", el("label", { for: "density-slider", title: "Hide faint links: those carrying less than this share of their target's input" }, "Links ≥"), density, densityValue),
    el("div.tool", errors, el("label", { for: "errors-toggle", title: "Show error nodes (what the transcoders miss)" }, "Errors")),
    el("div.tool.tool-search", search, searchInfo),
    el("div.tool", el("span.tool-label", { "aria-hidden": "true" }, "Links"), linkType, hidden),
    el("div.tool", el("button", { type: "button", onclick: () => linkGraph.resetZoom(), title: "Reset pan and zoom" }, "Fit"), fullButton),
    el("div.tool", ivToggle),
    el("div.tool.help", helpButton, help),
    el("span.spacer"),
  );

  const setPrune = perFrame((v) => store.set({ pruningThreshold: v }));
  prune.addEventListener("input", () => setPrune(+prune.value));
  const setDensity = perFrame((v) => store.set({ densityThreshold: v }));
  density.addEventListener("input", () => setDensity(+density.value));
  errors.addEventListener("change", () => store.set({ hideErrors: !errors.checked }));
  let matchIndex = -1;
  search.addEventListener("input", () => {
    matchIndex = -1;
    store.set({ search: search.value });
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      const s = store.get();
      const matches = searchNodes(graph, s.search, labelOverrides(s));
      if (!matches.length) return;
      matchIndex = (matchIndex + 1) % matches.length;
      select(store, matches[matchIndex].id);
    } else if (event.key === "Escape") {
      search.value = "";
      store.set({ search: "" });
      search.blur();
    }
  });

  function toggleHelp(force) {
    const open = force ?? help.hidden;
    help.hidden = !open;
    helpButton.setAttribute("aria-expanded", String(open));
  }

  function update() {
    const s = store.get();
    pruneValue.textContent = s.pruningThreshold.toFixed(2);
    if (+prune.value !== s.pruningThreshold) prune.value = String(s.pruningThreshold);
    densityValue.textContent = `${(s.densityThreshold * 100).toFixed(1)}%`;
    errors.checked = !s.hideErrors;
    for (const b of linkType.children) b.setAttribute("aria-checked", String(b.dataset.type === s.linkType));
    hidden.hidden = !s.hiddenIds.length;
    hidden.textContent = `${plural(s.hiddenIds.length, "hidden node")}: show`;
    count.textContent = `${plural(linkGraph.visibleCount(), "node")} of ${graph.nodes.length.toLocaleString()}`;
    const matches = s.search ? searchNodes(graph, s.search, labelOverrides(s)).length : 0;
    searchInfo.textContent = s.search ? `${plural(matches, "match", "matches")}${matches ? " · Enter: next" : ""}` : "";
  }
  store.subscribe((s, changed) => {
    if (["pruningThreshold", "densityThreshold", "hideErrors", "search", "pinnedIds", "trail", "linkType", "hiddenIds"].some((k) => changed.has(k)) || labelsChanged(changed)) update();
  });
  update();
  function closePopups() {
    for (const pop of document.querySelectorAll(".toolbar .popup")) pop.hidden = true;
  }
  return { focusSearch: () => search.focus(), toggleHelp, closePopups };
}

export function createBreadcrumb(root, { graph, store }) {
  function render() {
    const s = store.get();
    const overrides = labelOverrides(s);
    clear(root);
    if (!s.trail.length) {
      root.append(el("span.muted", "Walk: click a node, then follow its inputs in the connections panel."));
      return;
    }
    const ol = el("ol.crumbs");
    s.trail.forEach((id, k) => {
      const node = graph.byId.get(id);
      if (!node) return;
      const last = k === s.trail.length - 1;
      const text = `${labelOf(node, overrides)}`;
      ol.append(
        el(
          "li",
          last
            ? el("span.crumb.current", { "aria-current": "step", title: `${placeOf(node)} ${quoted(graph.tokens[node.ctx] ?? "")}` }, text)
            : el("button.crumb", { type: "button", onclick: () => walkToStep(store, k), title: `Back to ${text}` }, text),
        ),
      );
    });
    root.append(el("span.muted.crumb-title", "Walk"), ol);
  }
  store.subscribe((s, changed) => {
    if (changed.has("trail") || labelsChanged(changed)) render();
  });
  render();
}
