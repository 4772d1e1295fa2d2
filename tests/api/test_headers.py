"""Security headers on every response: pages, static files, the JSON API, errors and /docs."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from attrgraph.api.pages import CSP, static_dir

HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _check(response: httpx.Response) -> str:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers)
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    script_src = re.search(r"script-src ([^;]*)", csp)
    assert script_src is not None and "'unsafe-inline'" not in script_src.group(1)
    assert "'unsafe-eval'" not in csp
    return csp


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/graph/" + "0" * 32, 404),
        ("GET", "/api/models", 200),
        ("GET", "/api/graphs", 200),
        ("GET", "/api/jobs/" + "0" * 32, 404),
        ("GET", "/api/jobs/not-an-id", 422),
        ("POST", "/api/graphs", 422),
        ("GET", "/openapi.json", 200),
        ("GET", "/no/such/path", 404),
    ],
)
def test_every_response_has_the_headers(api: str, method: str, path: str, status: int) -> None:
    response = httpx.request(method, api + path, json={} if method == "POST" else None)
    assert response.status_code == status
    assert _check(response) == CSP


def test_a_rejected_body_has_them_too(api: str) -> None:
    response = httpx.post(
        api + "/api/graphs", content=b"x" * 200_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    _check(response)


def test_static_files(api: str) -> None:
    name = next((p.name for p in sorted(static_dir().glob("*.js"))), None)
    if name is None:
        pytest.skip("the frontend is not built")
    response = httpx.get(f"{api}/static/{name}")
    assert response.status_code == 200
    assert _check(response) == CSP


def test_the_pages_need_no_inline_script(api: str) -> None:
    """The page shells carry data only as a JSON block; every executable script has a src."""
    html = httpx.get(api + "/").text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts
    for attrs, _body in scripts:
        assert "src=" in attrs or ('type="application/json"' in attrs), attrs


def test_docs_inline_script_allowed_by_hash(api: str) -> None:
    for path in ("/docs", "/docs/oauth2-redirect"):
        response = httpx.get(api + path)
        assert response.status_code == 200
        csp = _check(response)
        inline = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", response.text, re.DOTALL)
        assert inline, path
        for body in inline:
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp, path
        # Swagger UI's own assets come from this origin.
        for src in re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', response.text):
            assert src.startswith("/"), src
