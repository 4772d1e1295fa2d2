"""Browser tests: the real service (API + worker + Redis) with the scripted Dallas backend, driven by
Playwright through Debian's Chromium, headless. Every page must load without a console error.

Needs: `pip install playwright` (the Python package only: never `playwright install`) and a Chromium
binary ($ATTRGRAPH_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH). Tests skip, saying
which is missing, when either is absent. Screenshots go to $ATTRGRAPH_SCREENSHOTS or var/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.dallas import DALLAS_PROMPT, DallasBackend
from tests.service.conftest import clear_prefix, make_settings
from tests.service.helpers import ApiServer, WorkerThread, existing_or_started_redis

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

try:
    from playwright import sync_api
except ImportError:  # the browser fixture skips, saying so; test_static.py needs no browser
    sync_api = None


def chromium_path() -> str | None:
    for candidate in (os.environ.get("ATTRGRAPH_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def screenshot_dir() -> Path:
    path = Path(os.environ.get("ATTRGRAPH_SCREENSHOTS") or ROOT / "var" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


# Package scope, not session: sync Playwright keeps an asyncio loop running in this thread, which
# breaks asyncio.run() in every later test until it is stopped.
@pytest.fixture(scope="package")
def browser_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from existing_or_started_redis(tmp_path_factory.mktemp("redis"))


class Service:
    """The API and one worker with the scripted backend, on a free port."""

    def __init__(self, redis_url: str, **overrides: Any) -> None:
        self.settings = make_settings(
            redis_url, default_model="dallas-demo", backend="tests.browser.dallas:DallasBackend", **overrides
        )
        self.api = ApiServer(self.settings)
        self.worker = WorkerThread(self.settings, DallasBackend(self.settings))  # type: ignore[arg-type]

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


@pytest.fixture(scope="package")
def service(browser_redis_url: str) -> Iterator[Service]:
    svc = Service(browser_redis_url)
    with svc.api, svc.worker:
        yield svc
    clear_prefix(browser_redis_url, svc.settings.key_prefix)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if sync_api is None:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set ATTRGRAPH_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


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


@pytest.fixture
def page(browser: Any, service: Service) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, base_url=service.url, accept_downloads=True)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    console = Console(pg)
    pg.console_problems = console.problems
    yield pg
    context.close()
    assert not console.problems, "the page reported errors:\n" + "\n".join(console.problems)


def shoot(page: Any, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path))
    return path
