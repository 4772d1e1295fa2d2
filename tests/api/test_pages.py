"""The page routes (api/pages.py) over real HTTP, without a browser."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import httpx

from attrgraph.api.pages import thin_graph
from tests.support.browser import Service
from tests.support.dallas import dallas_graph


def page_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert match, html[:500]
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_home_and_assets(service: Service) -> None:
    with httpx.Client(base_url=service.url) as c:
        home = c.get("/")
        assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
        assert page_data(home.text)["page"] == "home"
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', home.text)
        assert {a.split("?")[0] for a in assets} == {
            "/static/favicon.svg",
            "/static/home.css",
            "/static/home.js",
        }
        for asset in assets:
            reply = c.get(asset)
            assert reply.status_code == 200 and reply.content, asset
        assert "cdn" not in home.text.lower() and "https://" not in home.text


def test_graph_page_and_missing_graph(service: Service) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    with httpx.Client(base_url=service.url) as c:
        page = c.get(f"/graph/{graph_id}?clickedId=x")
        assert page.status_code == 200
        data = page_data(page.text)
        assert data["graphId"] == graph_id and data["hasDashboards"] is True
        assert data["summary"]["n_nodes"] > 50
        assert "Dallas" in page.text  # the prompt, in the title bar
        for bad in ("0" * 32, "not-an-id", "<script>"):
            missing = c.get(f"/graph/{bad}")
            assert missing.status_code == 404 and "No graph" in missing.text
        assert "No graph &lt;script&gt;" in c.get("/graph/<script>").text  # escaped, never markup


def test_thinned_view(service: Service) -> None:
    graph_id = service.trace(max_feature_nodes=4000)
    with httpx.Client(base_url=service.url) as c:
        full = c.get(f"/api/graphs/{graph_id}").json()
        reply = c.get(f"/view/graphs/{graph_id}.json?max_links=100", headers={"Accept-Encoding": "gzip"})
        assert reply.status_code == 200
        thinned = reply.json()
        assert len(thinned["nodes"]) == len(full["nodes"])
        view = thinned["metadata"]["attrgraph_view"]
        assert view == {
            "thinned": True,
            "n_links_total": len(full["links"]),
            "n_links": len(thinned["links"]),
        }
        assert 100 <= len(thinned["links"]) < len(full["links"])
        assert c.get(f"/view/graphs/{'0' * 32}.json").status_code == 404
        assert c.get(f"/view/graphs/{graph_id}.json?max_links=0").status_code == 422
        plain = c.get(f"/view/graphs/{graph_id}.json?max_links=100", headers={"Accept-Encoding": "identity"})
        assert plain.json() == thinned


def test_thin_graph_keeps_every_node_connected() -> None:
    graph = dallas_graph("Fact: the capital of the state containing Dallas is")
    thinned = thin_graph(graph, 50)
    weights = sorted((abs(link["weight"]) for link in graph["links"]), reverse=True)
    kept = {(link["source"], link["target"]) for link in thinned["links"]}
    strongest = [link for link in graph["links"] if abs(link["weight"]) >= weights[10]]
    assert all((link["source"], link["target"]) in kept for link in strongest)
    for node in graph["nodes"]:
        node_id = node["node_id"]
        had = [link for link in graph["links"] if node_id in (link["source"], link["target"])]
        has = [link for link in thinned["links"] if node_id in (link["source"], link["target"])]
        assert bool(had) == bool(has), node_id
    assert thin_graph(graph, 10**6)["links"] == graph["links"]
    gzip.compress(json.dumps(thinned).encode())  # plain JSON values only
