"""A small Python client for scripting against an attrgraph server.

from attrgraph.client import AttrGraphClient

with AttrGraphClient("http://127.0.0.1:8000") as ag:
    graph = ag.trace("The capital of Texas is", target=" Austin", on_event=print)  # submit, wait, fetch
    chat = ag.trace([{"role": "user", "content": "Name the capital of Texas."}])  # instruct models
    node = ag.node(graph_id, "E_262_0")

A request the server refuses raises ApiError carrying the server's message (`detail`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

EventHandler = Callable[[str, dict[str, Any]], None]
Prompt = str | Sequence[Mapping[str, str]]  # text, or chat messages ({role, content})
TokenRef = str | int  # a token's exact text (" Austin") or its vocabulary id
Target = TokenRef | Sequence[TokenRef] | Mapping[str, Any]


class ApiError(httpx.HTTPStatusError):
    """The server refused a request: `status_code` and the server's own message (`detail`)."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.detail = _detail(response)
        request = response.request
        super().__init__(
            f"{request.method} {request.url.path}: {response.status_code}: {self.detail}",
            request=request,
            response=response,
        )


def _detail(response: httpx.Response) -> str:
    """FastAPI's `detail`: a message, or validation errors as "field: message" (prompt: at most 96 ...)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text.strip() or response.reason_phrase
    if isinstance(detail, list):
        parts = []
        for item in detail:
            where = (
                ".".join(str(p) for p in item.get("loc", []) if p != "body") if isinstance(item, dict) else ""
            )
            message = item.get("msg", item) if isinstance(item, dict) else item
            parts.append(f"{where}: {message}" if where else str(message))
        return "; ".join(parts)
    return str(detail) if detail is not None else response.reason_phrase


def _target_body(target: Target) -> dict[str, Any]:
    if isinstance(target, str | int):
        return {"tokens": [target]}
    if isinstance(target, Mapping):
        return dict(target)
    return {"tokens": list(target)}


class JobFailed(RuntimeError):
    def __init__(self, job_id: str, state: str, message: str) -> None:
        super().__init__(f"job {job_id} {state}: {message}")
        self.job_id, self.state, self.message = job_id, state, message


@dataclass(frozen=True)
class Submission:
    graph_id: str
    job_id: str | None  # None: the graph was already there

    @property
    def ready(self) -> bool:
        return self.job_id is None


class AttrGraphClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout_s: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)
        self.retries = retries

    def __enter__(self) -> AttrGraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, honouring Retry-After on 429 and 503 a few times before giving up."""
        for attempt in range(self.retries + 1):
            response = self.http.request(method, url, **kwargs)
            if response.status_code not in (429, 503) or attempt == self.retries:
                if response.is_error:
                    raise ApiError(response)
                return response
            time.sleep(min(float(response.headers.get("Retry-After", "1")), 30.0))
        raise AssertionError("unreachable")

    # -- graphs -------------------------------------------------------------------------------------

    def submit(
        self,
        prompt: Prompt,
        *,
        model: str | None = None,
        transcoders: str | None = None,
        target: Target | None = None,
        logit_diff: tuple[TokenRef, TokenRef] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Submission:
        """Ask for the graph of `prompt` (text, or a chat: a list of {role, content} messages).

        `target`: a token (" Austin", or an id), a list of them, or the API's {"tokens": [...]} /
        {"logit_diff": [A, B]}; `logit_diff=(A, B)` explains logit(A) - logit(B).
        """
        if target is not None and logit_diff is not None:
            raise ValueError("give either target or logit_diff, not both")
        body: dict[str, Any] = {"prompt": prompt if isinstance(prompt, str) else [dict(m) for m in prompt]}
        if target is not None:
            body["target"] = _target_body(target)
        if logit_diff is not None:
            body["target"] = {"logit_diff": list(logit_diff)}
        for name, value in (("model", model), ("transcoders", transcoders), ("settings", settings)):
            if value is not None:
                body[name] = value
        reply = self._request("POST", "/api/graphs", json=body).json()
        return Submission(graph_id=reply["graph_id"], job_id=reply.get("job_id"))

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's Server-Sent Events as (event, data) until it ends."""
        with self.http.stream(
            "GET", f"/api/jobs/{job_id}/events", timeout=httpx.Timeout(30.0, read=None)
        ) as response:
            if response.is_error:
                response.read()
                raise ApiError(response)
            event = "message"
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    yield event, orjson.loads(line[6:])

    def wait(self, job_id: str, *, on_event: EventHandler | None = None) -> str:
        """Follow a job to its end; the graph id, or JobFailed."""
        for event, data in self.events(job_id):
            if on_event is not None:
                on_event(event, data)
            if event == "done":
                return str(data["graph_id"])
            if event in ("failed", "cancelled"):
                raise JobFailed(job_id, event, str(data.get("message", "")))
        status = self.job(job_id)  # the stream ended without a final event (server restart)
        if status["state"] == "done":
            return str(status["graph_id"])
        return self.wait(job_id, on_event=on_event)

    def fetch(self, graph_id: str) -> dict[str, Any]:
        """The graph JSON (transferred gzip-compressed)."""
        data: dict[str, Any] = self._request("GET", f"/api/graphs/{graph_id}").json()
        return data

    def trace(
        self, prompt: Prompt, *, on_event: EventHandler | None = None, **options: Any
    ) -> dict[str, Any]:
        """Submit, wait and fetch in one call (options: those of submit)."""
        submission = self.submit(prompt, **options)
        graph_id = (
            submission.graph_id if submission.ready else self.wait(submission.job_id or "", on_event=on_event)
        )
        return self.fetch(graph_id)

    def node(self, graph_id: str, node_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", f"/api/graphs/{graph_id}/nodes/{node_id}").json()
        return data

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        graphs: list[dict[str, Any]] = self._request("GET", "/api/graphs", params={"limit": limit}).json()[
            "graphs"
        ]
        return graphs

    # -- jobs, models, tokens, features -------------------------------------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", f"/api/jobs/{job_id}").json()
        return data

    def cancel(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._request("DELETE", f"/api/jobs/{job_id}").json()
        return data

    def models(self) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", "/api/models").json()
        return data

    def tokenize(self, prompt: Prompt, *, model: str | None = None, top_k: int = 10) -> dict[str, Any]:
        """Tokens as traced (`text`: a chat rendered with the model's template) and predictions."""
        as_sent = prompt if isinstance(prompt, str) else [dict(m) for m in prompt]
        body: dict[str, Any] = {"prompt": as_sent, "top_k": top_k, **({"model": model} if model else {})}
        data: dict[str, Any] = self._request("POST", "/api/tokenize", json=body).json()
        return data

    def feature(self, transcoders: str, layer: int, index: int) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", f"/api/features/{transcoders}/{layer}/{index}").json()
        return data
