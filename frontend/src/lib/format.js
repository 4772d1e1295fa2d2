// Number and token formatting shared by the panels.

export function pct(p, digits = 0) {
  if (p === null || p === undefined || !Number.isFinite(p)) return "–";
  const v = p * 100;
  if (v > 0 && v < 1 && digits === 0) return "<1%";
  return `${v.toFixed(digits)}%`;
}

export function num(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e4 || a < 10 ** -digits)) return x.toExponential(1);
  return x.toFixed(digits);
}

export function signed(x, digits = 2) {
  if (!Number.isFinite(x)) return "–";
  return (x > 0 ? "+" : x < 0 ? "−" : "") + num(Math.abs(x), digits);
}

/** A token as shown in chips: whitespace made visible, never empty. */
export function tokenText(t) {
  if (t === null || t === undefined) return "";
  const s = String(t).replace(/\n/g, "⏎").replace(/\t/g, "→").replace(/\r/g, "↵");
  return s.length ? s : "∅";
}

/** A token in quotes, leading space shown as a dot so " Dallas" and "Dallas" differ visibly. */
export function quoted(t) {
  return `“${tokenText(t).replace(/^ /, "·")}”`;
}

export function relativeTime(seconds) {
  const ago = Date.now() / 1000 - seconds;
  if (ago < 60) return "just now";
  if (ago < 3600) return `${Math.round(ago / 60)} min ago`;
  if (ago < 86400) return `${Math.round(ago / 3600)} h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

export function plural(n, word, many = word + "s") {
  return `${n.toLocaleString()} ${n === 1 ? word : many}`;
}
