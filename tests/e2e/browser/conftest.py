"""Browser tests: the real service (API + worker + Redis) with the scripted Dallas backend, driven by
Playwright through Debian's Chromium, headless. Every page must load without a console error.

Needs: `pip install playwright` (the Python package only: never `playwright install`) and a Chromium
binary ($ATTRGRAPH_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH). Tests skip, saying
which is missing, when either is absent (under CI they fail: tests/support/environment.py).
Screenshots go to $ATTRGRAPH_SCREENSHOTS or var/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import CHROMIUM_ARGS, VIEWPORT, Console, Service, chromium_path
from tests.support.environment import missing, require_module
from tests.support.services import ApiServer, WorkerThread, clear_prefix, torch_tracer_settings


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    # Imported here, not at module level: test_static.py needs no browser.
    sync_api = require_module("playwright.sync_api", "pip install playwright (never `playwright install`)")
    executable = chromium_path()
    if executable is None:
        missing("no Chromium binary (apt-get install chromium, or set ATTRGRAPH_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, service: Service) -> Iterator[Any]:
    # bypass_csp: Playwright's wait_for_function evaluates its string predicates with eval, which
    # the app's Content-Security-Policy forbids; test_csp.py loads the pages with the policy on.
    context = browser.new_context(
        viewport=VIEWPORT, base_url=service.url, accept_downloads=True, bypass_csp=True
    )
    context.set_default_timeout(15_000)
    pg = context.new_page()
    console = Console(pg)
    pg.console_problems = console.problems
    yield pg
    context.close()
    assert not console.problems, "the page reported errors:\n" + "\n".join(console.problems)


def _demo_built() -> bool:
    from attrgraph.bundled import demo_dashboards_dir, demo_model_dir, demo_transcoders_dir

    return (
        (demo_model_dir() / "config.json").is_file()
        and (demo_transcoders_dir() / "config.yaml").is_file()
        and demo_dashboards_dir().is_dir()
    )


@pytest.fixture(scope="module")
def demo_url(browser_redis_url: str) -> Iterator[str]:
    """The shipped demo model behind a server (test_real_model.py, test_attention.py)."""
    if not _demo_built():
        pytest.skip("the demo model is not built (attrgraph/data/demo)")
    from attrgraph.worker.torch_tracer import TorchTracer

    settings = torch_tracer_settings(
        browser_redis_url, predictions_timeout_s=60.0, worker_call_timeout_s=30.0
    )
    with ApiServer(settings) as api, WorkerThread(settings, TorchTracer(settings)):
        yield api.url
    clear_prefix(browser_redis_url, settings.key_prefix)
