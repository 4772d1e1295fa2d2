// The JSON API (backend/attrgraph/api): every request of the explorer goes through here.
//
//   getJSON / postJSON / putJSON / deleteJSON   JSON in and out; a failed request throws an ApiError
//                                               carrying the server's `detail`, the HTTP status and
//                                               the parsed body (a 409 holds `current`)
//   followJob                                   a worker job followed over Server-Sent Events
//
// Each request carries who is asking: the display name this browser writes under and, where the
// server requires tokens for writes, the write token (both kept in localStorage).

const NAME_KEY = "attrgraph.displayName";
const TOKEN_KEY = "attrgraph.token";

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: no answer from the server
    this.body = body;
  }

  /** Someone else wrote first: the server's body holds the item as it is now. */
  get conflict() {
    return this.status === 409;
  }
}

function stored(key) {
  try {
    return localStorage.getItem(key) || "";
  } catch {
    return ""; // no storage
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* private mode: the value lasts for this page only */
  }
}

export const displayName = () => stored(NAME_KEY);
export const setDisplayName = (name) => store(NAME_KEY, name);
export const writeToken = () => stored(TOKEN_KEY);
export const setWriteToken = (token) => store(TOKEN_KEY, token);

function headersFor(hasBody) {
  const headers = { Accept: "application/json" };
  if (hasBody) headers["Content-Type"] = "application/json";
  const name = displayName();
  if (name) headers["X-Attrgraph-User"] = encodeURIComponent(name);
  const token = writeToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

function detailOf(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => `${(d.loc || []).filter((x) => x !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return `request failed (${status})`;
}

/** One request: {status, body} for a 2xx answer, else an ApiError. */
export async function request(method, url, body) {
  const init = { method, headers: headersFor(body !== undefined) };
  if (body !== undefined) init.body = JSON.stringify(body);
  return send(url, init);
}

/** POST a JSON document as it is (a file's text, not parsed and encoded again). */
export const postFile = (url, text) => send(url, { method: "POST", headers: headersFor(true), body: text });

async function send(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "the server did not answer (is it running?)");
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, detailOf(parsed, response.status), parsed);
  return { status: response.status, body: parsed };
}

export const getJSON = async (url) => (await request("GET", url)).body;
export const postJSON = (url, body) => request("POST", url, body);
export const putJSON = (url, body) => request("PUT", url, body);
export const deleteJSON = (url) => request("DELETE", url);

// --- Jobs -------------------------------------------------------------------------------------

const TERMINAL = ["done", "failed", "cancelled"];
const STEPS = ["queued", "started", "requeued", "progress"];
const MAX_REOPENS = 5; // fresh streams after the browser gave up on one, while the job is still live

/** A job that ended without a result: an ApiError whose `state` is "failed" or "cancelled". */
function jobError(state, message) {
  const err = new ApiError(422, message || (state === "cancelled" ? "cancelled" : "unknown error"));
  err.state = state;
  return err;
}

/**
 * Follow a job (the 202 answer of POST /api/graphs or /api/interventions: job_id, events_url,
 * job_url) until it ends. onEvent(name, data) for each step: queued {position}, started, requeued,
 * progress {phase, percent, done, total}. Resolves with the `done` event's data; rejects with an
 * ApiError when the job fails or is cancelled (status 422, `state` "failed" or "cancelled"), is gone
 * (404), or when `signal` aborts (the stream is then closed; the job itself runs on).
 *
 * A dropped stream is handled here: EventSource reconnects by itself, resuming after the last
 * event it saw (Last-Event-ID). Should the browser give up on the stream instead (an error answer
 * on reconnecting), the job's state is read once: a finished job settles the promise, a live one
 * gets a fresh stream (from the start: the events replay, so nothing is missed).
 */
export function followJob(accepted, { onEvent = () => {}, signal } = {}) {
  const eventsUrl = accepted.events_url || `/api/jobs/${accepted.job_id}/events`;
  const jobUrl = accepted.job_url || `/api/jobs/${accepted.job_id}`;
  return new Promise((resolve, reject) => {
    let source = null;
    let settled = false;
    let reopens = 0;

    const settle = (fn, value) => {
      if (settled) return;
      settled = true;
      if (source) source.close();
      signal?.removeEventListener("abort", abort);
      fn(value);
    };
    const abort = () => settle(reject, new ApiError(0, "stopped following the job"));
    const parse = (event) => {
      try {
        return event.data ? JSON.parse(event.data) : {};
      } catch {
        return {};
      }
    };

    async function finished(state, data) {
      if (state === "done") return settle(resolve, data);
      let message = data.message || "";
      if (state === "failed" && !message) {
        // The server's closing event for a job that ended without one of its own has no message.
        try {
          message = (await getJSON(jobUrl)).error || "";
        } catch {
          /* keep the generic message */
        }
      }
      settle(reject, jobError(state, message));
    }

    async function recheck() {
      try {
        const job = await getJSON(jobUrl);
        if (settled) return;
        if (TERMINAL.includes(job.state)) return finished(job.state, { ...job, message: job.error });
        if (reopens++ >= MAX_REOPENS) return settle(reject, new ApiError(0, "lost the job's progress stream"));
        setTimeout(open, 1000 * reopens);
      } catch (err) {
        settle(reject, err);
      }
    }

    function open() {
      if (settled) return;
      const stream = new EventSource(eventsUrl);
      source = stream;
      for (const name of STEPS) stream.addEventListener(name, (e) => !settled && onEvent(name, parse(e)));
      for (const name of TERMINAL) {
        stream.addEventListener(name, (e) => {
          stream.close(); // the job is over: no reconnecting while `finished` reads its error
          finished(name, parse(e));
        });
      }
      stream.onerror = () => {
        // CONNECTING: the browser is reconnecting by itself. CLOSED: it gave up on this stream.
        if (stream.readyState === EventSource.CLOSED && !settled) recheck();
      };
    }

    if (signal?.aborted) return abort();
    signal?.addEventListener("abort", abort);
    open();
  });
}
