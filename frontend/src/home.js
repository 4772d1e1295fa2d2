// The home page: prompt box (or, with "Chat", a list of messages the model's chat template renders),
// model picker, token preview with the top next-token predictions, submit, live progress (queue
// position, phases) over Server-Sent Events, then the graph page. And a list of recent graphs.
import "./styles/base.css";
import "./styles/home.css";

import { clear, debounce, el, pageData } from "./lib/dom.js";
import { deleteJSON, followJob, getJSON, postJSON } from "./lib/api.js";
import { pct, plural, tokenText } from "./lib/format.js";
import { renderRecent } from "./lib/recent.js";
import { initOpenGraph } from "./lib/opengraph.js";

// Where each phase of a trace sits on the overall progress bar.
const PHASES = {
  queued: { label: "Queued", from: 0, to: 0 },
  started: { label: "Starting", from: 0, to: 2 },
  forward: { label: "Forward pass", from: 2, to: 10 },
  logits: { label: "Choosing outputs", from: 10, to: 14 },
  features: { label: "Attributing features", from: 14, to: 92 },
  prune: { label: "Pruning", from: 92, to: 100 },
  done: { label: "Done", from: 100, to: 100 },
};

const $ = (id) => document.getElementById(id);

function initHome() {
  const form = $("trace-form");
  const prompt = $("prompt");
  const modelSelect = $("model-select");
  const modelStatus = $("model-status");
  const tokensBox = $("tokens");
  const predictionsBox = $("predictions");
  const formError = $("form-error");
  const submit = $("submit");
  const progress = $("progress");
  const phaseText = $("progress-phase");
  const detailText = $("progress-detail");
  const fill = $("progress-fill");
  const track = progress.querySelector(".progress-track");
  const cancel = $("cancel");
  let models = [];
  let job = null; // {jobId, graphId}: the job being followed
  let previewSeq = 0;

  const params = new URLSearchParams(location.search);
  if (params.get("prompt")) prompt.value = params.get("prompt");
  const chat = chatEditor(prompt, () => preview());

  // What to trace: the prompt text, or the chat's messages (null when there is nothing to trace).
  function promptValue() {
    if (chat.on()) {
      const messages = chat.messages();
      return messages.some((m) => m.content.trim()) ? messages : null;
    }
    return prompt.value.trim() ? prompt.value : null;
  }

  async function loadModels() {
    try {
      const list = await getJSON("/api/models");
      models = list.models || [];
      clear(modelSelect);
      for (const m of models) {
        modelSelect.append(el("option", { value: m.name, selected: m.name === (params.get("model") || list.default_model) }, m.name + (m.default ? " (default)" : "")));
      }
      modelSelect.disabled = !models.length;
      modelStatus.textContent = models.length ? `${plural(models.reduce((a, m) => a + m.workers, 0), "worker")} ready` : "waiting for a worker to start…";
      if (!models.length) setTimeout(loadModels, 2000);
      else preview();
    } catch (err) {
      modelStatus.textContent = err.message;
      setTimeout(loadModels, 3000);
    }
  }

  const preview = debounce(async () => {
    const text = promptValue();
    const seq = ++previewSeq;
    if (!text || !models.length) {
      clear(tokensBox);
      clear(predictionsBox);
      return;
    }
    predictionsBox.classList.add("stale");
    try {
      const { body } = await postJSON("/api/tokenize", { prompt: text, model: modelSelect.value || null, top_k: 8 });
      if (seq !== previewSeq) return;
      renderPreview(body);
    } catch (err) {
      if (seq !== previewSeq) return;
      clear(tokensBox);
      clear(predictionsBox);
      tokensBox.append(el("span.error", err.message));
    } finally {
      if (seq === previewSeq) predictionsBox.classList.remove("stale");
    }
  }, 300);

  function renderPreview(body) {
    clear(tokensBox);
    clear(predictionsBox);
    const over = body.tokens.length > body.max_prompt_tokens;
    tokensBox.append(
      el("span.muted.small", `${plural(body.tokens.length, "token")}${over ? ` (this server traces at most ${body.max_prompt_tokens})` : ""}: `),
      ...body.tokens.map((t) => el("span.token-chip", { title: `id ${t.id}` }, tokenText(t.text).replace(/^ /, "·"))),
    );
    if (body.estimate) tokensBox.append(estimateNote(body.estimate));
    if (body.predictions.length) {
      predictionsBox.append(el("span.muted.small", "Next token: "));
      const list = el("ol.prediction-list", { "aria-label": "Top next-token predictions" });
      for (const p of body.predictions) {
        list.append(
          el(
            "li",
            el(
              "button.prediction",
              { type: "button", title: "Explain this token", onclick: () => ($("target-token").value = p.text) },
              el("span.pred-token", tokenText(p.text).replace(/^ /, "·")),
              el("span.pred-bar", { "aria-hidden": "true" }, el("span", { style: { width: `${Math.max(2, p.probability * 100).toFixed(1)}%` } })),
              el("span.pred-p", pct(p.probability, 1)),
            ),
          ),
        );
      }
      predictionsBox.append(list);
    }
  }

  // The worker's prediction for tracing this prompt with the server's defaults (engine/estimate.py).
  function estimateNote(e) {
    const gib = (e.peak_bytes / 2 ** 30).toFixed(e.peak_bytes < 2 ** 30 ? 2 : 1);
    const secs = e.seconds < 10 ? e.seconds.toFixed(1) : Math.round(e.seconds);
    const text = `Estimate: ${gib} GiB, about ${secs} s` + (e.fits === false ? ` — does not fit this worker (${(e.budget_bytes / 2 ** 30).toFixed(1)} GiB): ${e.advice}` : "");
    return el(e.fits === false ? "div.small.estimate.error" : "div.muted.small.estimate", { title: `largest memory term: ${e.dominant}; batch ${e.batch_size}` }, text);
  }

  function settingsFromForm() {
    const settings = {};
    const maxNodes = $("max-nodes").value;
    if (maxNodes) settings.max_feature_nodes = Math.round(+maxNodes);
    for (const [id, key, def] of [["node-threshold", "node_threshold", 0.8], ["edge-threshold", "edge_threshold", 0.98]]) {
      const v = parseFloat($(id).value);
      if (Number.isFinite(v) && v !== def) settings[key] = v;
    }
    return settings;
  }

  function setProgress(phase, percent, detail) {
    const p = PHASES[phase] || { label: phase, from: 0, to: 100 };
    const overall = p.from + ((p.to - p.from) * (percent || 0)) / 100;
    phaseText.textContent = p.label;
    detailText.textContent = detail || "";
    fill.style.width = `${overall.toFixed(1)}%`;
    track.setAttribute("aria-valuenow", overall.toFixed(0));
    progress.dataset.phase = phase;
  }

  function busy(on) {
    submit.disabled = on;
    prompt.readOnly = on;
    progress.hidden = !on && !progress.dataset.keep;
  }

  function openGraph(graphId) {
    setProgress("done", 100, "opening the graph…");
    location.assign(`/graph/${graphId}`);
  }

  async function follow(accepted) {
    job = { jobId: accepted.job_id, graphId: accepted.graph_id };
    const waiting = "waiting for the worker to load the model";
    setProgress("queued", 0, !models.length ? waiting : accepted.position ? `${plural(accepted.position, "job")} ahead` : accepted.joined ? "joined an identical request" : "next in line");
    const steps = {
      queued: (d) => setProgress("queued", 0, d.waiting_for_worker ? waiting : d.position ? `${plural(d.position, "job")} ahead` : "next in line"),
      started: () => setProgress("started", 0, ""),
      requeued: () => setProgress("queued", 0, "the worker stopped; waiting for another"),
      progress: (d) => setProgress(d.phase, d.percent, d.total > 1 ? `${d.done.toLocaleString()} / ${d.total.toLocaleString()}` : ""),
    };
    try {
      const done = await followJob(accepted, { onEvent: (name, data) => steps[name](data) });
      job = null;
      openGraph(done.graph_id || accepted.graph_id);
    } catch (err) {
      job = null;
      busy(false);
      formError.textContent = err.state === "cancelled" ? "Cancelled." : err.state === "failed" ? `Tracing failed: ${err.message}` : err.message;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError.textContent = "";
    const text = promptValue();
    if (!text) {
      formError.textContent = chat.on() ? "Write a message first." : "Enter a prompt first.";
      (chat.on() ? chat.focus : () => prompt.focus())();
      return;
    }
    const body = { prompt: text, settings: settingsFromForm() };
    if (modelSelect.value) body.model = modelSelect.value;
    const target = $("target-token").value;
    if (target) body.target = { tokens: [target] };
    busy(true);
    setProgress("queued", 0, "submitting…");
    try {
      const { status, body: reply } = await postJSON("/api/graphs", body);
      if (status === 200) openGraph(reply.graph_id);
      else follow(reply);
    } catch (err) {
      busy(false);
      formError.textContent = err.message;
    }
  });

  cancel.addEventListener("click", async () => {
    if (!job) return;
    try {
      await deleteJSON(`/api/jobs/${job.jobId}`);
    } catch (err) {
      formError.textContent = err.message;
    }
  });

  prompt.addEventListener("input", preview);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  modelSelect.addEventListener("change", preview);

  loadModels();
  loadRecent();
  initOpenGraph({ input: $("open-file"), status: $("open-status") });
}

// The "Chat" toggle: the prompt box becomes a list of messages (role + content), sent as the API's
// chat prompt and rendered by the model's chat template on the server.
function chatEditor(prompt, changed) {
  const ROLES = ["system", "user", "assistant"];
  const list = el("ol.chat-messages", { "aria-label": "Chat messages", style: { listStyle: "none", padding: "0", margin: "0" } });
  const add = el("button.link-button#chat-add", { type: "button", onclick: () => addMessage(lastRole() === "user" ? "assistant" : "user", "", true) }, "+ Add message");
  const box = el("div#chat-editor", { hidden: true }, list, add);
  const toggle = el("input#chat-toggle", { type: "checkbox" });
  const label = el("label.small", { for: "chat-toggle", title: "Write the prompt as chat messages, rendered with the model's chat template (instruct models)" }, toggle, " Chat");
  document.querySelector("label[for=prompt]").after(label);
  prompt.after(box);

  function lastRole() {
    const roles = list.querySelectorAll("select");
    return roles.length ? roles[roles.length - 1].value : null;
  }

  function addMessage(role, content, focus) {
    const select = el("select.chat-role", { "aria-label": "Role", onchange: changed }, ...ROLES.map((r) => el("option", { value: r, selected: r === role }, r)));
    const text = el("textarea.chat-content", { rows: 2, "aria-label": "Message", spellcheck: "false", style: { width: "100%" }, oninput: changed });
    text.value = content;
    const item = el(
      "li.chat-message",
      { style: { display: "flex", gap: "6px", alignItems: "flex-start", marginBottom: "6px" } },
      select,
      text,
      el("button.link-button", { type: "button", title: "Remove this message", "aria-label": "Remove message", onclick: () => { item.remove(); changed(); } }, "×"),
    );
    list.append(item);
    if (focus) text.focus();
    changed();
  }

  toggle.addEventListener("change", () => {
    box.hidden = !toggle.checked;
    prompt.hidden = toggle.checked;
    prompt.required = !toggle.checked;
    if (toggle.checked && !list.children.length) addMessage("user", prompt.value, true);
    else changed();
  });

  return {
    on: () => toggle.checked,
    messages: () => [...list.children].map((li) => ({ role: li.querySelector("select").value, content: li.querySelector("textarea").value })),
    focus: () => list.querySelector("textarea")?.focus(),
  };
}

async function loadRecent() {
  const list = $("recent-list");
  try {
    const { graphs } = await getJSON("/api/graphs?limit=20");
    if (!renderRecent(list, graphs)) list.replaceWith(el("p.muted#recent-list", "No graphs yet: trace a prompt above, or open a graph file."));
  } catch (err) {
    clear(list);
    list.append(el("li.error", `Could not list graphs: ${err.message}`));
  }
}

if (pageData().page === "home") initHome();
