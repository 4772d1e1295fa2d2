// The one shared view state of the graph page. Every panel reads it and changes it through
// `store.set`; the URL is a projection of it (written on every change, read once at load), so a
// copied URL reopens the same view: clicked node, walk, pinned nodes, supernodes, labels, thresholds.
//
// URL parameters use Neuronpedia's names where one exists (clickedId, pinnedIds, supernodes,
// pruningThreshold, densityThreshold, clerps), so their links carry over.

export const DEFAULTS = Object.freeze({
  clickedId: null, // the node whose edges are lit and whose panels are shown
  trail: [], // the walk: node ids, the last one is clickedId
  pinnedIds: [], // the subgraph
  supernodes: [], // [[label, nodeId, nodeId, ...], ...]; members are pinned too
  clerps: [], // [[nodeId, label], ...]: labels the user set
  pruningThreshold: 0.8, // show nodes whose cumulative influence is at most this
  densityThreshold: 0.0, // hide background links carrying less than this share of their target's input
  hideErrors: false,
  search: "",
  interventions: [], // [[layer, feature, position, mode, value], ...] (panels/interventions.js)
  linkType: "both", // the clicked node's links drawn: "inputs", "outputs" or "both" (Neuronpedia's name)
  hiddenIds: [], // nodes the user hid from the link graph
  ivOptions: "", // intervention switches: "f" freeze attention, "d" direct only, "g" apply to generated
});

// Transient state: not in the URL.
// labelEpoch counts labels learnt after load (feature dashboards): panels showing labels redraw.
const TRANSIENT = { hoveredId: null, cursor: -1, checked: [], labelEpoch: 0 };

const LIST_KEYS = ["trail", "pinnedIds", "hiddenIds"];
const JSON_KEYS = ["supernodes", "clerps"];
const NUMBER_KEYS = ["pruningThreshold", "densityThreshold"];

function clamp01(x, fallback) {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : fallback;
}

function parseJSONList(text) {
  try {
    const value = JSON.parse(text);
    return Array.isArray(value) ? value.filter((x) => Array.isArray(x) && x.length >= 2).map((x) => x.map(String)) : [];
  } catch {
    return [];
  }
}

const IV_MODES = ["set", "scale", "ablate", "add", "ablate_head"]; // ablate_head: [layer, head, 0, "ablate_head", 0]

/** Interventions from the URL: well-formed [layer, feature, position, mode, value] entries only. */
export function parseInterventions(text) {
  if (!text) return [];
  try {
    const value = JSON.parse(text);
    if (!Array.isArray(value)) return [];
    return value
      .filter((x) => Array.isArray(x) && x.length === 5 && x.slice(0, 3).every((n) => Number.isInteger(n) && n >= 0))
      .filter((x) => IV_MODES.includes(x[3]) && Number.isFinite(x[4]))
      .slice(0, 256);
  } catch {
    return [];
  }
}

/** View state from a query string (unknown or malformed parameters fall back to defaults). */
export function fromSearch(search) {
  const params = new URLSearchParams(search);
  const state = { ...DEFAULTS };
  for (const key of LIST_KEYS) {
    const raw = params.get(key);
    if (raw) state[key] = [...new Set(raw.split(",").map((s) => s.trim()).filter(Boolean))];
  }
  for (const key of JSON_KEYS) {
    const raw = params.get(key);
    if (raw) state[key] = parseJSONList(raw);
  }
  for (const key of NUMBER_KEYS) {
    const raw = params.get(key);
    if (raw !== null) state[key] = clamp01(parseFloat(raw), DEFAULTS[key]);
  }
  const clicked = params.get("clickedId");
  if (clicked) state.clickedId = clicked;
  if (state.clickedId && state.trail[state.trail.length - 1] !== state.clickedId) state.trail = [state.clickedId];
  state.hideErrors = params.get("hideErrors") === "1";
  const linkType = params.get("linkType");
  if (["inputs", "outputs", "both"].includes(linkType)) state.linkType = linkType;
  state.search = params.get("search") || "";
  state.interventions = parseInterventions(params.get("interventions"));
  state.ivOptions = (params.get("ivOptions") || "").replace(/[^fdg]/g, "");
  return state;
}

/** The query string for a view state (defaults left out, so URLs stay short). */
export function toSearch(state) {
  const params = new URLSearchParams();
  if (state.clickedId) params.set("clickedId", state.clickedId);
  if (state.trail.length > 1) params.set("trail", state.trail.join(","));
  if (state.pinnedIds.length) params.set("pinnedIds", state.pinnedIds.join(","));
  if (state.hiddenIds.length) params.set("hiddenIds", state.hiddenIds.join(","));
  if (state.linkType !== "both") params.set("linkType", state.linkType);
  if (state.supernodes.length) params.set("supernodes", JSON.stringify(state.supernodes));
  if (state.clerps.length) params.set("clerps", JSON.stringify(state.clerps));
  for (const key of NUMBER_KEYS) if (state[key] !== DEFAULTS[key]) params.set(key, String(state[key]));
  if (state.hideErrors) params.set("hideErrors", "1");
  if (state.search) params.set("search", state.search);
  if (state.interventions.length) params.set("interventions", JSON.stringify(state.interventions));
  if (state.ivOptions) params.set("ivOptions", state.ivOptions);
  const text = params.toString();
  return text ? `?${text}` : "";
}

/**
 * A tiny store: `get()` the state, `set(patch)` to change it, `subscribe(fn)` to hear about it.
 * Listeners get (state, changed) where changed is a Set of the keys whose value changed.
 */
export function createStore(initial, { onUrl } = {}) {
  let state = { ...DEFAULTS, ...TRANSIENT, ...initial };
  const listeners = [];
  let urlTimer = 0;
  const store = {
    get: () => state,
    subscribe(fn) {
      listeners.push(fn);
      return () => listeners.splice(listeners.indexOf(fn), 1);
    },
    set(patch) {
      const changed = new Set();
      for (const [key, value] of Object.entries(patch)) if (state[key] !== value) changed.add(key);
      if (!changed.size) return changed;
      state = { ...state, ...patch };
      for (const fn of listeners.slice()) fn(state, changed);
      if (onUrl && [...changed].some((k) => k in DEFAULTS)) {
        // Coalesce bursts (slider drags, key repeats) into one history entry update.
        clearTimeout(urlTimer);
        urlTimer = setTimeout(() => onUrl(toSearch(state)), 60);
      }
      return changed;
    },
    /** Write the URL now (tests and unload call this so nothing is lost). */
    flushUrl() {
      clearTimeout(urlTimer);
      if (onUrl) onUrl(toSearch(state));
    },
  };
  return store;
}

// -- state transitions shared by several panels ---------------------------------------------------

/** Click a node in the graph: a new walk starts there. */
export function select(store, nodeId) {
  store.set({ clickedId: nodeId, trail: nodeId ? [nodeId] : [], cursor: -1 });
}

/** Follow an edge from the clicked node: the walk grows by one step. */
export function walkTo(store, nodeId) {
  const { trail, clickedId } = store.get();
  if (nodeId === clickedId) return;
  const base = trail.length && trail[trail.length - 1] === clickedId ? trail : clickedId ? [clickedId] : [];
  store.set({ clickedId: nodeId, trail: [...base, nodeId], cursor: -1 });
}

/** Back one step of the walk (Backspace). */
export function walkBack(store) {
  const { trail } = store.get();
  if (trail.length < 2) return false;
  const next = trail.slice(0, -1);
  store.set({ clickedId: next[next.length - 1], trail: next, cursor: -1 });
  return true;
}

/** Jump to step k of the walk (breadcrumb). */
export function walkToStep(store, k) {
  const next = store.get().trail.slice(0, k + 1);
  store.set({ clickedId: next[next.length - 1] || null, trail: next, cursor: -1 });
}

export function togglePin(store, nodeId) {
  const { pinnedIds, supernodes } = store.get();
  if (pinnedIds.includes(nodeId)) {
    store.set({
      pinnedIds: pinnedIds.filter((id) => id !== nodeId),
      supernodes: removeMembers(supernodes, new Set([nodeId])),
      checked: store.get().checked.filter((id) => id !== nodeId),
    });
  } else {
    store.set({ pinnedIds: [...pinnedIds, nodeId] });
  }
}

/** Supernodes without the given members; a supernode left with fewer than two members dissolves. */
/** Hide a node from the link graph, or show it again. */
export function toggleHidden(store, nodeId) {
  const { hiddenIds } = store.get();
  store.set({ hiddenIds: hiddenIds.includes(nodeId) ? hiddenIds.filter((id) => id !== nodeId) : [...hiddenIds, nodeId] });
}

export function removeMembers(supernodes, members) {
  return supernodes
    .map(([label, ...ids]) => [label, ...ids.filter((id) => !members.has(id))])
    .filter((group) => group.length >= 3);
}

/** Whether a change touches any label shown (user labels, or labels learnt from dashboards). */
export function labelsChanged(changed) {
  return changed.has("clerps") || changed.has("labelEpoch");
}

export function labelOverrides(state) {
  return new Map(state.clerps);
}
