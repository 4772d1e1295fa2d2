"""The explorer's pages: jinja2 shells for the home and graph pages, and the bundled static files.

    GET /                         home: prompt box, model picker, token preview, progress, recent graphs
    GET /graph/{graph_id}         the graph explorer (the whole view state lives in the query string)
    GET /view/graphs/{id}.json    a graph thinned to its strongest links, for graphs too big to ship whole
    /static/...                   the bundle built from frontend/ (see frontend/build.mjs)

The pages hold no data beyond a small JSON blob (ids, sizes, limits); the scripts fetch everything
else from the JSON API. Static files come from, in order: $ATTRGRAPH_STATIC_DIR, the copy shipped
inside the installed package (attrgraph/static), or static/ at the root of a source checkout.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import heapq
import json
import os
import re
from collections import OrderedDict
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import attrgraph
from attrgraph.api.deps import CatalogDep, StoreDep
from attrgraph.protocol import stored_graph
from attrgraph.protocol.schemas import ID_PATTERN

PACKAGE_DIR = Path(attrgraph.__file__).resolve().parent
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# Graphs with more links than this are sent thinned (strongest links kept, every node kept); the
# explorer then fetches each clicked node's full edge list from /api/graphs/{id}/nodes/{node_id}.
MAX_SHIPPED_LINKS = 150_000
VIEW_CACHE_ENTRIES = 8

router = APIRouter(include_in_schema=False)


def static_dir() -> Path:
    """Where the built frontend lives (see the module docstring for the search order)."""
    override = os.environ.get("ATTRGRAPH_STATIC_DIR")
    if override:
        return Path(override)
    for candidate in (PACKAGE_DIR / "static", PACKAGE_DIR.parents[1] / "static"):
        if (candidate / "graph.js").is_file():
            return candidate
    return PACKAGE_DIR.parents[1] / "static"


def static_files() -> StaticFiles:
    # check_dir=False: the app still starts (API only) when the frontend was never built.
    return StaticFiles(directory=static_dir(), check_dir=False)


@cache
def _asset_versions(directory: Path) -> dict[str, str]:
    """file name -> short content hash, appended to asset URLs so a new build is never served stale."""
    versions = {}
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.is_file():
                versions[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return versions


def asset(name: str) -> str:
    version = _asset_versions(static_dir()).get(name)
    return f"/static/{name}" + (f"?v={version}" if version else "")


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.globals["asset"] = asset
templates.env.globals["version"] = attrgraph.__version__


def _page_data(data: dict[str, Any]) -> str:
    # Embedded in a <script type="application/json">: "</" must not end the element early.
    return json.dumps(data, ensure_ascii=True).replace("</", "<\\/")


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("page_data", _page_data(context.pop("data", {})))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    return _render(request, "home.html", title="attrgraph", data={"page": "home"})


@router.get("/graph/{graph_id}", response_class=HTMLResponse)
async def graph_page(
    request: Request,
    graph_id: str,
    store: StoreDep,
    catalog: CatalogDep,
) -> HTMLResponse:
    summary = await store.summary(graph_id) if _valid_id(graph_id) else None
    if summary is None:
        return _render(
            request,
            "missing.html",
            status_code=404,
            title="No such graph - attrgraph",
            graph_id=graph_id,
            data={"page": "missing"},
        )
    dashboards = any(
        t.name == summary.transcoders and t.has_dashboards
        for m in await catalog.models()
        if m.name == summary.model
        for t in m.transcoders
    )
    data = {
        "page": "graph",
        "graphId": graph_id,
        "summary": summary.model_dump(),
        "hasDashboards": dashboards,
        "maxShippedLinks": MAX_SHIPPED_LINKS,
    }
    title = f"{summary.prompt[:60]} - attrgraph"
    return _render(request, "graph.html", title=title, summary=summary, data=data)


def _valid_id(graph_id: str) -> bool:
    return re.fullmatch(ID_PATTERN, graph_id) is not None


# -- thinned views of very large graphs ---------------------------------------------------------------

_view_cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()


def thin_graph(graph: dict[str, Any], max_links: int) -> dict[str, Any]:
    """Every node, and about max_links links: each node's strongest incoming and outgoing link
    (so no node is left floating; these may exceed max_links), then the strongest of the rest."""
    links: list[dict[str, Any]] = graph.get("links", [])
    total = len(links)
    if total > max_links:
        best_in: dict[str, int] = {}
        best_out: dict[str, int] = {}
        for i, link in enumerate(links):
            w = abs(float(link["weight"]))
            t, s = link["target"], link["source"]
            if t not in best_in or w > abs(float(links[best_in[t]]["weight"])):
                best_in[t] = i
            if s not in best_out or w > abs(float(links[best_out[s]]["weight"])):
                best_out[s] = i
        keep = set(best_in.values()) | set(best_out.values())
        room = max(0, max_links - len(keep))
        rest = (i for i in range(total) if i not in keep)
        keep.update(heapq.nlargest(room, rest, key=lambda i: abs(float(links[i]["weight"]))))
        links = [links[i] for i in sorted(keep)]
    metadata = dict(graph.get("metadata", {}))
    metadata["attrgraph_view"] = {
        "thinned": len(links) < total,
        "n_links_total": total,
        "n_links": len(links),
    }
    return {**graph, "metadata": metadata, "links": links}


def _thinned_bytes(compressed: bytes, max_links: int) -> bytes:
    graph = orjson.loads(stored_graph.decompress(compressed))
    return stored_graph.compress(orjson.dumps(thin_graph(graph, max_links)))


@router.get("/view/graphs/{graph_id}.json")
async def graph_view(
    graph_id: Annotated[str, PathParam(pattern=ID_PATTERN)],
    request: Request,
    store: StoreDep,
    max_links: Annotated[int, Query(ge=1, le=2_000_000)] = MAX_SHIPPED_LINKS,
) -> Response:
    """The graph with every node but only its strongest links (gzip JSON; cached per process)."""
    key = (graph_id, max_links)
    body = _view_cache.get(key)
    if body is None:
        compressed = await store.get_compressed(graph_id)
        if compressed is None:
            return Response(
                orjson.dumps({"detail": f"no graph {graph_id}"}),
                status_code=404,
                media_type="application/json",
            )
        # Parsing a very large graph takes a while: keep the event loop free for other requests.
        body = await asyncio.to_thread(_thinned_bytes, compressed, max_links)
        _view_cache[key] = body
        while len(_view_cache) > VIEW_CACHE_ENTRIES:
            _view_cache.popitem(last=False)
    else:
        _view_cache.move_to_end(key)
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return Response(body, media_type="application/json", headers=headers)
    return Response(stored_graph.decompress(body), media_type="application/json", headers=headers)


# --- security headers on every response ------------------------------------------------------------

# The pages load only their own bundles (no inline scripts: base.html's page data is a JSON block,
# which CSP does not treat as script), talk only to this origin, and are never framed. Inline styles
# stay allowed: the explorer and d3 set style attributes on SVG elements.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
# Swagger UI's pages start it with an inline script; those scripts (and only those) are allowed by
# their hashes, computed from the page as served.
INLINE_SCRIPT_PATHS = frozenset({"/docs", "/docs/oauth2-redirect"})
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def csp_for(body: bytes | None = None) -> str:
    """The policy; with `body`, its inline scripts are allowed by hash."""
    if not body:
        return CSP
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.finditer(body)
    )
    return CSP.replace("script-src 'self'", f"script-src 'self' {hashes}".rstrip(), 1)


class SecurityHeaders:
    """CSP, X-Frame-Options, nosniff and Referrer-Policy on every HTTP response (pages, static files,
    the API, errors), unless a route set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in INLINE_SCRIPT_PATHS:
            await self._with_inline_scripts(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _add_headers(list(message.get("headers", [])), CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _with_inline_scripts(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A small HTML page: hold it back until its body is known, then send it with the hashes.
        start: Message | None = None
        body = bytearray()

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                assert start is not None
                start["headers"] = _add_headers(list(start.get("headers", [])), csp_for(bytes(body)))
                await send(start)
                await send({"type": "http.response.body", "body": bytes(body)})
                return
            await send(message)

        await self.app(scope, receive, buffer)


def _add_headers(headers: list[tuple[bytes, bytes]], csp: str) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    wanted = ((b"content-security-policy", csp.encode()), *SECURITY_HEADERS)
    return headers + [(name, value) for name, value in wanted if name not in present]
