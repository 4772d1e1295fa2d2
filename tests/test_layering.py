"""The process layering of docs/architecture.md, and no import cycles.

The contracts live in pyproject.toml ([tool.importlinter]) and run through import-linter, which
follows imports anywhere in a module (function-level ones too) and through any chain of modules.
To show that they bite, the same contracts run on a copy of the package (renamed, so the installed
one cannot stand in for it) with one forbidden import added per contract.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grimp
import pytest

import attrgraph

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(attrgraph.__file__).parent
MIRROR = "mirrorpkg"
_RENAME = re.compile(r"\battrgraph\b")

# One import per contract that the contract must refuse: (contract id, importing module, import line).
FORBIDDEN = [
    ("api", "api/app.py", "import mirrorpkg.engine.graph"),
    ("protocol", "protocol/keys.py", "import fastapi"),
    ("format", "format/dashboards.py", "import mirrorpkg.settings"),
    ("engine", "engine/graph.py", "import mirrorpkg.protocol.keys"),
    ("worker", "worker/tracer.py", "import mirrorpkg.api.deps"),
    ("demo", "tracing.py", "import mirrorpkg.demo.corpus"),
]


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts: list[dict[str, Any]] = config["contracts"]
    return contracts


def _lint_imports(config_file: Path, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(lint), "--config", str(config_file), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
    )


def find_cycles(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's strongly
    connected components, iterative so deep chains cannot hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.find_modules_directly_imported_by(node):
                    cycles.append(sorted(component))
    return sorted(cycles)


def _package_cycles(package: str) -> list[list[str]]:
    graph = grimp.build_graph(package, cache_dir=None)
    return find_cycles(graph, graph.find_descendants(package) | {package})


# -- the real package ---------------------------------------------------------------------------


def test_layering_contracts_are_kept() -> None:
    result = _lint_imports(ROOT / "pyproject.toml", ROOT, ROOT / "backend")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_no_import_cycles() -> None:
    assert _package_cycles("attrgraph") == []


def test_format_contract_names_every_other_module() -> None:
    """`format` may import nothing else of attrgraph: a new top-level module must join its list."""
    (contract,) = [c for c in _contracts() if c["id"] == "format"]
    siblings = {
        f"attrgraph.{p.stem}"
        for p in PACKAGE_DIR.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert siblings - {"attrgraph.format"} <= set(contract["forbidden_modules"])


# -- the checkers catch what they should ------------------------------------------------------


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's Python files under another name, with its layering contracts renamed too."""
    base = tmp_path_factory.mktemp("mirror")
    for source in PACKAGE_DIR.rglob("*.py"):
        target = base / MIRROR / source.relative_to(PACKAGE_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_RENAME.sub(MIRROR, source.read_text()))
    config = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    (base / "pyproject.toml").write_text("[tool.importlinter]" + _RENAME.sub(MIRROR, config))
    return base


def _add_import(root: Path, module: str, line: str) -> None:
    path = root / MIRROR / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_contracts_refuse_forbidden_imports(mirror: Path, tmp_path: Path) -> None:
    clean = _lint_imports(mirror / "pyproject.toml", mirror, mirror)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    broken = tmp_path / "broken"
    shutil.copytree(mirror, broken)
    for _, module, line in FORBIDDEN:
        _add_import(broken, module, line)
    result = _lint_imports(broken / "pyproject.toml", broken, broken)
    assert result.returncode != 0
    # The mirror's contract names went through the renaming too.
    names = {c["id"]: _RENAME.sub(MIRROR, c["name"]) for c in _contracts()}
    assert {contract for contract, _, _ in FORBIDDEN} == set(names), "one bad import per contract"
    for contract, module, line in FORBIDDEN:
        assert f"{names[contract]} BROKEN" in result.stdout, (contract, result.stdout)
        imported = line.split()[-1]
        assert imported in result.stdout, (module, imported)


def test_cycle_finder_reports_a_loop(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    looped = tmp_path / "looped"
    shutil.copytree(mirror, looped)
    # settings is imported by api.app (through deps); importing it back closes a loop.
    _add_import(looped, "settings.py", f"import {MIRROR}.api.app")
    _add_import(looped, "format/dashboards.py", f"import {MIRROR}.format.dashboards")  # itself
    monkeypatch.syspath_prepend(str(looped))
    cycles = _package_cycles(MIRROR)
    assert any({f"{MIRROR}.settings", f"{MIRROR}.api.app"} <= set(c) for c in cycles), cycles
    assert [f"{MIRROR}.format.dashboards"] in cycles
