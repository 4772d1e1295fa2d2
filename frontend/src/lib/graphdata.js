// The graph JSON (Neuronpedia / circuit-tracer format, see docs/graph-format.md) turned into what
// the panels need: nodes with parsed ids, links as typed arrays with compressed-sparse-row adjacency
// (incoming and outgoing, each strongest first), the share of its target's input each link carries,
// and which nodes are visible under the current thresholds. Ids and feature keys are read by
// lib/graphformat.js, the twin of the server's attrgraph.format.

import { errorAddress, featureKey, nodeType } from "./graphformat.js";

const KIND_ORDER = { embedding: 0, feature: 1, error: 2, logit: 3 };

function layerOf(raw, kind) {
  const address = kind === "error" ? errorAddress(raw) : null;
  return address ? address[0] : Number(raw.layer) || 0;
}

function logitToken(raw) {
  const m = /^Output "(.*)" \(p=/.exec(raw.clerp || "");
  return m ? m[1] : raw.clerp || String(raw.feature);
}

function bySortedAbs(weights, list, start, end) {
  const slice = Array.from(list.subarray(start, end));
  slice.sort((a, b) => Math.abs(weights[b]) - Math.abs(weights[a]));
  list.set(slice, start);
}

function csr(n, keys, weights) {
  const start = new Int32Array(n + 1);
  for (let e = 0; e < keys.length; e++) start[keys[e] + 1]++;
  for (let i = 0; i < n; i++) start[i + 1] += start[i];
  const fill = start.slice(0, n);
  const list = new Int32Array(keys.length);
  for (let e = 0; e < keys.length; e++) list[fill[keys[e]]++] = e;
  for (let i = 0; i < n; i++) if (start[i + 1] - start[i] > 1) bySortedAbs(weights, list, start[i], start[i + 1]);
  return { start, list };
}

export function buildGraph(raw) {
  const metadata = raw.metadata || {};
  const extras = metadata.attrgraph || {};
  const tokens = (metadata.prompt_tokens || []).map(String);
  const rawNodes = raw.nodes || [];
  const logitLayer = Math.max(
    -1,
    ...rawNodes.filter((n) => nodeType(n.feature_type) === "logit").map((n) => Number(n.layer)).filter(Number.isFinite),
  );
  let nLayers = Number.isInteger(extras.n_layers) ? extras.n_layers : logitLayer > 0 ? logitLayer - 1 : 0;
  for (const n of rawNodes) {
    const k = nodeType(n.feature_type);
    if ((k === "feature" || k === "error") && Number(n.layer) + 1 > nLayers) nLayers = Number(n.layer) + 1;
  }
  let maxActivation = 0;
  const nodes = rawNodes.map((r, i) => {
    const kind = nodeType(r.feature_type);
    const ctx = Number(r.ctx_idx) || 0;
    const node = {
      i,
      id: String(r.node_id),
      kind,
      ctx,
      layer: kind === "embedding" ? -1 : kind === "logit" ? nLayers : layerOf(r, kind),
      label: r.clerp || "",
      influence: typeof r.influence === "number" ? r.influence : null,
      activation: typeof r.activation === "number" ? r.activation : null,
      prob: typeof r.token_prob === "number" ? r.token_prob : null,
      isTarget: !!r.is_target_logit,
      token: tokens[ctx] ?? "",
      featureLayer: null,
      featureIndex: null,
      raw: r,
    };
    if (kind === "feature") {
      // A feature node that does not say which feature it is gets index -1 and no shared label.
      const key = featureKey(r);
      [node.featureLayer, node.featureIndex] = key || [Number(r.layer) || 0, -1];
      if (!node.label) node.label = `L${node.featureLayer} #${node.featureIndex}`;
      if (node.activation !== null) maxActivation = Math.max(maxActivation, Math.abs(node.activation));
    } else if (kind === "logit") {
      node.token = logitToken(r);
      if (node.prob === null) {
        const m = /\(p=([\d.eE+-]+)\)/.exec(r.clerp || "");
        node.prob = m ? parseFloat(m[1]) : 0;
      }
      node.label = `Output “${node.token}”`;
    } else if (kind === "embedding") {
      node.label = `Emb: “${node.token}”`;
    } else if (kind === "error") {
      node.label = `Error L${node.layer} @ “${node.token}”`;
    }
    return node;
  });
  const byId = new Map(nodes.map((n) => [n.id, n]));

  const rawLinks = raw.links || [];
  const src = new Int32Array(rawLinks.length);
  const tgt = new Int32Array(rawLinks.length);
  const weight = new Float32Array(rawLinks.length);
  let m = 0;
  for (const link of rawLinks) {
    const s = byId.get(String(link.source));
    const t = byId.get(String(link.target));
    if (!s || !t) continue;
    src[m] = s.i;
    tgt[m] = t.i;
    weight[m] = +link.weight || 0;
    m++;
  }
  const links = { src: src.subarray(0, m), tgt: tgt.subarray(0, m), weight: weight.subarray(0, m), n: m };
  const n = nodes.length;

  // Share of its target's input each link carries (the viewers' "pctInput"), from the stored links.
  const inputAbs = new Float64Array(n);
  for (let e = 0; e < m; e++) inputAbs[links.tgt[e]] += Math.abs(links.weight[e]);
  const share = new Float32Array(m);
  for (let e = 0; e < m; e++) share[e] = links.weight[e] / (inputAbs[links.tgt[e]] || 1);
  links.share = share;

  const incoming = csr(n, links.tgt, links.weight);
  const outgoing = csr(n, links.src, links.weight);

  // Features of the same (layer, index) at other positions.
  const byFeature = new Map();
  for (const node of nodes) {
    if (node.kind !== "feature" || node.featureIndex < 0) continue;
    const key = `${node.featureLayer}_${node.featureIndex}`;
    if (!byFeature.has(key)) byFeature.set(key, []);
    byFeature.get(key).push(node);
  }

  const view = metadata.attrgraph_view || {};
  return {
    metadata,
    extras,
    tokens,
    nodes,
    byId,
    links,
    incoming,
    outgoing,
    nLayers,
    nPos: nodes.reduce((acc, d) => Math.max(acc, d.ctx + 1), tokens.length),
    maxActivation: maxActivation || 1,
    byFeature,
    logits: nodes.filter((d) => d.kind === "logit").sort((a, b) => b.prob - a.prob),
    thinned: !!view.thinned,
    nLinksTotal: view.n_links_total ?? m,
  };
}

/** Edge indices into (incoming) or out of (outgoing) node i, strongest first. */
export function edgesOf(adjacency, i) {
  return adjacency.list.subarray(adjacency.start[i], adjacency.start[i + 1]);
}

/**
 * Which nodes the link graph shows: embeddings and logits always; features and errors whose
 * cumulative influence is within the pruning threshold; error nodes unless hidden; and always the
 * clicked, walked and pinned nodes, so a walk never leads off the page.
 */
export function visibleMask(graph, state) {
  const mask = new Uint8Array(graph.nodes.length);
  const t = state.pruningThreshold;
  for (const node of graph.nodes) {
    let show;
    if (node.kind === "embedding" || node.kind === "logit") show = true;
    else if (node.kind === "error" && state.hideErrors) show = false;
    else show = node.influence === null || node.influence <= t + 1e-9;
    mask[node.i] = show ? 1 : 0;
  }
  for (const id of [state.clickedId, ...state.trail, ...state.pinnedIds]) {
    const node = id && graph.byId.get(id);
    if (node) mask[node.i] = 1;
  }
  return mask;
}

export function compareNodes(a, b) {
  return (
    KIND_ORDER[a.kind] - KIND_ORDER[b.kind] ||
    (a.kind === "logit" ? b.prob - a.prob : (a.influence ?? 0) - (b.influence ?? 0)) ||
    a.i - b.i
  );
}

/** The label shown for a node: the user's label if any. */
export function labelOf(node, overrides) {
  return (overrides && overrides.get(node.id)) || node.label;
}

// Automatic labels that only list the tokens a feature fires on ("Dallas, Houston, Waco", or one
// quoted token "'is'") are weak: shown apart from labels that say what the feature does.
const PLACEHOLDER = /^L\d+ #-?\d+$/;
const TOKEN_LIST = /^[^\s,()]+(, [^\s,()]+)+$/;
const QUOTED_TOKEN = /^(['"])[^'"]{1,24}\1$/;

export function isWeakLabel(text) {
  return TOKEN_LIST.test(text) || QUOTED_TOKEN.test(text);
}

/**
 * How the panels show a node's label: {text, weak, base, suffix}. A label that two different
 * features share gets the layer (and the index, when they share the layer too) as a suffix; an
 * automatic label (not the user's, not a shared one) that is a bare list of tokens is weak.
 * Memoized per graph on the state's labels (clerps and labelEpoch).
 */
export function labelDisplay(graph, state) {
  const memo = graph.labelDisplayMemo;
  if (memo && memo.clerps === state.clerps && memo.epoch === state.labelEpoch) return memo.show;
  const overrides = new Map(state.clerps);
  const owners = new Map(); // label -> (feature key -> layer)
  for (const node of graph.nodes) {
    if (node.kind !== "feature" || node.featureIndex < 0) continue;
    const text = labelOf(node, overrides);
    if (!text || PLACEHOLDER.test(text)) continue;
    let features = owners.get(text);
    if (!features) owners.set(text, (features = new Map()));
    features.set(`${node.featureLayer}_${node.featureIndex}`, node.featureLayer);
  }
  const show = (node) => {
    const base = labelOf(node, overrides);
    if (node.kind !== "feature") return { text: base, weak: false, base, suffix: "" };
    const weak = !overrides.has(node.id) && !node.sharedLabel && isWeakLabel(base);
    const features = owners.get(base);
    let suffix = "";
    if (features && features.size > 1) {
      const sameLayer = [...features.values()].filter((l) => l === node.featureLayer).length > 1;
      suffix = ` · L${node.featureLayer}${sameLayer ? ` #${node.featureIndex}` : ""}`;
    }
    return { text: base + suffix, weak, base, suffix };
  };
  graph.labelDisplayMemo = { clerps: state.clerps, epoch: state.labelEpoch, show };
  return show;
}

/** "L3 · “ Dallas”" */
export function placeOf(node) {
  const layer = node.kind === "embedding" ? "Emb" : node.kind === "logit" ? "Out" : `L${node.layer}`;
  return `${layer} · ${node.ctx}`;
}

/** Nodes whose label or token contains the query (case-insensitive). */
export function searchNodes(graph, query, overrides) {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  return graph.nodes.filter((n) => labelOf(n, overrides).toLowerCase().includes(q) || n.token.toLowerCase().includes(q));
}
