"""The layout rules of docs/architecture.md, checked on the source: no import cycle, no
upward import between layers, no module over 600 lines."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from support import ROOT

PKG = ROOT / "dbnorm_qdrant"

#: layer -> the package's layers it must never import (upward edges of docs/architecture.md)
FORBIDDEN = {
    "dbnorm_qdrant.errors": ("core", "kernels", "eval", "qdrant", "cli", "experimental", "banks", "scale"),
    "dbnorm_qdrant.validation": ("core", "kernels", "eval", "qdrant", "cli", "experimental", "banks", "scale"),
    "dbnorm_qdrant.kernels": ("core", "eval", "qdrant", "cli", "experimental", "banks", "scale"),
    "dbnorm_qdrant.core": ("qdrant", "cli", "experimental", "banks", "edge", "scale"),
    "dbnorm_qdrant.eval": ("core", "kernels", "qdrant", "cli", "experimental", "banks", "edge", "scale"),
    "dbnorm_qdrant.qdrant": ("cli", "experimental", "edge", "scale"),
    "dbnorm_qdrant.edge": ("cli", "experimental", "scale"),
    "dbnorm_qdrant.scale": ("cli", "experimental", "edge"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(mod: str, f: Path, mods: dict[str, Path]) -> set[str]:
    """Every package module ``mod`` imports, at module or function level."""
    pkg = mod.split(".") if f.name == "__init__.py" else mod.split(".")[:-1]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{name}.{a.name}"
                deps.add(sub if sub in mods else name)
        elif isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
    return {d for d in deps if d in mods and d != mod}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, f, mods) for m, f in mods.items()}


def test_the_import_graph_has_no_cycle(graph):
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_no_layer_imports_a_layer_above_it(graph):
    bad = []
    for mod, deps in graph.items():
        for layer, above in FORBIDDEN.items():
            if mod == layer or mod.startswith(layer + "."):
                bad += [f"{mod} imports {d}" for d in deps
                        if any(d == f"dbnorm_qdrant.{a}" or d.startswith(f"dbnorm_qdrant.{a}.") for a in above)]
    # core/tuning.py may read eval.metrics (R@1 and k-skewness on its validation split)
    bad = [b for b in bad if not b.startswith("dbnorm_qdrant.core.tuning imports dbnorm_qdrant.eval")]
    assert not bad, "\n".join(bad)


def test_no_module_over_600_lines():
    long = {str(f.relative_to(ROOT)): n for f in PKG.rglob("*.py") if (n := len(f.read_text().splitlines())) > 600}
    assert not long, long


def test_the_graph_sees_the_imports(graph):
    """The checks above mean something only if imports are found (relative, nested, deferred)."""
    assert "dbnorm_qdrant.core.centering" in graph["dbnorm_qdrant.core.tuning"]
    assert "dbnorm_qdrant.core.tuning" in graph["dbnorm_qdrant.core.normalizer"]  # deferred, in a function
    assert "dbnorm_qdrant.qdrant.client_path" in graph["dbnorm_qdrant.qdrant.paths"]
    assert "dbnorm_qdrant.errors" in graph["dbnorm_qdrant.validation"]
