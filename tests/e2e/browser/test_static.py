"""static/ is what frontend/build.mjs makes from frontend/src: committed, so `pip install` and
`attrgraph serve` need no Node; this test keeps the two from drifting apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.environment import missing

ROOT = Path(__file__).resolve().parents[3]
FRONTEND = ROOT / "frontend"


def test_static_matches_a_fresh_build() -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed: cannot rebuild frontend/ to compare with static/")
    if not (FRONTEND / "node_modules" / "esbuild").is_dir():
        missing("frontend/node_modules is missing: run `npm ci` in frontend/ first")
    result = subprocess.run(
        [node, "build.mjs", "--check"], cwd=FRONTEND, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_static_is_served_and_versioned() -> None:
    from attrgraph.api import pages

    assert (pages.static_dir() / "graph.js").is_file(), (
        "static/ has no build: run `npm run build` in frontend/"
    )
    url = pages.asset("graph.js")
    assert url.startswith("/static/graph.js?v=") and len(url.split("=")[1]) == 12
