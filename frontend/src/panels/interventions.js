// The interventions panel: clamp, scale or ablate features (the clicked node, the pinned set or a
// supernode), swap in features from another graph, run it on a worker (POST /api/interventions) and
// show the next-token probabilities before and after, the KL divergence and both continuations.
// "Test this subgraph" ablates each supernode in turn and shows its effect on the target logit.
// The interventions and their switches live in the view state, hence in the share link; opening
// a link with interventions runs them again (a cache hit on the server).
import "../styles/interventions.css";

import { clear, el } from "../lib/dom.js";
import { followJob, getJSON, postJSON } from "../lib/api.js";
import { buildGraph, labelDisplay, labelOf } from "../lib/graphdata.js";
import { num, pct, quoted } from "../lib/format.js";
import { labelOverrides } from "../lib/state.js";

const MODES = { set: "clamp to", scale: "scale by", ablate: "ablate", add: "add" };

/** The feature node for an intervention entry, if the graph has it (for labels). */
function nodeFor(graph, [layer, feature, pos]) {
  for (const n of graph.nodes) {
    if (n.kind === "feature" && n.featureLayer === layer && n.featureIndex === feature && n.ctx === pos) return n;
  }
  return null;
}

function entryFor(node, mode, value) {
  return [node.featureLayer, node.featureIndex, node.ctx, mode, mode === "ablate" ? 0 : +value];
}

function requestBody(graphId, entries, flags) {
  return {
    graph_id: graphId,
    interventions: entries.map(([layer, feature, position, mode, value]) =>
      mode === "ablate_head" ? { mode, layer, head: feature } : { layer, position, feature, mode, value }),
    options: {
      freeze_attention: flags.includes("f"),
      direct_only: flags.includes("d"),
      apply_to_generated: flags.includes("g"),
      top_k: 8,
      n_generate: 8,
    },
  };
}

/** Submit and wait for the worker: the result JSON. onProgress(percent, phase) while it runs;
 * `signal` stops following (a newer run replaced this one). */
export async function runIntervention(graphId, entries, flags, { onProgress = () => {}, signal } = {}) {
  const { status, body } = await postJSON("/api/interventions", requestBody(graphId, entries, flags));
  if (status === 202) {
    await followJob(body, {
      signal,
      onEvent: (name, data) => {
        if (name === "progress") onProgress(data.percent || 0, data.phase || name);
        else onProgress(0, name === "requeued" ? "queued" : name);
      },
    });
  }
  return getJSON(body.result_url);
}

/** The change in logit where the result carries logits; else the change in log-probability
 * (log p_after - log p_before), which still shows an effect that a saturated probability hides. */
function logitChange(c) {
  let delta;
  let what;
  if (Number.isFinite(c.logit_before) && Number.isFinite(c.logit_after)) {
    delta = c.logit_after - c.logit_before;
    what = "change in logit";
  } else {
    delta = Math.log(Math.max(c.after, 1e-30)) - Math.log(Math.max(c.before, 1e-30));
    what = "change in log-probability (the result carries no logits)";
  }
  return el(`span.iv-dlogit${delta >= 0 ? ".pos" : ".neg"}`, { title: what }, `${delta >= 0 ? "+" : "−"}${num(Math.abs(delta), 2)}`);
}

function bars(result) {
  const rows = result.probability_changes.slice().sort((a, b) => Math.max(b.before, b.after) - Math.max(a.before, a.after)).slice(0, 8);
  const token = (id) => {
    for (const p of [result.before, result.after]) for (const t of p.top) if (t.token_id === id) return t.token;
    const change = result.probability_changes.find((c) => c.token_id === id);
    return (change && change.token) || `#${id}`;
  };
  return el(
    "div.iv-bars",
    rows.map((c) =>
      el("div.iv-bar-row", { dataset: { token: token(c.token_id) } },
        el("span.iv-token", quoted(token(c.token_id))),
        el("div.iv-bar-pair",
          el("div.iv-bar.before", { style: { width: `${Math.max(0.5, c.before * 100)}%` }, title: `before ${pct(c.before, 1)}` }),
          el("div.iv-bar.after", { style: { width: `${Math.max(0.5, c.after * 100)}%` }, title: `after ${pct(c.after, 1)}` }),
        ),
        el("span.iv-probs", `${pct(c.before, 1)} → `, el("b.iv-after-prob", pct(c.after, 1))),
        logitChange(c),
      ),
    ),
  );
}

export function createInterventions(root, { graph, store, graphId, panes }) {
  let result = null;
  let error = "";
  let busy = "";
  let runSeq = 0;
  let following = null; // the AbortController of the run in progress
  let mode = "set";
  let sliderValue = 0;
  let donor = null; // { graphId, prompt, graph }
  let donorMatches = [];
  let swapK = 1;
  let tests = null; // [{label, where, change | error | skipped}]
  let donorChosen = null; // ids of the donor graph's features to turn up (null: the default)
  // The newest result goes first, under the panel's head, and is scrolled into sight once it
  // comes (the Swap and Test buttons sit further down the column).
  let resultSeen = true;

  const clicked = () => {
    const n = graph.byId.get(store.get().clickedId);
    return n && n.kind === "feature" ? n : null;
  };
  const pinnedFeatures = () => store.get().pinnedIds.map((id) => graph.byId.get(id)).filter((n) => n && n.kind === "feature");
  const target = () => graph.logits.find((d) => d.isTarget) || graph.logits[0];

  function setEntries(entries) {
    store.set({ interventions: entries });
  }
  function addNodes(nodes) {
    const value = mode === "scale" ? sliderValue : mode === "set" ? sliderValue : sliderValue;
    const keep = store.get().interventions.filter(([l, f, p, m]) => m === "ablate_head" || !nodes.some((n) => n.featureLayer === l && n.featureIndex === f && n.ctx === p));
    setEntries([...keep, ...nodes.map((n) => entryFor(n, mode, mode === "set" && nodes.length > 1 ? (n.activation || 0) * sliderRatio() : value))]);
  }
  // For a group clamp the slider is a multiple of each member's own activation.
  const sliderRatio = () => {
    const n = clicked();
    return n && n.activation ? sliderValue / n.activation : sliderValue;
  };

  async function run() {
    const { interventions, ivOptions } = store.get();
    const seq = ++runSeq;
    if (following) following.abort(); // the older run's stream: its result would be ignored
    following = null;
    if (!interventions.length) {
      result = null;
      error = "";
      render();
      return;
    }
    busy = "running…";
    error = "";
    resultSeen = false;
    render();
    const controller = new AbortController();
    following = controller;
    try {
      const found = await runIntervention(graphId, interventions, ivOptions, {
        signal: controller.signal,
        onProgress: (p, phase) => {
          if (seq !== runSeq) return;
          busy = `${phase} ${Math.round(p)}%`;
          renderStatus();
        },
      });
      if (seq !== runSeq) return;
      result = found;
    } catch (err) {
      if (seq !== runSeq) return;
      result = null;
      error = err.message;
    } finally {
      if (following === controller) following = null;
    }
    busy = "";
    render();
  }

  /** Ablate each supernode and each other pinned node in turn; nodes that are not features
   * (tokens, outputs, errors) cannot be ablated and are listed as such. */
  async function testSubgraph() {
    const { supernodes, pinnedIds, ivOptions } = store.get();
    const overrides = labelOverrides(store.get());
    const grouped = new Set(supernodes.flatMap(([, ...ids]) => ids));
    const groups = [
      ...supernodes.map(([label, ...ids]) => ({ label, nodes: ids.map((id) => graph.byId.get(id)).filter(Boolean) })),
      ...pinnedIds.filter((id) => !grouped.has(id)).map((id) => graph.byId.get(id)).filter(Boolean).map((n) => ({ label: labelOf(n, overrides), nodes: [n] })),
    ];
    const logit = target();
    tests = [];
    resultSeen = false;
    busy = "testing the subgraph…";
    render();
    for (const group of groups) {
      const features = group.nodes.filter((n) => n.kind === "feature" && n.featureIndex >= 0);
      const where = [...new Set(group.nodes.map((n) => (n.kind === "feature" ? `L${n.featureLayer}` : n.kind === "logit" ? "out" : n.kind === "embedding" ? "emb" : `err L${n.layer}`)))].join(" ");
      if (!features.length) {
        tests.push({ label: group.label, where, skipped: "not a feature: cannot be ablated" });
        render();
        continue;
      }
      try {
        const res = await runIntervention(graphId, features.map((n) => entryFor(n, "ablate", 0)), ivOptions);
        const change = res.probability_changes.find((c) => c.token === logit.token) ||
          res.probability_changes.find((c) => [...res.before.top].some((t) => t.token_id === c.token_id && t.token === logit.token));
        tests.push({ label: group.label, where, change: change || null });
      } catch (err) {
        tests.push({ label: group.label, where, error: err.message });
      }
      render();
    }
    busy = "";
    render();
  }

  async function searchDonors(query) {
    const list = await getJSON("/api/graphs?limit=200");
    const q = query.trim().toLowerCase();
    donorMatches = list.graphs.filter((g) => g.graph_id !== graphId && (!q || g.prompt.toLowerCase().includes(q))).slice(0, 8);
    render();
  }

  async function chooseDonor(summary) {
    const raw = await getJSON(`/api/graphs/${summary.graph_id}`);
    donor = { graphId: summary.graph_id, prompt: summary.prompt, graph: buildGraph(raw) };
    donorMatches = [];
    donorChosen = null; // the default choice: see swapPlan
    render();
  }

  /** The swap, exactly: the pinned features turned down (ablated); the donor graph's chosen
   * features (default: those at a pinned feature's layer and aligned position, the prompts aligned
   * at their ends) set to k x their activation in the donor prompt. */
  function swapPlan() {
    const source = pinnedFeatures();
    if (!donor) return { down: source, candidates: [], up: [], shift: 0 };
    const shift = graph.tokens.length - donor.graph.tokens.length;
    const places = new Set(source.map((n) => `${n.featureLayer}@${n.ctx - shift}`));
    const positions = new Set(source.map((n) => n.ctx - shift));
    const candidates = donor.graph.nodes
      .filter((n) => n.kind === "feature" && n.featureIndex >= 0 && positions.has(n.ctx) && n.activation && n.ctx + shift >= 0)
      .sort((a, b) => a.ctx - b.ctx || a.featureLayer - b.featureLayer || (a.influence ?? 1) - (b.influence ?? 1));
    if (!donorChosen) donorChosen = new Set(candidates.filter((n) => places.has(`${n.featureLayer}@${n.ctx}`)).map((n) => n.id));
    const up = candidates.filter((n) => donorChosen.has(n.id));
    // A pinned feature that the donor has at the same place is set to the donor's value, not
    // ablated first: one intervention per feature and place.
    const raised = new Set(up.map((n) => `${n.featureLayer}/${n.featureIndex}/${n.ctx + shift}`));
    const replaced = new Set(source.filter((n) => raised.has(`${n.featureLayer}/${n.featureIndex}/${n.ctx}`)).map((n) => n.id));
    return { down: source, candidates, up, shift, replaced };
  }

  function swap() {
    const { down, up, shift, replaced } = swapPlan();
    if (!donor || !down.length) return;
    resultSeen = false;
    setEntries([
      ...down.filter((n) => !replaced.has(n.id)).map((n) => entryFor(n, "ablate", 0)),
      ...up.map((n) => [n.featureLayer, n.featureIndex, n.ctx + shift, "set", +(swapK * n.activation).toPrecision(6)]),
    ]);
  }

  function renderStatus() {
    const node = root.querySelector(".iv-status");
    if (node) node.textContent = busy || error;
  }

  function controls() {
    const n = clicked();
    const act = n && n.activation ? n.activation : 1;
    const range = mode === "scale" ? { min: -2, max: 4, step: 0.1 } : mode === "add" ? { min: -3 * Math.abs(act), max: 3 * Math.abs(act), step: Math.abs(act) / 50 } : { min: 0, max: 4 * Math.abs(act), step: Math.abs(act) / 50 };
    if (sliderValue < range.min || sliderValue > range.max) sliderValue = mode === "scale" ? 0 : mode === "add" ? 0 : 2 * Math.abs(act);
    const slider = el("input.iv-slider", { type: "range", ...range, value: sliderValue, disabled: mode === "ablate", "aria-label": "Intervention value" });
    const shown = el("span.slider-value", mode === "ablate" ? "0" : num(sliderValue, 2));
    slider.addEventListener("input", () => {
      sliderValue = +slider.value;
      shown.textContent = num(sliderValue, 2);
    });
    const { supernodes } = store.get();
    return el("div.iv-controls",
      el("div.iv-row",
        el("select.iv-mode", { "aria-label": "Intervention mode", onchange: (e) => { mode = e.target.value; render(); } },
          Object.entries(MODES).map(([k, label]) => el("option", { value: k, selected: k === mode }, label))),
        slider, shown),
      el("div.iv-row",
        el("button.iv-add-clicked", { disabled: !n, onclick: () => addNodes([n]), title: n ? labelOf(n, labelOverrides(store.get())) : "click a feature node" }, n ? `Clicked (${n.activation !== null ? `act ${num(n.activation, 2)}` : "feature"})` : "Clicked: none"),
        el("button.iv-add-pinned", { disabled: !pinnedFeatures().length, onclick: () => addNodes(pinnedFeatures()) }, `Pinned (${pinnedFeatures().length})`),
        supernodes.map(([label, ...ids]) =>
          el("button.iv-add-supernode", { onclick: () => addNodes(ids.map((id) => graph.byId.get(id)).filter((x) => x && x.kind === "feature")) }, label)),
      ),
    );
  }

  function list() {
    const { interventions } = store.get();
    const show = labelDisplay(graph, store.get());
    if (!interventions.length) return el("p.muted.iv-empty", "No interventions. Click a feature, choose a mode and value, then add it.");
    return el("ul.iv-list",
      interventions.map((entry, k) => {
        const [layer, feature, pos, m, value] = entry;
        if (m === "ablate_head") {
          return el("li.iv-head", { dataset: { layer, head: feature } },
            el("span.iv-what", `attention head ${layer}.${feature}`),
            el("span.iv-how", "ablate head"),
            el("button.iv-remove", { title: "Remove", "aria-label": "Remove intervention", onclick: () => setEntries(interventions.filter((_, j) => j !== k)) }, "×"));
        }
        const node = nodeFor(graph, entry);
        return el("li",
          el("span.iv-what", node ? show(node).text : `L${layer} #${feature}`, el("small", ` @${pos}`)),
          el("span.iv-how", m === "ablate" ? "ablate" : `${MODES[m]} ${num(value, 2)}`),
          el("button.iv-remove", { title: "Remove", "aria-label": "Remove intervention", onclick: () => setEntries(interventions.filter((_, j) => j !== k)) }, "×"));
      }),
      el("li.iv-clear-row", el("button.iv-clear", { onclick: () => setEntries([]) }, "Clear all")));
  }

  function options() {
    const { ivOptions } = store.get();
    const box = (flag, label, title) =>
      el("label.iv-option", { title },
        el("input", { type: "checkbox", checked: ivOptions.includes(flag), dataset: { flag }, onchange: (e) => {
          const flags = new Set(store.get().ivOptions);
          if (e.target.checked) flags.add(flag); else flags.delete(flag);
          store.set({ ivOptions: "fdg".split("").filter((f) => flags.has(f)).join("") });
        } }), label);
    return el("div.iv-row.iv-options",
      box("f", "freeze attention", "Attention patterns and norms stay as on the original prompt"),
      box("d", "direct only", "Other MLP outputs held: only the intervened features' own writes change anything"),
      box("g", "also on generated", "Apply the interventions at each generated token too"));
  }

  function swapSection() {
    const input = el("input.iv-donor-search", { type: "search", placeholder: "another graph's prompt…", "aria-label": "Search graphs by prompt" });
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") searchDonors(input.value); });
    const overrides = labelOverrides(store.get());
    const plan = donor ? swapPlan() : null;
    const featureRow = (n, extra, pos = n.ctx) =>
      el("span.iv-feature", el("span.iv-flabel", labelOf(n, overrides)), el("small.muted", ` L${n.featureLayer} #${n.featureIndex} @${pos}`), extra || null);
    return el("details.iv-swap", { open: !!donor || donorMatches.length ? true : null },
      el("summary", "Swap in features from another graph"),
      el("div.iv-row", input, el("button", { onclick: () => searchDonors(input.value) }, "Search")),
      donorMatches.length ? el("ul.iv-donors", donorMatches.map((g) => el("li", el("button.iv-donor", { onclick: () => chooseDonor(g) }, g.prompt)))) : null,
      donor ? el("div.iv-swap-plan",
        el("div.iv-row",
          el("span.iv-donor-name", "from ", quoted(donor.prompt)),
          el("label", "k ", el("input.iv-k", { type: "number", step: "0.1", value: swapK, onchange: (e) => { swapK = +e.target.value || 1; render(); } }))),
        el("div.iv-plan-head", `Turns down (ablates) ${plan.down.length - plan.replaced.size}:`),
        plan.down.length
          ? el("ul.iv-down", plan.down.map((n) => el("li", { dataset: { key: `${n.featureLayer}/${n.featureIndex}/${n.ctx}`, replaced: plan.replaced.has(n.id) ? "1" : "" } },
            featureRow(n, plan.replaced.has(n.id) ? el("small.iv-replaced", " (not ablated: set to the donor's value below)") : null))))
          : el("p.muted", "Pin the features to turn down."),
        el("div.iv-plan-head", `Turns up (sets to k × their activation there) ${plan.up.length} of ${plan.candidates.length} at the matching positions:`),
        el("ul.iv-up", plan.candidates.map((n) => {
          const box = el("input", { type: "checkbox", checked: donorChosen.has(n.id), "aria-label": `Turn up ${labelOf(n, overrides)}`, onchange: (e) => {
            if (e.target.checked) donorChosen.add(n.id); else donorChosen.delete(n.id);
            render();
          } });
          return el("li", { dataset: { key: `${n.featureLayer}/${n.featureIndex}/${n.ctx + plan.shift}`, chosen: donorChosen.has(n.id) ? "1" : "" } },
            el("label", box, featureRow(n, el("small.muted", ` → ${num(swapK * n.activation, 2)}`), n.ctx + plan.shift)));
        })),
        el("button.iv-do-swap", { disabled: !plan.down.length, title: "Run exactly the changes listed above", onclick: swap }, "Swap")) : null);
  }

  function results() {
    if (!result) return null;
    return el("div.iv-results",
      el("div.iv-legend", el("span.iv-key.before"), "before", el("span.iv-key.after"), "after", el("span.iv-kl", `KL ${num(result.kl_divergence, 3)}`)),
      bars(result),
      el("div.iv-cont", el("span.muted", "before: "), el("code.iv-cont-before", result.before.continuation)),
      el("div.iv-cont", el("span.muted", "after: "), el("code.iv-cont-after", result.after.continuation)));
  }

  function testResults() {
    if (!tests) return null;
    const logit = target();
    return el("div.iv-tests",
      el("div.muted", `Ablating each supernode and pinned node: p(${quoted(logit.token)})`),
      el("ul", tests.map((t) => el("li",
        el("span.iv-what", t.label, el("small.muted", ` ${t.where}`)),
        t.error ? el("span.error", t.error)
          : t.skipped ? el("span.muted.iv-skipped", t.skipped)
          : t.change ? el("span.iv-probs", `${pct(t.change.before, 1)} → `, el("b", pct(t.change.after, 1)), " ", logitChange(t.change))
          : el("span.muted", "not among the outputs")))));
  }

  function render() {
    clear(root);
    const { supernodes, pinnedIds } = store.get();
    const outcome = [results(), testResults()].filter(Boolean);
    root.append(
      el("div.panel-head", el("h2.panel-title", "Interventions"),
        el("button.iv-run", { onclick: run, disabled: !store.get().interventions.length }, "Run"),
        el("button.iv-test", { onclick: testSubgraph, disabled: !(supernodes.length || pinnedIds.length), title: "Ablate each supernode (or pinned feature) in turn" }, "Test this subgraph"),
        el("span.iv-status", { role: "status" }, busy || error)),
      ...outcome,
      ...[controls(), list(), options(), swapSection()]);
    root.dataset.state = busy ? "busy" : error ? "error" : result ? "done" : "idle";
    if (outcome.length && !resultSeen && !busy) {
      resultSeen = true;
      outcome[0].scrollIntoView({ block: "nearest" });
    }
  }

  store.subscribe((state, changed) => {
    if (changed.has("interventions") || changed.has("ivOptions")) {
      run();
      return;
    }
    if (["clickedId", "pinnedIds", "supernodes"].some((k) => changed.has(k)) || changed.has("clerps")) render();
  });
  render();
  if (store.get().interventions.length) run(); // a share link: show its results
  /** Add (once) an ablation of an attention head (the attention panel's "ablate") and run. */
  function ablateHead(layer, head) {
    const others = store.get().interventions.filter(([l, h, , m]) => !(m === "ablate_head" && l === layer && h === head));
    panes.setInterventions(true);
    setEntries([...others, [layer, head, 0, "ablate_head", 0]]);
  }
  return { run, testSubgraph, ablateHead, get result() { return result; } };
}
