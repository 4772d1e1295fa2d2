// The home page's list of recent graphs: one entry per graph, each with its prompt, what it
// explains (the target), the settings it was traced with, the model, its size and when.

import { clear, el } from "./dom.js";
import { plural, quoted, relativeTime } from "./format.js";

const DEFAULTS = { max_n_logits: 10, desired_logit_prob: 0.95 };

/** "≤ 50 features · node 0.8 · edge 0.98" (the outputs' settings only where not the default). */
export function settingsText(settings = {}) {
  const parts = [];
  const s = settings || {};
  if (Number.isFinite(s.max_feature_nodes)) parts.push(`≤ ${s.max_feature_nodes.toLocaleString()} features`);
  if (Number.isFinite(s.node_threshold)) parts.push(`node ${s.node_threshold}`);
  if (Number.isFinite(s.edge_threshold)) parts.push(`edge ${s.edge_threshold}`);
  if (Number.isFinite(s.max_n_logits) && s.max_n_logits !== DEFAULTS.max_n_logits) parts.push(`≤ ${s.max_n_logits} outputs`);
  if (Number.isFinite(s.desired_logit_prob) && s.desired_logit_prob !== DEFAULTS.desired_logit_prob) parts.push(`outputs to p ${s.desired_logit_prob}`);
  return parts.join(" · ");
}

function entry(g) {
  const when = new Date(g.created_at * 1000);
  const target = (g.target || []).map((t) => quoted(t)).join(", ");
  const settings = settingsText(g.settings);
  return el(
    "li.recent-item",
    { dataset: { graphId: g.graph_id } },
    el("a.recent-link", { href: `/graph/${g.graph_id}` }, g.prompt || "(no prompt)"),
    el(
      "div.recent-meta",
      target ? el("span.recent-target", { title: "The output the graph explains" }, "explains ", el("b", target)) : null,
      settings ? el("span.recent-settings", { title: "Trace and pruning settings" }, settings) : null,
      el("span.recent-size", `${g.model} · ${plural(g.n_nodes, "node")} · ${plural(g.n_links, "link")}`),
      el("time.recent-time", { datetime: when.toISOString(), title: when.toLocaleString() }, relativeTime(g.created_at)),
    ),
  );
}

/** Fill `list` (an <ol>) with the graphs, newest first, each graph once. */
export function renderRecent(list, graphs) {
  clear(list);
  const seen = new Set();
  for (const g of graphs) {
    if (seen.has(g.graph_id)) continue;
    seen.add(g.graph_id);
    list.append(entry(g));
  }
  return seen.size;
}
