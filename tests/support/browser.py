"""What the browser tests share: the scripted service, Chromium, console checks and screenshots."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.dallas import DALLAS_PROMPT, DallasTracer
from tests.support.services import ApiServer, WorkerThread, make_settings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 900}


def chromium_path() -> str | None:
    for candidate in (os.environ.get("ATTRGRAPH_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def screenshot_dir() -> Path:
    path = Path(os.environ.get("ATTRGRAPH_SCREENSHOTS") or ROOT / "var" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Service:
    """The API and one worker with the scripted backend, on a free port."""

    def __init__(self, redis_url: str, **overrides: Any) -> None:
        self.settings = make_settings(
            redis_url, default_model="dallas-demo", tracer="tests.support.dallas:DallasTracer", **overrides
        )
        self.api = ApiServer(self.settings)
        self.worker = WorkerThread(self.settings, DallasTracer(self.settings))

    @property
    def url(self) -> str:
        return self.api.url

    def trace(self, prompt: str = DALLAS_PROMPT, **settings: Any) -> str:
        """Compute a graph through the API (no browser) and return its id."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            reply = client.post("/api/graphs", json={"prompt": prompt, "settings": settings})
            reply.raise_for_status()
            body = reply.json()
            deadline = time.monotonic() + 30
            while body.get("status") != "ready" and time.monotonic() < deadline:
                job = client.get(f"/api/jobs/{body['job_id']}").json()
                if job["state"] == "done":
                    break
                assert job["state"] in ("queued", "running"), job
                time.sleep(0.05)
            return str(body["graph_id"])


class Console:
    """Console errors, uncaught exceptions and failed requests of one page."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("requestfailed", self._failed)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console.error: {message.text} ({message.location.get('url', '')})")

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        # Navigating away cancels in-flight requests (the progress stream): not an error.
        if "ERR_ABORTED" not in failure:
            self.problems.append(f"request failed: {request.url} {failure}")


def shoot(page: Any, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path))
    return path
