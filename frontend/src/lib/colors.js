// Colours shared by the panels (chosen for contrast on white; edges use the PRGn ends researchers
// know from the attribution-graph viewers: green excites, purple inhibits).
import { interpolateOranges } from "d3";

export const POS = "#1b7837";
export const NEG = "#762a83";
export const POS_RGB = [27, 120, 55];
export const NEG_RGB = [118, 42, 131];
export const ERROR_FILL = "#b8bec8";
export const EMBED_FILL = "#374151";
export const LOGIT_FILL = "#1e4fd6";

export function activationFill(activation, max) {
  if (activation === null || activation === undefined) return "#fde7cf";
  const a = Math.min(1, Math.abs(activation) / (max || 1));
  return interpolateOranges(0.18 + 0.72 * Math.sqrt(a));
}

export function signColor(w) {
  return w >= 0 ? POS : NEG;
}

export function rgba([r, g, b], a) {
  return `rgba(${r},${g},${b},${a.toFixed(3)})`;
}
