// The graph page: load the graph, build the shared view state from the URL, mount one module per
// panel, and wire the keyboard.
import "./styles/base.css";
import "./styles/graph.css";

import { el, isTyping, pageData } from "./lib/dom.js";
import { getJSON } from "./lib/api.js";
import { buildGraph } from "./lib/graphdata.js";
import { createStore, fromSearch, select, toggleHidden, togglePin, walkBack } from "./lib/state.js";
import { subgraphScores } from "./lib/scores.js";
import { createLinkGraph } from "./panels/linkgraph.js";
import { createConnections } from "./panels/connections.js";
import { createFeaturePanel } from "./panels/feature.js";
import { createCollab } from "./panels/collab.js";
import { createSubgraph } from "./panels/subgraph.js";
import { createInterventions } from "./panels/interventions.js";
import { createAttention } from "./panels/attention.js";
import { createBreadcrumb, createToolbar } from "./panels/toolbar.js";
import { createPanes } from "./lib/panes.js";
import { fetchMissingLabels } from "./lib/autolabels.js";

const timing = { start: performance.now() };

async function loadGraph(data) {
  const params = new URLSearchParams(location.search);
  const limit = +(params.get("maxLinks") || data.maxShippedLinks || 150000);
  const { graphId, summary } = data;
  const url = summary && summary.n_links > limit ? `/view/graphs/${graphId}.json?max_links=${Math.max(1, Math.floor(limit))}` : `/api/graphs/${graphId}`;
  const raw = await getJSON(url);
  timing.fetched = performance.now();
  const graph = buildGraph(raw);
  timing.parsed = performance.now();
  return graph;
}

function defaultClicked(graph) {
  const top = graph.logits.find((d) => d.isTarget) || graph.logits[0];
  return top ? top.id : null;
}

/** Drop ids the graph does not have (a URL from another graph, or a hand-edited one). */
function sanitize(state, graph) {
  const known = (id) => graph.byId.has(id);
  const trail = state.trail.filter(known);
  const clickedId = known(state.clickedId) ? state.clickedId : trail[trail.length - 1] || defaultClicked(graph);
  return {
    ...state,
    clickedId,
    trail: trail.length && trail[trail.length - 1] === clickedId ? trail : clickedId ? [clickedId] : [],
    pinnedIds: state.pinnedIds.filter(known),
    hiddenIds: state.hiddenIds.filter(known),
    supernodes: state.supernodes
      .map(([label, ...ids]) => [label, ...ids.filter(known)])
      .filter((g) => g.length >= 3),
    clerps: state.clerps.filter(([id]) => known(id)),
  };
}

async function main() {
  const data = pageData();
  const explorer = document.getElementById("explorer");
  const loading = document.getElementById("loading");
  let graph;
  try {
    graph = await loadGraph(data);
  } catch (err) {
    loading.textContent = `Could not load the graph: ${err.message}`;
    loading.classList.add("error");
    explorer.dataset.state = "error";
    return;
  }
  const initial = sanitize(fromSearch(location.search), graph);
  // Parameters the view state does not own (maxLinks) stay in the URL as they came.
  const kept = new URLSearchParams(location.search).get("maxLinks");
  const store = createStore(initial, {
    onUrl: (search) => {
      const extra = kept ? `${search ? "&" : "?"}maxLinks=${encodeURIComponent(kept)}` : "";
      history.replaceState(history.state, "", `${location.pathname}${search}${extra}`);
    },
  });
  const summary = data.summary || {};
  loading.remove();
  explorer.dataset.state = "ready";

  const panes = createPanes(explorer);
  const linkGraph = createLinkGraph(document.getElementById("linkgraph"), { graph, store, timing });
  const toolbar = createToolbar(document.getElementById("toolbar"), { graph, store, linkGraph, panes });
  createBreadcrumb(document.getElementById("breadcrumb"), { graph, store });
  let attention = null; // made once the interventions panel exists (it ablates heads there)
  const onEdge = (source, target) => attention && attention.explainEdge(source, target);
  const connections = createConnections(document.getElementById("connections"), { graph, store, graphId: data.graphId, onEdge });
  const collab = createCollab({
    graph,
    store,
    graphId: data.graphId,
    transcoders: summary.transcoders,
    toolbar: document.getElementById("toolbar"),
    viewId: new URLSearchParams(location.search).get("view"),
  });
  createFeaturePanel(document.getElementById("feature"), {
    graph,
    store,
    transcoders: summary.transcoders,
    hasDashboards: !!data.hasDashboards,
    collab,
  });
  // Features without a label (an imported graph, say) take their dashboard's, right away.
  if (data.hasDashboards) fetchMissingLabels({ graph, store, transcoders: summary.transcoders });
  else document.body.dataset.autolabels = "done";
  const subgraph = createSubgraph(document.getElementById("subgraph"), {
    graph,
    store,
    title: `${summary.prompt || graph.metadata.prompt || ""} (${summary.model || graph.metadata.scan || ""})`,
  });
  const ivRoot = document.getElementById("interventions");
  const interventions = createInterventions(ivRoot, { graph, store, graphId: data.graphId, panes });
  attention = createAttention(document.getElementById("connections"), { graph, store, graphId: data.graphId, interventions });
  panes.controls("linkgraph", { collapse: false, maxTitle: "Full window (Esc to leave)" });
  panes.controls("subgraph", { maxTitle: "Large subgraph view" });
  panes.controls("connections");
  panes.controls("feature", { maxTitle: "Large feature dashboard" });
  panes.controls("interventions", { collapse: false });
  // The subgraph takes a header's room until something is pinned; the interventions column none
  // until it is opened (or a link brings interventions).
  let hadPins = store.get().pinnedIds.length > 0;
  panes.setCollapsed("subgraph", !hadPins);
  store.subscribe((s, changed) => {
    if (!changed.has("pinnedIds")) return;
    const has = s.pinnedIds.length > 0;
    if (has && !hadPins && panes.isCollapsed("subgraph")) panes.setCollapsed("subgraph", false);
    hadPins = has;
  });
  if (store.get().interventions.length) panes.setInterventions(true);
  if (graph.thinned) {
    document.getElementById("toolbar").append(
      el("div.tool.note", { title: "The graph is too large to send whole; each clicked node's full edge list is fetched on demand." },
        `Showing the ${graph.links.n.toLocaleString()} strongest of ${graph.nLinksTotal.toLocaleString()} links`),
    );
  }
  store.flushUrl();

  document.addEventListener("keydown", (event) => {
    if (isTyping(event) || event.altKey || event.ctrlKey || event.metaKey) return;
    // Enter and space on a focused button or link belong to it.
    if (event.key === "Enter" && event.target instanceof Element && event.target.closest("button, a, summary")) return;
    const state = store.get();
    switch (event.key) {
      case "ArrowDown":
        connections.moveCursor(1);
        break;
      case "ArrowUp":
        connections.moveCursor(-1);
        break;
      case "ArrowRight":
      case "Enter":
        if (!connections.activateCursor()) return;
        break;
      case "ArrowLeft":
      case "Backspace":
        if (!walkBack(store)) return;
        break;
      case "Escape":
        toolbar.toggleHelp(false);
        toolbar.closePopups();
        if (state.checked.length) store.set({ checked: [] });
        else select(store, null);
        break;
      case "p":
      case "P":
        if (!state.clickedId) return;
        togglePin(store, state.clickedId);
        break;
      case "h":
      case "H":
        if (!state.clickedId) return;
        toggleHidden(store, state.clickedId);
        break;
      case "f":
      case "F":
        panes.maximize(panes.maximized() === "linkgraph" ? null : "linkgraph");
        break;
      case "/":
        toolbar.focusSearch();
        break;
      case "?":
        toolbar.toggleHelp();
        break;
      default:
        return;
    }
    event.preventDefault();
  });
  window.addEventListener("pagehide", () => store.flushUrl());

  timing.interactive = performance.now();
  // The second animation frame starts once the first frame with the graph has been painted.
  requestAnimationFrame(() => requestAnimationFrame(() => (timing.firstFrame = performance.now())));
  // For tests and benchmarks: the page's objects and when it became interactive.
  window.__attrgraph = { graph, store, linkGraph, subgraph, interventions, attention, timing, subgraphScores, collab, panes };
  explorer.dataset.interactive = "1";
}

main();
