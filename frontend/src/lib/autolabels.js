// Labels for features that came without one (an imported graph, or one traced without labels):
// read from their dashboards as soon as the graph opens, strongest features first, a few requests
// at a time, so the graph is labelled without clicking each node. A label the graph, a user or the
// shared label index gives is never replaced.

import { getJSON } from "./api.js";

const PLACEHOLDER = /^L\d+ #-?\d+$/;
const CONCURRENCY = 4;
const MAX_FEATURES = 400; // the strongest unlabelled features; others are labelled when clicked

const unlabelled = (node) => !node.raw.clerp && !node.sharedLabel && PLACEHOLDER.test(node.label);

/** Start fetching; resolves when done with the number of features labelled. */
export async function fetchMissingLabels({ graph, store, transcoders, signal }) {
  if (!transcoders) return 0;
  const todo = [];
  const seen = new Set();
  const byStrength = graph.nodes
    .filter((n) => n.kind === "feature" && n.featureIndex >= 0 && unlabelled(n))
    .sort((a, b) => (a.influence ?? 1) - (b.influence ?? 1));
  for (const node of byStrength) {
    const key = `${node.featureLayer}_${node.featureIndex}`;
    if (seen.has(key)) continue;
    seen.add(key);
    todo.push(node);
    if (todo.length >= MAX_FEATURES) break;
  }
  let learnt = 0;
  let pending = 0; // the timer of the next redraw
  const flush = () => {
    clearTimeout(pending);
    pending = 0;
    store.set({ labelEpoch: store.get().labelEpoch + 1 });
  };
  async function one(node) {
    const url = `/api/features/${encodeURIComponent(transcoders)}/${node.featureLayer}/${node.featureIndex}`;
    let detail;
    try {
      detail = await getJSON(url);
    } catch {
      return; // no dashboard for it: the feature panel says so when it is clicked
    }
    const label = detail && typeof detail.label === "string" ? detail.label.trim() : "";
    if (!label || signal?.aborted) return;
    let changed = false;
    for (const d of graph.byFeature.get(`${node.featureLayer}_${node.featureIndex}`) || [node]) {
      if (!unlabelled(d)) continue;
      d.label = label;
      changed = true;
    }
    if (!changed) return;
    learnt++;
    // One redraw per burst of answers, not one per feature.
    if (!pending) pending = setTimeout(flush, 50);
  }
  let next = 0;
  const worker = async () => {
    while (next < todo.length && !signal?.aborted) await one(todo[next++]);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  if (pending) flush();
  document.body.dataset.autolabels = "done"; // every label learnt is drawn (tests wait for this)
  return learnt;
}
