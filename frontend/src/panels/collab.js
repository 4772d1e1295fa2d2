// Collaboration: shared feature labels (one per feature of a transcoder set, shown on every graph
// with that feature), notes, live updates (EventSource on /api/graphs/{id}/live), share links, and
// the display name this browser writes under (kept in localStorage).
//
// Everything users wrote is put on the page with textContent (lib/dom.js `el` makes text nodes),
// never as HTML.

import { el } from "../lib/dom.js";

const NAME_KEY = "attrgraph.displayName";

export function displayName() {
  try {
    return localStorage.getItem(NAME_KEY) || "";
  } catch {
    return "";
  }
}

function setDisplayName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    /* private mode: the name lasts for this page only */
  }
}

function authHeaders() {
  const headers = { Accept: "application/json", "Content-Type": "application/json" };
  const name = displayName();
  if (name) headers["X-Attrgraph-User"] = encodeURIComponent(name);
  try {
    const token = localStorage.getItem("attrgraph.token");
    if (token) headers.Authorization = `Bearer ${token}`;
  } catch {
    /* no storage */
  }
  return headers;
}

async function send(method, url, body) {
  const response = await fetch(url, { method, headers: authHeaders(), body: body === undefined ? undefined : JSON.stringify(body) });
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  return { status: response.status, body: parsed };
}

function featureKeyOf(node) {
  return `${node.featureLayer}_${node.featureIndex}`;
}

export function createCollab({ graph, store, graphId, transcoders, toolbar, viewId }) {
  const items = new Map(); // feature key -> label item {value, version, author, time}
  const listeners = new Set();

  function apply(key, item) {
    items.set(key, item);
    const nodes = graph.byFeature.get(key) || [];
    for (const node of nodes) {
      if (node.defaultLabel === undefined) node.defaultLabel = node.label;
      node.label = item.value || node.defaultLabel;
      node.sharedLabel = !!item.value;
    }
    return nodes.length > 0;
  }

  function changed() {
    store.set({ labelEpoch: store.get().labelEpoch + 1 });
    for (const fn of listeners) fn();
  }

  async function load() {
    const { status, body } = await send("GET", `/api/graphs/${graphId}/labels`);
    if (status !== 200 || !body) return;
    let any = false;
    for (const [key, item] of Object.entries(body.labels || {})) any = apply(key, item) || any;
    if (viewId) {
      // A share link shows the labels as they were when it was saved.
      const view = await send("GET", `/api/views/${encodeURIComponent(viewId)}`);
      if (view.status === 200 && view.body) {
        for (const [key, value] of Object.entries(view.body.labels || {})) {
          any = apply(key, { ...(items.get(key) || { version: 0 }), value }) || any;
        }
      }
    }
    if (any) changed();
  }

  function connect() {
    if (typeof EventSource === "undefined") return;
    const source = new EventSource(`/api/graphs/${graphId}/live`);
    source.addEventListener("label", (event) => {
      const item = JSON.parse(event.data);
      if (item.scope !== transcoders) return;
      if (apply(item.key, item)) changed();
    });
    source.addEventListener("note", () => {
      for (const fn of listeners) fn();
    });
    source.addEventListener("ready", () => (document.body.dataset.live = "1"));
    source.onerror = () => delete document.body.dataset.live; // EventSource reconnects by itself
    window.addEventListener("pagehide", () => source.close());
  }

  /** Save a shared label; resolves to {ok, message}. A conflict shows the other person's value. */
  async function saveLabel(node, value) {
    const key = featureKeyOf(node);
    const current = items.get(key) || { version: 0 };
    const url = `/api/labels/${encodeURIComponent(transcoders)}/${node.featureLayer}/${node.featureIndex}`;
    const { status, body } = await send("PUT", url, { value, version: current.version || 0 });
    if (status === 200) {
      apply(key, body);
      changed();
      return { ok: true };
    }
    if (status === 409 && body && body.current) {
      apply(key, body.current);
      changed();
      return { ok: false, message: `${body.current.author || "Someone"} changed this label first: “${body.current.value}”. Edit again to replace it.` };
    }
    return { ok: false, message: (body && typeof body.detail === "string" && body.detail) || `could not save (${status})` };
  }

  async function history(node) {
    const url = `/api/labels/${encodeURIComponent(transcoders)}/${node.featureLayer}/${node.featureIndex}/history`;
    const { body } = await send("GET", url);
    return (body && body.versions) || [];
  }

  async function revert(node, toVersion) {
    const key = featureKeyOf(node);
    const url = `/api/labels/${encodeURIComponent(transcoders)}/${node.featureLayer}/${node.featureIndex}/revert`;
    const { status, body } = await send("POST", url, { to_version: toVersion, version: (items.get(key) || {}).version || 0 });
    if (status === 200 || (status === 409 && body && body.current)) {
      apply(key, status === 200 ? body : body.current);
      changed();
    }
    return status === 200;
  }

  async function note(target) {
    const { body } = await send("GET", `/api/graphs/${graphId}/note?target=${encodeURIComponent(target)}`);
    return body || { value: "", version: 0 };
  }

  async function saveNote(target, value, version) {
    return send("PUT", `/api/graphs/${graphId}/note?target=${encodeURIComponent(target)}`, { value, version });
  }

  function shareTool() {
    const output = el("input#share-link.share-link", { type: "text", readonly: true, "aria-label": "Share link", hidden: true });
    const button = el("button#share.link-button", { type: "button", title: "Save this view and copy a short link to it" }, "Share");
    button.addEventListener("click", async () => {
      store.flushUrl();
      const params = new URLSearchParams(location.search);
      params.delete("view");
      const query = params.toString() ? `?${params}` : "";
      const { status, body } = await send("POST", "/api/views", { graph_id: graphId, query });
      output.hidden = false;
      output.value = status === 201 ? `${location.origin}${body.url}` : `Could not save: ${(body && body.detail) || status}`;
      output.select();
    });
    return el("div.tool", button, output);
  }

  function nameTool() {
    const input = el("input#display-name.name-input", {
      type: "text",
      maxlength: 64,
      placeholder: "your name",
      value: displayName(),
      "aria-label": "Your display name (shown on your edits)",
      size: 12,
    });
    input.addEventListener("change", () => setDisplayName(input.value.trim()));
    return el("div.tool", el("label", { for: "display-name" }, "Name"), input);
  }

  // Shown only where the server requires tokens for writes (ATTRGRAPH_TOKENS); kept in localStorage.
  function tokenTool() {
    const input = el("input#write-token.name-input", {
      type: "password",
      autocomplete: "off",
      placeholder: "write token",
      "aria-label": "Your write token (this server requires one to save labels and notes)",
      size: 12,
    });
    try {
      input.value = localStorage.getItem("attrgraph.token") || "";
    } catch {
      /* no storage */
    }
    input.addEventListener("change", () => {
      try {
        localStorage.setItem("attrgraph.token", input.value.trim());
      } catch {
        /* private mode: the token lasts for this page only */
      }
    });
    // Inline style, not `hidden`: the toolbar's `.tool` display rule would override the attribute.
    const tool = el("div.tool", { style: { display: "none" } }, el("label", { for: "write-token" }, "Token"), input);
    fetch("/api/me", { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((me) => {
        if (me && me.tokens) tool.style.display = "";
      })
      .catch(() => {});
    return tool;
  }

  if (toolbar) toolbar.append(nameTool(), tokenTool(), shareTool());
  load();
  connect();
  return {
    saveLabel,
    history,
    revert,
    note,
    saveNote,
    itemFor: (node) => items.get(featureKeyOf(node)),
    onChange: (fn) => listeners.add(fn),
  };
}
