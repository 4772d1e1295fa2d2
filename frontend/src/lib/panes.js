// The graph page's panes: resizable gutters (drag or arrow keys), collapsible panels, a maximised
// panel (the link graph full-window, the feature dashboard and the subgraph large), and the
// interventions column that takes no room until it is opened. Sizes are kept in localStorage.
//
// The workspace is a CSS grid (styles/graph.css) whose track sizes are custom properties:
//   --side-w  the connections + feature column      --iv-w   the interventions column
//   --sub-h   the subgraph row under the graph      --conn-f the connections share of the side column

import { el } from "./dom.js";

const KEY = "attrgraph.panes";
const LIMITS = {
  side: { prop: "--side-w", min: 260, max: 900, axis: "x", sign: -1 },
  iv: { prop: "--iv-w", min: 260, max: 800, axis: "x", sign: -1 },
  sub: { prop: "--sub-h", min: 120, max: 2000, axis: "y", sign: -1 },
  conn: { prop: "--conn-f", min: 0.1, max: 0.9, axis: "y", sign: 1, fraction: true },
};

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "{}") || {};
  } catch {
    return {};
  }
}

function save(sizes) {
  try {
    localStorage.setItem(KEY, JSON.stringify(sizes));
  } catch {
    /* no storage: sizes last for this page */
  }
}

/** Default sizes for this window: the graph gets most of it. */
function defaults() {
  const w = window.innerWidth;
  const h = window.innerHeight;
  return {
    side: Math.round(Math.min(460, Math.max(280, w * 0.235))),
    iv: Math.round(Math.min(440, Math.max(280, w * 0.22))),
    sub: Math.round(Math.max(220, h * 0.36)),
    conn: 0.4,
  };
}

export function createPanes(explorer) {
  const workspace = explorer.querySelector("#workspace");
  const sizes = { ...defaults(), ...load() };
  const collapsed = new Set();
  const listeners = [];
  let maxed = null;
  const backdrop = el("div.max-backdrop", { hidden: true, onclick: () => maximize(null) });
  document.body.append(backdrop);

  function apply() {
    for (const [name, spec] of Object.entries(LIMITS)) {
      const v = Math.min(spec.max, Math.max(spec.min, sizes[name]));
      workspace.style.setProperty(spec.prop, spec.fraction ? `${v.toFixed(3)}fr` : `${v}px`);
    }
    workspace.style.setProperty("--feat-f", `${(1 - Math.min(0.9, Math.max(0.1, sizes.conn))).toFixed(3)}fr`);
  }

  function notify() {
    for (const fn of listeners) fn();
  }

  // -- gutters ------------------------------------------------------------------------------------
  for (const gutter of workspace.querySelectorAll(".gutter")) {
    const name = gutter.dataset.split;
    const spec = LIMITS[name];
    const change = (delta) => {
      if (spec.fraction) {
        const column = gutter.parentElement.getBoundingClientRect();
        sizes[name] = Math.min(spec.max, Math.max(spec.min, sizes[name] + delta / Math.max(1, column.height)));
      } else {
        sizes[name] = Math.min(spec.max, Math.max(spec.min, sizes[name] + spec.sign * delta));
      }
      apply();
    };
    gutter.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      gutter.setPointerCapture(event.pointerId);
      gutter.classList.add("dragging");
      let last = spec.axis === "x" ? event.clientX : event.clientY;
      const move = (e) => {
        const now = spec.axis === "x" ? e.clientX : e.clientY;
        change(now - last);
        last = now;
      };
      const up = () => {
        gutter.removeEventListener("pointermove", move);
        gutter.classList.remove("dragging");
        save(sizes);
        notify();
      };
      gutter.addEventListener("pointermove", move);
      gutter.addEventListener("pointerup", up, { once: true });
      gutter.addEventListener("pointercancel", up, { once: true });
    });
    gutter.addEventListener("keydown", (event) => {
      const step = event.shiftKey ? 60 : 16;
      const keys = spec.axis === "x" ? { ArrowLeft: -step, ArrowRight: step } : { ArrowUp: -step, ArrowDown: step };
      if (!(event.key in keys)) return;
      event.preventDefault();
      event.stopPropagation();
      change(keys[event.key]);
      save(sizes);
    });
    gutter.addEventListener("dblclick", () => {
      sizes[name] = defaults()[name];
      apply();
      save(sizes);
    });
  }

  // -- collapse and maximise ------------------------------------------------------------------------
  function setCollapsed(id, on) {
    const panel = document.getElementById(id);
    if (!panel) return;
    if (on) collapsed.add(id);
    else collapsed.delete(id);
    panel.classList.toggle("is-collapsed", on);
    workspace.classList.toggle(`${id}-collapsed`, on);
    const button = panel.querySelector(".pc-collapse");
    if (button) {
      button.setAttribute("aria-expanded", String(!on));
      button.textContent = on ? "▸" : "▾";
      button.title = on ? "Expand" : "Collapse";
    }
    notify();
  }

  function maximize(id) {
    if (maxed) {
      const old = document.getElementById(maxed);
      old.classList.remove("is-max");
      const b = old.querySelector(".pc-max");
      if (b) {
        b.setAttribute("aria-pressed", "false");
        b.textContent = "⤢";
      }
    }
    maxed = id && id !== maxed ? id : null;
    backdrop.hidden = !maxed;
    document.body.classList.toggle("has-max", !!maxed);
    if (maxed) {
      const panel = document.getElementById(maxed);
      if (collapsed.has(maxed)) setCollapsed(maxed, false);
      panel.classList.add("is-max");
      const b = panel.querySelector(".pc-max");
      if (b) {
        b.setAttribute("aria-pressed", "true");
        b.textContent = "✕";
      }
    }
    notify();
  }

  /** Collapse and maximise buttons in a panel's top-right corner. */
  function controls(id, { collapse = true, maxTitle = "Enlarge", name = "" } = {}) {
    const panel = document.getElementById(id);
    const box = el("div.panel-controls");
    if (name) panel.append(el("div.panel-collapsed-title", { "aria-hidden": "true" }, name));
    if (collapse) {
      box.append(
        el("button.pc-collapse", { type: "button", id: `${id}-collapse`, "aria-expanded": "true", title: "Collapse", onclick: () => setCollapsed(id, !collapsed.has(id)) }, "▾"),
      );
    }
    box.append(el("button.pc-max", { type: "button", id: `${id}-max`, "aria-pressed": "false", title: maxTitle, onclick: () => maximize(id) }, "⤢"));
    panel.append(box);
  }

  function setInterventions(open) {
    explorer.classList.toggle("iv-open", open);
    const toggle = document.getElementById("iv-toggle");
    if (toggle) toggle.setAttribute("aria-pressed", String(open));
    notify();
  }

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && maxed) {
      maximize(null);
      event.stopImmediatePropagation();
    }
  }, true);

  window.addEventListener("resize", () => apply());
  apply();
  return {
    controls,
    setCollapsed,
    isCollapsed: (id) => collapsed.has(id),
    maximize,
    maximized: () => maxed,
    setInterventions,
    interventionsOpen: () => explorer.classList.contains("iv-open"),
    onChange: (fn) => listeners.push(fn),
  };
}
