// Open a graph JSON file from the home page: a file picker, or a file dropped anywhere on the
// page. The file is stored through POST /api/imports (attrgraph, circuit-tracer or Neuronpedia
// format, docs/graph-format.md), then the page goes to the new graph.

import { getJSON, postFile } from "./api.js";

/** Query parameters for the import: a graph that names a model this server runs but no
 * transcoder set is read against that model's default set (its dashboards and labels). */
async function importParams(doc) {
  const meta = (doc && doc.metadata) || {};
  if (meta.transcoder_set || typeof meta.scan !== "string") return "";
  try {
    const { models } = await getJSON("/api/models");
    const model = (models || []).find((m) => m.name === meta.scan);
    if (model) return `?model=${encodeURIComponent(model.name)}&transcoders=${encodeURIComponent(model.default_transcoders)}`;
  } catch {
    /* the import names them itself */
  }
  return "";
}

export function initOpenGraph({ input, status, dropTarget = document.body }) {
  let busy = false;

  function say(text, kind = "") {
    status.textContent = text;
    status.dataset.kind = kind;
  }

  async function open(file) {
    if (!file || busy) return;
    busy = true;
    say(`Reading ${file.name}…`);
    try {
      const text = await file.text();
      let doc;
      try {
        doc = JSON.parse(text);
      } catch {
        throw new Error(`${file.name} is not a JSON file`);
      }
      if (!doc || typeof doc !== "object" || !Array.isArray(doc.nodes)) throw new Error(`${file.name} is not a graph (no "nodes" list)`);
      say(`Storing ${file.name}…`);
      const { body } = await postFile(`/api/imports${await importParams(doc)}`, text);
      say("Opening the graph…", "ok");
      location.assign(`/graph/${body.graph_id}`);
    } catch (err) {
      say(`Could not open ${file.name}: ${err.message}`, "error");
    } finally {
      busy = false;
      input.value = "";
    }
  }

  input.addEventListener("change", () => open(input.files && input.files[0]));

  // Drag and drop: the page shows where to drop while a file is over it.
  let depth = 0;
  const hasFile = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  dropTarget.addEventListener("dragenter", (event) => {
    if (!hasFile(event)) return;
    event.preventDefault();
    depth++;
    dropTarget.classList.add("dropping");
  });
  dropTarget.addEventListener("dragover", (event) => {
    if (!hasFile(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  dropTarget.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dropTarget.classList.remove("dropping");
  });
  dropTarget.addEventListener("drop", (event) => {
    if (!hasFile(event)) return;
    event.preventDefault();
    depth = 0;
    dropTarget.classList.remove("dropping");
    open(event.dataTransfer.files[0]);
  });
  return { open };
}
