// The attention panel, under the connections: which heads carried an edge, and why a head looked
// where it did. "Heads" on an input of the clicked node asks POST /api/attention for the edge's head
// loadings (each head's share of the edge and its attention pattern at that query and key); a head's
// "QK" asks for its score split into query x key pairs and marginals, each entry clickable into the
// graph (contributors outside the pruned graph are listed, not clickable); "ablate" hands the head to
// the interventions panel, which runs the model without it.
import "../styles/attention.css";

import { clear, el } from "../lib/dom.js";
import { followJob, getJSON, postJSON } from "../lib/api.js";
import { labelDisplay, placeOf } from "../lib/graphdata.js";
import { num, pct, quoted, signed } from "../lib/format.js";
import { walkTo } from "../lib/state.js";

/** Submit an attention question and wait for its result; onProgress(text) while a worker computes. */
async function ask(body, { onProgress, signal }) {
  const { status, body: reply } = await postJSON("/api/attention", body);
  if (status === 202) {
    await followJob(reply, {
      signal,
      onEvent: (name, data) => onProgress(name === "progress" ? `${data.phase || name} ${Math.round(data.percent || 0)}%` : name),
    });
  }
  return getJSON(reply.result_url);
}

export function createAttention(root, { graph, store, graphId, interventions }) {
  const panel = el("section.attention-panel", { "aria-label": "Attention" });
  root.append(panel);
  let view = null; // {kind: "edge" | "head", request, result}
  let status = "";
  let following = null;

  const token = (pos) => quoted(graph.tokens[pos] ?? "");

  async function run(kind, request) {
    if (following) following.abort();
    const controller = new AbortController();
    following = controller;
    view = { kind, request, result: null };
    status = "asking…";
    render();
    try {
      const result = await ask({ graph_id: graphId, ...request }, {
        signal: controller.signal,
        onProgress: (text) => {
          status = text;
          renderStatus();
        },
      });
      if (following !== controller) return;
      view = { kind, request, result };
      status = "";
    } catch (err) {
      if (following !== controller) return;
      status = err.message;
    }
    following = null;
    render();
  }

  const explainEdge = (source, target) => run("edge", { edge: { source, target } });
  const explainHead = (layer, head, queryPos, keyPos) =>
    run("head", { head: { layer, head, query_pos: queryPos, key_pos: keyPos }, top: 10 });

  /** A node id as a clickable label (walks the graph to it), or muted text when the pruned graph lacks it. */
  function nodeLink(id, labels) {
    const node = graph.byId.get(id);
    const show = labelDisplay(graph, store.get());
    if (!node) {
      const text = (labels && labels[id]) || id;
      return el("span.att-node.outside", { title: "Not in the pruned graph", dataset: { id } }, text, el("small.muted", " (outside)"));
    }
    return el("button.att-node.link-button", { type: "button", dataset: { id }, title: `Walk to ${placeOf(node)}`, onclick: () => walkTo(store, id) },
      show(node).base, el("small.muted", ` ${placeOf(node)}`));
  }

  function edgeView(result) {
    const heads = result.heads || [];
    const byHead = new Map();
    for (const l of result.head_loadings || []) {
      const k = `${l.layer}.${l.head}`;
      if (!byHead.has(k)) byHead.set(k, l); // the head's strongest key position (sorted by |loading|)
    }
    return el("div.att-edge",
      el("div.att-title", "Heads carrying ", nodeLink(result.source, result.labels), " → ", nodeLink(result.target, result.labels)),
      el("div.muted", `edge ${signed(result.weight)} from ${token(result.source_pos)} into ${token(result.query_pos)}`),
      heads.length
        ? el("ol.att-heads", heads.map((h) => {
          const top = byHead.get(`${h.layer}.${h.head}`);
          return el("li.att-head", { dataset: { layer: h.layer, head: h.head } },
            el("span.att-head-name", `head ${h.layer}.${h.head}`),
            el("span.att-share", pct(h.share, 1)),
            top ? el("span.att-pattern", { title: "Attention pattern at this query and key" }, `attn ${num(top.pattern, 3)} on ${token(top.key_pos)}`) : null,
            top ? el("button.att-qk", { type: "button", onclick: () => explainHead(h.layer, h.head, result.query_pos, top.key_pos) }, "QK") : null,
            interventions ? el("button.att-ablate", { type: "button", title: "Run the model without this head", onclick: () => interventions.ablateHead(h.layer, h.head) }, "ablate") : null);
        }))
        : el("p.muted", "Same position: no attention head carries it (it never leaves its token)."));
  }

  function entries(list, labels, pair) {
    return el("ol.att-list", list.map((item) => {
      const value = item[item.length - 1];
      return el("li.att-qk-entry",
        pair ? [nodeLink(item[0], labels), el("span.muted", " × "), nodeLink(item[1], labels)] : nodeLink(item[0], labels),
        el(`span.att-value.${value >= 0 ? "pos" : "neg"}`, signed(value, 3)));
    }));
  }

  function headView(result) {
    const qk = result.qk_tracing_results;
    const labels = result.labels || {};
    return el("div.att-head-qk", { dataset: { layer: result.layer, head: result.head } },
      el("div.att-title", `Head ${result.layer}.${result.head}: ${token(result.query_pos)} → ${token(result.key_pos)}`,
        interventions ? el("button.att-ablate", { type: "button", onclick: () => interventions.ablateHead(result.layer, result.head) }, "ablate this head") : null),
      el("div.att-terms",
        `score ${signed(result.score, 3)} (attention ${num(result.pattern, 3)}) = pairs ${signed(result.pairs_total, 3)} + q bias × k ${signed(result.q_bias_terms, 3)} + k bias × q ${signed(result.k_bias_terms, 3)} + bias ${signed(result.bias, 3)}`),
      el("h3", "Query × key pairs"), entries(qk.pair_wise_contributors, labels, true),
      el("h3", "Query side"), entries(qk.top_q_marginal_contributors, labels, false),
      el("h3", "Key side"), entries(qk.top_k_marginal_contributors, labels, false));
  }

  function renderStatus() {
    const node = panel.querySelector(".att-status");
    if (node) node.textContent = status;
  }

  function render() {
    clear(panel);
    panel.append(el("div.panel-head", el("h2.panel-title", "Attention"), el("span.att-status", { role: "status" }, status)));
    if (!view) panel.append(el("p.muted.att-empty", "“heads” on an input asks which attention heads carried it."));
    else if (view.result) panel.append(view.kind === "edge" ? edgeView(view.result) : headView(view.result));
    panel.dataset.state = following ? "busy" : view && view.result ? `${view.kind}` : status ? "error" : "idle";
  }

  store.subscribe((state, changed) => {
    if (view && view.result && (changed.has("clerps") || changed.has("labelEpoch"))) render();
  });
  render();
  return { explainEdge, explainHead, get view() { return view; } };
}
