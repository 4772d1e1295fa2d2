"""/docs with the network blocked: Swagger UI's assets come from attrgraph's own static files."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.support.browser import Service
from tests.support.environment import require_module

sync_api = require_module("playwright.sync_api")
expect = sync_api.expect

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def test_docs_render_with_every_outside_request_blocked(page: Any, service: Service) -> None:
    blocked: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", only_local)
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("attrgraph")
    # The operations are rendered from /openapi.json: the UI ran, not just its HTML shell.
    expect(page.locator(".opblock-summary-path[data-path='/api/graphs']").first).to_be_visible()
    expect(page.locator(".opblock-summary-path[data-path='/api/tokenize']").first).to_be_visible()
    assert blocked == []  # nothing needed from outside
    assert page.evaluate("typeof window.SwaggerUIBundle") == "function"
