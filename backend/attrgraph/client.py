"""A small Python client for scripting against an attrgraph server.

from attrgraph.client import AttrGraphClient

with AttrGraphClient("http://127.0.0.1:8000") as ag:
    graph = ag.trace("The capital of Texas is", on_event=print)   # submit, wait, fetch
    node = ag.node(graph_id, "E_262_0")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

EventHandler = Callable[[str, dict[str, Any]], None]


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
                response.raise_for_status()
                return response
            time.sleep(min(float(response.headers.get("Retry-After", "1")), 30.0))
        raise AssertionError("unreachable")

    # -- graphs -------------------------------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        *,
        model: str | None = None,
        transcoders: str | None = None,
        target: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Submission:
        body: dict[str, Any] = {"prompt": prompt}
        for name, value in (
            ("model", model),
            ("transcoders", transcoders),
            ("target", target),
            ("settings", settings),
        ):
            if value is not None:
                body[name] = value
        reply = self._request("POST", "/api/graphs", json=body).json()
        return Submission(graph_id=reply["graph_id"], job_id=reply.get("job_id"))

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's Server-Sent Events as (event, data) until it ends."""
        with self.http.stream(
            "GET", f"/api/jobs/{job_id}/events", timeout=httpx.Timeout(30.0, read=None)
        ) as response:
            response.raise_for_status()
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

    def trace(self, prompt: str, *, on_event: EventHandler | None = None, **options: Any) -> dict[str, Any]:
        """Submit, wait and fetch in one call."""
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

    def tokenize(self, prompt: str, *, model: str | None = None, top_k: int = 10) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": prompt, "top_k": top_k, **({"model": model} if model else {})}
        data: dict[str, Any] = self._request("POST", "/api/tokenize", json=body).json()
        return data

    def feature(self, transcoders: str, layer: int, index: int) -> dict[str, Any]:
        data: dict[str, Any] = self._request("GET", f"/api/features/{transcoders}/{layer}/{index}").json()
        return data
