// Link-graph layout: token positions along x, layers along y (embeddings at the bottom, output
// logits on top). Each position's column is as wide as its busiest layer needs (a position with no
// node but its token gets a narrow column); the nodes of one (layer, position) cell spread evenly
// across the column, most influential first, and a crowded cell staggers its nodes over a few
// sub-rows so they stay apart. The top margin holds the output labels, the bottom one the token
// labels (panels/linkgraph.js places both so that none overlaps another).

import { compareNodes } from "./graphdata.js";

export const MARGIN = { top: 84, right: 28, bottom: 70, left: 40 };
const MIN_SPACING = 9; // px between node centres before a cell staggers into sub-rows

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
  const rows = [];
  for (let layer = -1; layer <= graph.nLayers; layer++) {
    rows.push({
      layer,
      y: rowY(layer),
      label: layer === -1 ? "Emb" : layer === graph.nLayers ? "Out" : `L${layer}`,
    });
  }
  return { x, y, columns, rows, width, height, rowH };
}
