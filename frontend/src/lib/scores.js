// Replacement and completeness scores of a pinned subgraph, as the engine defines them
// (backend/attrgraph/engine/pruning.py subgraph_scores), computed on the graph the page holds.
//
// The subgraph S is the pinned nodes plus every embedding and logit. Features outside S count as
// error-like, as error nodes do; rows of nodes outside S are dropped; every row keeps its full
// normalisation (metadata.attrgraph.node_values row_abs_total when the graph carries it). Input that
// no link in this file carries (links pruned away on the server, features never explored) comes from
// outside S, so it counts as error-like too. Where every row's input is all in the file this equals
// the engine's numbers (tests/browser/test_scores.py); otherwise the missing input counts against
// the subgraph, so the replacement score shown is never above the engine's for the same nodes.
//
// replacement  = influence reaching embeddings / influence reaching embeddings or error-like inputs
// completeness = influence-weighted mean share of each node's input from non-error-like nodes

const levelCache = new WeakMap();

function edgeOrder(graph) {
  // Links grouped by their target's level, top level first: one sweep propagates influence exactly.
  let order = levelCache.get(graph);
  if (!order) {
    const { tgt, n } = graph.links;
    const idx = Array.from({ length: n }, (_, e) => e);
    idx.sort((a, b) => graph.nodes[tgt[b]].layer - graph.nodes[tgt[a]].layer);
    order = Int32Array.from(idx);
    levelCache.set(graph, order);
  }
  return order;
}

function rowTotals(graph) {
  const n = graph.nodes.length;
  const stored = new Float64Array(n);
  const { tgt, weight, n: m } = graph.links;
  for (let e = 0; e < m; e++) stored[tgt[e]] += Math.abs(weight[e]);
  const totals = stored.slice();
  const values = graph.extras.node_values;
  const fields = graph.extras.node_value_fields || [];
  const k = fields.indexOf("row_abs_total");
  if (values && k >= 0) {
    for (const node of graph.nodes) {
      const row = values[node.id];
      const total = row && Math.abs(Number(row[k]));
      if (Number.isFinite(total) && total > totals[node.i]) totals[node.i] = total;
    }
  }
  return { stored, totals };
}

/** {replacement, completeness} for the subgraph of `pinnedIds` (NaN where undefined). */
export function subgraphScores(graph, pinnedIds) {
  const n = graph.nodes.length;
  const inS = new Uint8Array(n);
  for (const node of graph.nodes) if (node.kind === "embedding" || node.kind === "logit") inS[node.i] = 1;
  for (const id of pinnedIds) {
    const node = graph.byId.get(id);
    if (node) inS[node.i] = 1;
  }
  const errorLike = new Uint8Array(n);
  for (const node of graph.nodes) errorLike[node.i] = !inS[node.i] || node.kind === "error" ? 1 : 0;

  const { src, tgt, weight, n: m } = graph.links;
  const { stored, totals } = rowTotals(graph);
  const start = new Float64Array(n);
  for (const node of graph.nodes) if (node.kind === "logit") start[node.i] = node.prob || 0;

  const influence = new Float64Array(n);
  for (const e of edgeOrder(graph)) {
    const t = tgt[e];
    if (!inS[t]) continue;
    influence[src[e]] += (Math.abs(weight[e]) / Math.max(totals[t], 1e-30)) * (influence[t] + start[t]);
  }
  // Influence that flows into input no stored link carries: it reaches something outside S.
  let outsideInfluence = 0;
  const fromErrors = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    if (!inS[t] || totals[t] <= 0) continue;
    const residual = (totals[t] - stored[t]) / totals[t];
    outsideInfluence += residual * (influence[t] + start[t]);
    fromErrors[t] += residual;
  }
  for (let e = 0; e < m; e++) {
    const t = tgt[e];
    if (inS[t] && errorLike[src[e]]) fromErrors[t] += Math.abs(weight[e]) / Math.max(totals[t], 1e-30);
  }
  let tokenInfluence = 0;
  let errorInfluence = outsideInfluence;
  let weighted = 0;
  let total = outsideInfluence; // the outside input counts as a source with nothing missing
  weighted += outsideInfluence;
  for (const node of graph.nodes) {
    const i = node.i;
    if (node.kind === "embedding") tokenInfluence += influence[i];
    else if (errorLike[i]) errorInfluence += influence[i];
    const output = influence[i] + start[i];
    total += output;
    weighted += (1 - fromErrors[i]) * output;
  }
  const denominator = tokenInfluence + errorInfluence;
  return {
    replacement: denominator > 0 ? tokenInfluence / denominator : NaN,
    completeness: total > 0 ? weighted / total : NaN,
  };
}

