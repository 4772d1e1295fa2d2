// The feature panel: what the clicked feature is. Its label (editable), top activating examples
// with per-token highlighting, the activation histogram, top and bottom logit effects, and the
// other positions where the same feature is active in this graph. Dashboards come from
// /api/features/{set}/{layer}/{index} (Neuronpedia feature-detail format).

import { clear, el, svgEl } from "../lib/dom.js";
import { getJSON } from "../lib/api.js";
import { labelOf, placeOf } from "../lib/graphdata.js";
import { num, pct, quoted, tokenText } from "../lib/format.js";
import { labelOverrides, walkTo, labelsChanged } from "../lib/state.js";

export function createFeaturePanel(root, { graph, store, transcoders, hasDashboards, collab }) {
  clear(root);
  const head = el("div.panel-head");
  const body = el("div.feature-body");
  root.append(head, body);
  const cache = new Map(); // "layer/index" -> Promise<dashboard|null>
  let shownFor = null;

  function dashboard(node) {
    const key = `${node.featureLayer}/${node.featureIndex}`;
    if (!cache.has(key)) {
      const url = `/api/features/${encodeURIComponent(transcoders)}/${node.featureLayer}/${node.featureIndex}`;
      cache.set(
        key,
        getJSON(url).catch((err) => ({ error: err.message || String(err), status: err.status })),
      );
    }
    return cache.get(key);
  }

  /** Graphs traced without labels: take the dashboard's, for every position of the feature. */
  function learnLabel(node, label) {
    if (!label || node.raw.clerp || node.sharedLabel) return false;
    const same = graph.byFeature.get(`${node.featureLayer}_${node.featureIndex}`) || [node];
    if (same.every((d) => d.label === label)) return false;
    for (const d of same) d.label = label;
    store.set({ labelEpoch: store.get().labelEpoch + 1 });
    return true;
  }

  function setLabel(node, label) {
    const clerps = store.get().clerps.filter(([id]) => id !== node.id);
    if (collab && node.kind === "feature") {
      // Shared: the label goes to every graph with this feature (panels/collab.js).
      if (label === labelOf(node, labelOverrides(store.get()))) return render();
      store.set({ clerps });
      collab.saveLabel(node, label).then((result) => {
        render();
        if (!result.ok) body.prepend(el("p.error#label-conflict", result.message));
      });
      return;
    }
    if (label && label !== node.label) clerps.push([node.id, label]);
    store.set({ clerps });
  }

  /** Abandons the open rename field, if any (see labelEditor). */
  let editing = null;

  function labelEditor(node) {
    const overrides = labelOverrides(store.get());
    const title = el("h3.feature-label", { id: "feature-label" }, labelOf(node, overrides));
    const edit = el("button.link-button", { type: "button", title: "Rename this node" }, "Rename");
    edit.addEventListener("click", () => {
      const input = el("input.rename-input", { type: "text", value: labelOf(node, overrides), "aria-label": "Node label" });
      title.replaceWith(input);
      edit.hidden = true;
      input.focus();
      input.select();
      let done = false;
      const finish = (save) => {
        if (done) return;
        done = true;
        editing = null;
        if (save) setLabel(node, input.value.trim());
        else render();
      };
      // While the field is open, label updates from elsewhere (dashboard labels arriving, a
      // colleague's edit) must not redraw the panel under it: removing a focused field fires its
      // blur inside the removal, whose own redraw then breaks the DOM. Closing it redraws anyway.
      editing = () => { done = true; editing = null; };
      input.addEventListener("keydown", (e) => {
        if (e.key === "Enter") finish(true);
        if (e.key === "Escape") finish(false);
      });
      input.addEventListener("blur", () => finish(true), { once: true });
    });
    return el("div.label-row", title, edit);
  }

  /** Who wrote the label and when, its history with revert, and a note on this node. */
  function collabSection(node) {
    const item = collab.itemFor(node);
    const by = item && item.version ? el("p.muted.label-author", `Label by ${item.author || "?"}, ${new Date(item.time * 1000).toLocaleString()}`) : "";
    const versions = el("ol.label-history");
    const history = el("details.label-history-box", el("summary", "Label history"), versions);
    history.addEventListener("toggle", async () => {
      if (!history.open) return;
      const list = await collab.history(node);
      versions.replaceChildren(
        ...list.map((v) =>
          el(
            "li",
            el("span.history-value", v.value || "(cleared)"),
            el("span.muted", ` · ${v.author || "?"} · ${new Date(v.time * 1000).toLocaleString()} `),
            el("button.link-button", { type: "button", onclick: () => collab.revert(node, v.version) }, "Revert to this"),
          ),
        ),
      );
    });
    const note = el("textarea#node-note.note-input", { rows: 2, placeholder: "Note on this node", "aria-label": "Note on this node" });
    const status = el("span.muted.note-status");
    let noteVersion = 0;
    collab.note(`node:${node.id}`).then((n) => {
      note.value = n.value || "";
      noteVersion = n.version || 0;
    });
    const save = el("button.link-button#save-note", { type: "button" }, "Save note");
    save.addEventListener("click", async () => {
      const saved = await collab.saveNote(`node:${node.id}`, note.value, noteVersion);
      if (saved.ok) {
        noteVersion = saved.item.version;
        status.textContent = "Saved";
      } else if (saved.current) {
        noteVersion = saved.current.version;
        note.value = saved.current.value;
        status.textContent = `${saved.current.author || "Someone"} changed this note first; it now shows theirs.`;
      } else status.textContent = `Could not save: ${saved.message}`;
    });
    return el("div.collab", by, history, el("div.note-row", note, save, status));
  }

  function otherPositions(node) {
    const same = (graph.byFeature.get(`${node.featureLayer}_${node.featureIndex}`) || []).filter((d) => d !== node);
    if (!same.length) return el("p.muted", "Active at no other position in this graph.");
    return el(
      "ul.other-positions",
      same
        .sort((a, b) => a.ctx - b.ctx)
        .map((d) =>
          el(
            "li",
            el(
              "button.chip",
              { type: "button", "data-id": d.id, onclick: () => walkTo(store, d.id) },
              `${quoted(graph.tokens[d.ctx] ?? "")} @${d.ctx}`,
              el("span.muted", ` act ${num(d.activation)}`),
            ),
          ),
        ),
    );
  }

  function example(ex, actMax) {
    const acts = ex.tokens_acts_list || [];
    const line = el("div.example");
    (ex.tokens || []).forEach((tok, k) => {
      const a = Math.max(0, Number(acts[k]) || 0) / (actMax || 1);
      const span = el("span.tok", { title: `${quoted(tok)} activation ${num(Number(acts[k]) || 0)}` }, tokenText(tok));
      if (a > 0) span.style.background = `rgba(234, 88, 12, ${(0.12 + 0.78 * Math.min(1, a)).toFixed(3)})`;
      if (a > 0.55) span.classList.add("hot");
      if (k === ex.max_token_index) span.classList.add("peak");
      line.append(span);
    });
    return line;
  }

  function examples(detail) {
    const groups = detail.examples_quantiles || [];
    let actMax = Number(detail.act_max) || 0;
    for (const g of groups) for (const ex of g.examples || []) for (const a of ex.tokens_acts_list || []) actMax = Math.max(actMax, a);
    if (!groups.length) return el("p.muted", "No examples (the feature never fired on the dashboard corpus).");
    return el(
      "div.examples",
      groups.map((g, k) => {
        const list = el("div.example-list", (g.examples || []).map((ex) => example(ex, actMax)));
        if (k === 0) return el("section", el("h4", g.quantile_name || "Top activations"), list);
        return el("details", el("summary", g.quantile_name || `Quantile ${k}`), list);
      }),
    );
  }

  function histogram(detail, node) {
    const hist = detail.histogram || {};
    const counts = hist.counts || [];
    const edges = hist.edges || [];
    if (!counts.length) return null;
    const W = 260;
    const H = 64;
    const max = Math.max(...counts, 1);
    const svg = svgEl("svg", { class: "histogram", viewBox: `0 0 ${W} ${H + 14}`, width: W, height: H + 14, role: "img" });
    svg.setAttribute("aria-label", `Activation histogram, ${counts.length} bins`);
    const bw = W / counts.length;
    counts.forEach((c, k) => {
      const h = (Math.log1p(c) / Math.log1p(max)) * H;
      const rect = svgEl("rect", { x: (k * bw + 0.5).toFixed(1), y: (H - h).toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: h.toFixed(1), class: "bar" });
      const title = svgEl("title");
      title.textContent = `${num(edges[k])} – ${num(edges[k + 1])}: ${c}`;
      rect.append(title);
      svg.append(rect);
    });
    const lo = Number(edges[0]) || 0;
    const hi = Number(edges[edges.length - 1]) || 1;
    if (node.activation !== null && hi > lo) {
      const x = Math.min(W - 1, Math.max(1, ((node.activation - lo) / (hi - lo)) * W));
      svg.append(svgEl("line", { x1: x, x2: x, y1: 0, y2: H, class: "marker" }));
    }
    for (const [x, anchor, text] of [[0, "start", num(lo)], [W, "end", num(hi)]]) {
      const t = svgEl("text", { x, y: H + 12, "text-anchor": anchor, class: "axis" });
      t.textContent = text;
      svg.append(t);
    }
    return el(
      "section.hist",
      el("h4", "Activation density ", el("span.muted", `(log scale; line: this node; fires on ${pct(detail.activation_frequency, 2)} of tokens)`)),
      svg,
    );
  }

  function logits(detail) {
    const column = (title, tokens, values, cls) =>
      el(
        "div.logit-col",
        el("h4", title),
        el(
          "ul.logit-list",
          (tokens || []).map((t, k) =>
            el("li", el(`span.chip.${cls}`, tokenText(t).replace(/^ /, "·")), values && values[k] !== undefined ? el("span.muted", ` ${num(values[k])}`) : null),
          ),
        ),
      );
    return el(
      "section.logits",
      column("Promotes", detail.top_logits, detail.top_logit_values, "pos"),
      column("Suppresses", detail.bottom_logits, detail.bottom_logit_values, "neg"),
    );
  }

  /** A set without dashboards (or without this feature's): say how to build them, not an empty panel. */
  function noDashboard() {
    const model = graph.metadata.scan || "MODEL";
    const command = `attrgraph dashboards build --model ${model} --transcoders ${transcoders || "TRANSCODERS"} --corpus FILE`;
    return el(
      "section.no-dashboard#no-dashboard",
      el("h4", "No dashboard yet"),
      el("p.muted", "Examples, histograms and logit effects come from a dashboard build on a text corpus (one document per line). Run, with the model and transcoders this server loads, then restart it:"),
      el("pre.command", el("code", command)),
    );
  }

  function renderNonFeature(node) {
    const overrides = labelOverrides(store.get());
    const lines = {
      logit: [`The model's output “${node.token}”, probability ${pct(node.prob, 1)}.`, "Its inputs are the direct effects on this logit (mean logit removed)."],
      embedding: [`The token ${quoted(node.token)} at position ${node.ctx}.`, "Embeddings are where every path in the graph starts."],
      error: [
        `The MLP reconstruction error at layer ${node.layer}, position ${node.ctx}: what the transcoder misses there.`,
        "Large error inputs mean the graph explains less of that output.",
      ],
    }[node.kind];
    body.append(el("div.label-row", el("h3.feature-label", labelOf(node, overrides))), ...lines.map((t) => el("p", t)));
  }

  async function render() {
    const state = store.get();
    const node = graph.byId.get(state.clickedId);
    clear(head);
    clear(body);
    shownFor = node ? node.id : null;
    head.append(el("h2.panel-title", node && node.kind === "feature" ? "Feature" : "Node"));
    if (!node) {
      body.append(el("p.empty", "The clicked feature's examples, logit effects and other positions show here."));
      return;
    }
    if (node.kind !== "feature") return renderNonFeature(node);
    body.append(
      labelEditor(node),
      collab ? collabSection(node) : "",
      el("p.muted", `Layer ${node.featureLayer}, feature ${node.featureIndex} · ${placeOf(node)} ${quoted(graph.tokens[node.ctx] ?? "")} · activation ${num(node.activation)}`),
      el("section.others", el("h4", "Also active in this graph"), otherPositions(node)),
    );
    if (!hasDashboards) {
      body.append(noDashboard());
      return;
    }
    const loading = el("p.muted.loading-dash", "Loading examples…");
    body.append(loading);
    const detail = await dashboard(node);
    if (shownFor !== node.id) return; // the user moved on
    loading.remove();
    if (!detail || detail.status === 404) {
      body.append(noDashboard());
      return;
    }
    if (detail.error) {
      body.append(el("p.error", `Dashboard unavailable: ${detail.error}`));
      return;
    }
    if (learnLabel(node, detail.label)) return; // the panels redraw, this one included
    const dashLabel = detail.label && detail.label !== labelOf(node, labelOverrides(store.get())) ? el("p.muted", `Dashboard label: ${detail.label}`) : null;
    body.append(dashLabel || "", histogram(detail, node) || "", logits(detail), el("section.top-examples", examples(detail)));
  }

  store.subscribe((state, changed) => {
    if (editing && !changed.has("clickedId")) return;
    if (editing) editing(); // another node was chosen: drop the open field, saving nothing
    if (changed.has("clickedId") || labelsChanged(changed)) render();
  });
  render();
}
