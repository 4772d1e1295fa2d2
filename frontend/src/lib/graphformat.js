// The graph JSON format (docs/graph-format.md) as the page reads it: node types, node ids in both
// error-node conventions, Cantor pairing and feature keys. The JavaScript twin of the Python package
// attrgraph.format (node_ids.py, feature_keys.py); tests/e2e/browser/test_format_parity.py checks
// that both give every node the same answers, so the page and the server store a feature's label
// under the same key.

export const FEATURE_TYPE = "cross layer transcoder";
export const ERROR_TYPE = "mlp reconstruction error";

/** "feature" | "error" | "embedding" | "logit": any type naming an error is one; unknown types are features. */
export function nodeType(featureType) {
  const t = String(featureType ?? "").trim().toLowerCase();
  if (t === "embedding") return "embedding";
  if (t === "logit") return "logit";
  if (t.includes("error")) return "error";
  return "feature";
}

export function cantorPair(layer, index) {
  return ((layer + index) * (layer + index + 1)) / 2 + index;
}

/** Inverse of cantorPair: [layer, index]. Exact for any value below 2^53. */
export function cantorUnpair(value) {
  let w = Math.floor((Math.sqrt(8 * value + 1) - 1) / 2);
  // The square root is a float: step to the exact diagonal.
  while ((w * (w + 1)) / 2 > value) w--;
  while (((w + 1) * (w + 2)) / 2 <= value) w++;
  const index = value - (w * (w + 1)) / 2;
  return [w - index, index];
}

const DIGITS = /^[0-9]+$/;
const THREE_NUMBERS = /^([0-9]+)_([0-9]+)_([0-9]+)$/;
const FEATURE_JS_ID = /^([0-9]+)_([0-9]+)-[0-9]+$/;
const ERROR_ID = /^([0-9]+)_-1_([0-9]+)$/;
const ERROR_JS_ID = /^([0-9]+)_-1-([0-9]+)$/;
const KEY_TEXT = /^([0-9]+)_([0-9]+)$/;

/** A JSON value as a non-negative integer (3, or "3"), else null: as node_ids.whole_number reads it. */
export function wholeNumber(value) {
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 ? value : null;
  if (typeof value === "string" && DIGITS.test(value)) return Number(value);
  return null;
}

/**
 * [layer, index] of a feature node, else null: from its node_id `L_f_p`, else its jsNodeId `L_f-x`,
 * else its Cantor-paired `feature`, else a node_id that is one number (read as a Cantor pair); the
 * last three only when the node's `layer` field, if any, agrees.
 */
export function featureKey(raw) {
  if (nodeType(raw.feature_type) !== "feature") return null;
  const nodeId = String(raw.node_id ?? "");
  let m = THREE_NUMBERS.exec(nodeId);
  if (m) return [+m[1], +m[2]];
  const layer = wholeNumber(raw.layer);
  m = typeof raw.jsNodeId === "string" ? FEATURE_JS_ID.exec(raw.jsNodeId) : null;
  if (m && (layer === null || +m[1] === layer)) return [+m[1], +m[2]];
  for (const paired of [raw.feature, DIGITS.test(nodeId) ? nodeId : null]) {
    const value = wholeNumber(paired);
    if (value === null) continue;
    const key = cantorUnpair(value);
    if (layer === null || key[0] === layer) return key;
  }
  return null;
}

/** `layer_index`, the form labels are stored and sent under, or null for a node that is no feature. */
export function featureKeyText(raw) {
  const key = featureKey(raw);
  return key ? `${key[0]}_${key[1]}` : null;
}

/** "20_15589" -> [20, 15589]; null for anything else. */
export function parseFeatureKey(text) {
  const m = KEY_TEXT.exec(String(text));
  return m ? [+m[1], +m[2]] : null;
}

/** [layer, position] of an error node: its layer / ctx_idx fields, else `L_-1_p`, else the old `0_L_p`. */
export function errorAddress(raw) {
  const layer = wholeNumber(raw.layer);
  const pos = wholeNumber(raw.ctx_idx);
  if (layer !== null && pos !== null) return [layer, pos];
  const nodeId = String(raw.node_id ?? "");
  let m = ERROR_ID.exec(nodeId) || (typeof raw.jsNodeId === "string" ? ERROR_JS_ID.exec(raw.jsNodeId) : null);
  if (m) return [+m[1], +m[2]];
  m = THREE_NUMBERS.exec(nodeId);
  if (m && m[1] === "0") return [+m[2], +m[3]];
  return null;
}
