// Collaboration: shared feature labels (one per feature of a transcoder set, shown on every graph
// with that feature), notes, live updates (EventSource on /api/graphs/{id}/live), share links, and
// the display name this browser writes under and the write token (both kept by lib/api.js, which
// sends them with each request).
//
// Everything users wrote is put on the page with textContent (lib/dom.js `el` makes text nodes),
// never as HTML.

import { displayName, getJSON, postJSON, putJSON, setDisplayName, setWriteToken, writeToken } from "../lib/api.js";
import { el } from "../lib/dom.js";

/** The item as it is now, when a write lost to someone else's (a 409 answer); else null. */
function conflictCurrent(err) {
  return (err.conflict && err.body && err.body.current) || null;
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
    const body = await getJSON(`/api/graphs/${graphId}/labels`).catch(() => null);
    if (!body) return;
    let any = false;
    for (const [key, item] of Object.entries(body.labels || {})) any = apply(key, item) || any;
    if (viewId) {
      // A share link shows the labels as they were when it was saved.
      const view = await getJSON(`/api/views/${encodeURIComponent(viewId)}`).catch(() => null);
      if (view) {
        for (const [key, value] of Object.entries(view.labels || {})) {
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
    try {
      const { body } = await putJSON(url, { value, version: current.version || 0 });
      apply(key, body);
      changed();
      return { ok: true };
    } catch (err) {
      const now = conflictCurrent(err);
      if (!now) return { ok: false, message: err.message };
      apply(key, now);
      changed();
      return { ok: false, message: `${now.author || "Someone"} changed this label first: “${now.value}”. Edit again to replace it.` };
    }
  }

  async function history(node) {
    const url = `/api/labels/${encodeURIComponent(transcoders)}/${node.featureLayer}/${node.featureIndex}/history`;
    const body = await getJSON(url).catch(() => null);
    return (body && body.versions) || [];
  }

  async function revert(node, toVersion) {
    const key = featureKeyOf(node);
    const url = `/api/labels/${encodeURIComponent(transcoders)}/${node.featureLayer}/${node.featureIndex}/revert`;
    try {
      const { body } = await postJSON(url, { to_version: toVersion, version: (items.get(key) || {}).version || 0 });
      apply(key, body);
      changed();
      return true;
    } catch (err) {
      const now = conflictCurrent(err);
      if (now) {
        apply(key, now);
        changed();
      }
      return false;
    }
  }

  async function note(target) {
    const body = await getJSON(`/api/graphs/${graphId}/note?target=${encodeURIComponent(target)}`).catch(() => null);
    return body || { value: "", version: 0 };
  }

  /** Save a note; resolves to {ok, item} (the note as saved), or {ok: false, current} when someone
   * else wrote first (current: the note as it is now), or {ok: false, message}. */
  async function saveNote(target, value, version) {
    try {
      const { body } = await putJSON(`/api/graphs/${graphId}/note?target=${encodeURIComponent(target)}`, { value, version });
      return { ok: true, item: body };
    } catch (err) {
      const now = conflictCurrent(err);
      return now ? { ok: false, current: now } : { ok: false, message: err.message };
    }
  }

  // Share saves the view, copies its short link to the clipboard and shows it in a popup (the
  // toolbar keeps its one line).
  function shareTool() {
    const output = el("input#share-link.share-link", { type: "text", readonly: true, "aria-label": "Share link" });
    const status = el("span.share-status.muted", { role: "status" });
    const popup = el("div.popup.share-pop", { hidden: true }, output, status);
    const button = el("button#share", { type: "button", title: "Save this view and copy a short link to it" }, "Share");
    button.addEventListener("click", async () => {
      store.flushUrl();
      const params = new URLSearchParams(location.search);
      params.delete("view");
      const query = params.toString() ? `?${params}` : "";
      let text;
      let ok = false;
      try {
        const { body } = await postJSON("/api/views", { graph_id: graphId, query });
        text = `${location.origin}${body.url}`;
        ok = true;
      } catch (err) {
        text = `Could not save: ${err.message}`;
      }
      popup.hidden = false;
      output.value = text;
      output.select();
      status.textContent = "";
      if (!ok) return;
      try {
        await navigator.clipboard.writeText(text);
        status.textContent = "Copied";
        button.dataset.copied = "1";
      } catch {
        status.textContent = "Press Ctrl+C to copy";
      }
    });
    document.addEventListener("pointerdown", (event) => {
      if (!popup.hidden && !popup.contains(event.target) && event.target !== button) popup.hidden = true;
    });
    return el("div.tool.tool-share", button, popup);
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
    input.value = writeToken();
    input.addEventListener("change", () => setWriteToken(input.value.trim()));
    // Inline style, not `hidden`: the toolbar's `.tool` display rule would override the attribute.
    const tool = el("div.tool", { style: { display: "none" } }, el("label", { for: "write-token" }, "Token"), input);
    getJSON("/api/me")
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
