// Link-graph layout: token positions along x, layers along y (embeddings at the bottom, output
// logits on top). Each position's column is as wide as its busiest layer needs (a position with no
// node but its token gets a narrow column); the nodes of one (layer, position) cell spread evenly
// across the column, most influential first, and a crowded cell staggers its nodes over a few
// sub-rows so they stay apart. The top margin holds the output labels, the bottom one the token
// labels (panels/linkgraph.js places both so that none overlaps another).

import { compareNodes } from "./graphdata.js";

export const MARGIN = { top: 84, right: 28, bottom: 70, left: 40 };
const MIN_SPACING = 9; // px between node centres before a cell staggers into sub-rows
const EMBED_SIDE = 10; // px: a token's square where its column has room
const EMBED_MIN_SIDE = 3; // px: the smallest a token's square gets (long prompts)
const EMBED_GAP = 1.5; // px between two token squares

export function layoutGraph(graph, mask, width, height) {
  const n = graph.nodes.length;
  const x = new Float32Array(n).fill(NaN);
  const y = new Float32Array(n).fill(NaN);
  const nRows = graph.nLayers + 2; // embeddings, layers 0..L-1, logits
  const innerW = Math.max(50, width - MARGIN.left - MARGIN.right);
  const innerH = Math.max(50, height - MARGIN.top - MARGIN.bottom);
  const rowH = innerH / Math.max(1, nRows - 1);
  const rowY = (layer) => MARGIN.top + innerH - (layer + 1) * rowH;

  // cells[row][pos] -> nodes
  const cells = new Map();
  for (const node of graph.nodes) {
    if (!mask[node.i]) continue;
    const key = (node.layer + 1) * graph.nPos + node.ctx;
    let cell = cells.get(key);
    if (!cell) cells.set(key, (cell = []));
    cell.push(node);
  }
  // Positions holding nothing but their token get a narrow column (a quarter of a busy one's).
  const roomy = innerW / Math.max(1, graph.nPos) >= 32; // room enough: no column narrows
  const need = new Float64Array(graph.nPos).fill(roomy ? 1.5 : 0.1);
  for (const [key, cell] of cells) {
    const pos = key % graph.nPos;
    if (key >= graph.nPos) need[pos] = Math.max(need[pos], 1.5, cell.length);
  }
  // Square-root damping: one very busy position gets more room, but not all of it.
  const weights = Array.from(need, (v) => Math.sqrt(v));
  const total = weights.reduce((a, b) => a + b, 0) || 1;
  const columns = [];
  let cursor = MARGIN.left;
  for (let p = 0; p < graph.nPos; p++) {
    const w = (innerW * weights[p]) / total;
    columns.push({ pos: p, x0: cursor, x1: cursor + w, center: cursor + w / 2, token: graph.tokens[p] ?? "", busy: need[p] > 0.1 });
    cursor += w;
  }
  for (const [key, cell] of cells) {
    const pos = key % graph.nPos;
    const layer = Math.floor(key / graph.nPos) - 1;
    const col = columns[pos];
    cell.sort(compareNodes);
    const width = col.x1 - col.x0;
    const subRows = Math.min(3, Math.max(1, Math.ceil((cell.length * MIN_SPACING) / Math.max(1, width))));
    const perRow = Math.ceil(cell.length / subRows);
    const yBase = rowY(layer);
    cell.forEach((node, k) => {
      const sub = k % subRows;
      const slot = Math.floor(k / subRows);
      const count = Math.min(perRow, Math.ceil((cell.length - sub) / subRows));
      x[node.i] = col.x0 + ((slot + 0.5) * width) / Math.max(1, count);
      y[node.i] = yBase + (sub - (subRows - 1) / 2) * Math.min(14, rowH * 0.28);
    });
  }
  const squares = placeTokenSquares(graph, mask, columns, x, y, rowY(-1), rowH);
  const rows = [];
  for (let layer = -1; layer <= graph.nLayers; layer++) {
    rows.push({
      layer,
      y: rowY(layer),
      label: layer === -1 ? "Emb" : layer === graph.nLayers ? "Out" : `L${layer}`,
    });
  }
  return { x, y, columns, rows, width, height, rowH, embedHalf: squares.half, embedBottom: squares.bottom };
}

/**
 * The token squares of the bottom row never overlap: where columns are narrower than a square, the
 * squares step up over a few sub-rows (position p in sub-row p mod k, so two squares of one sub-row
 * are k columns apart) and shrink to what k columns leave. Returns half a square's side.
 */
function placeTokenSquares(graph, mask, columns, x, y, baseY, rowH) {
  const centres = [];
  for (const node of graph.nodes) if (node.kind === "embedding" && mask[node.i]) centres.push(columns[node.ctx].center);
  centres.sort((a, b) => a - b);
  let pitch = Infinity;
  for (let k = 1; k < centres.length; k++) pitch = Math.min(pitch, centres[k] - centres[k - 1]);
  let side = EMBED_SIDE;
  let subRows = 1;
  if (pitch < side + EMBED_GAP) {
    const maxRows = Math.max(1, Math.min(4, Math.floor((rowH * 0.45) / (EMBED_MIN_SIDE + 2))));
    subRows = Math.min(maxRows, Math.ceil((side + EMBED_GAP) / Math.max(pitch, 0.01)));
    side = Math.max(EMBED_MIN_SIDE, Math.min(side, subRows * pitch - EMBED_GAP, (rowH * 0.45) / subRows - 2));
  }
  for (const node of graph.nodes) {
    if (node.kind !== "embedding" || !mask[node.i]) continue;
    x[node.i] = columns[node.ctx].center;
    // Stacked upwards from the row line (the token labels are just below it).
    y[node.i] = baseY - (subRows > 1 ? side / 2 + 1 : 0) - (node.ctx % subRows) * (side + 2);
  }
  // How far the lowest square reaches below the row line (the token labels start below it).
  return { half: side / 2, bottom: subRows > 1 ? -1 : side / 2 };
}
