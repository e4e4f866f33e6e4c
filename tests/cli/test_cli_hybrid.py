"""``demo --hybrid``: plain vs normalised hybrid search (dense + BM25 sparse, RRF and DBSF) on the
shipped sample, on the embedded default engine (local mode) and on the edge engine."""

from __future__ import annotations

import json

import pytest

from cli_run import cli, cli_subprocess, ok, one_line_error

pytest.importorskip("qdrant_edge", reason="--hybrid embeds the texts with the edge extra's BM25 encoder")

FUSIONS = ("RRF", "DBSF")


def _hybrid_r1(out) -> dict[str, tuple[float, float]]:
    """``{fusion: (plain R@1, normalised R@1)}`` from the report's metrics.json."""
    runs = json.loads((out / "metrics.json").read_text())["retrievals"]
    got = {}
    for f in FUSIONS:
        plain = runs[f"hybrid {f}, raw dense"]["metrics"]["R1"]
        normed = [v["metrics"]["R1"] for k, v in runs.items() if k.startswith(f"hybrid {f}, ") and k.endswith(" dense")
                  and "raw" not in k]
        assert len(normed) == 1, sorted(runs)
        got[f] = (plain, normed[0])
    return got


@pytest.mark.parametrize("engine, n_queries", [("local", 300), ("edge", 1500)])
def test_demo_hybrid_adds_plain_and_normalised_hybrid_rows(tmp_path, engine, n_queries):
    # local mode: 300 queries (its sparse search is pure Python; its RRF breaks ties by branch order, so the
    # figures are deterministic: RRF 36.0 -> 39.0, DBSF 39.7 -> 41.7); edge: all 1,500 (the engine breaks RRF
    # ties arbitrarily, so R@1 moves by a few tenths from run to run: RRF ~38 -> ~42.5, DBSF 42.4 -> 44.9)
    out = tmp_path / "demo"
    r = ok(cli("demo", "--hybrid", "--engine", engine, "--n-queries", n_queries, "--out", out, "-q"))
    for f in FUSIONS:
        assert f"hybrid {f}, raw dense" in r.stdout
    assert "BM25" in r.stdout
    page = (out / "report.md").read_text()
    assert "| hybrid RRF, raw dense |" in page and "| raw cosine |" in page
    for f, (plain, normed) in _hybrid_r1(out).items():
        assert normed >= plain, (f, plain, normed)
    plain, normed = _hybrid_r1(out)["RRF"]
    assert normed >= plain + 1.0  # a clear gain on the fusion RAG stacks use by default


def test_demo_without_hybrid_has_no_hybrid_rows(tmp_path):
    out = tmp_path / "demo"
    r = ok(cli("demo", "--n-queries", 50, "--out", out, "-q"))
    assert "hybrid RRF" not in r.stdout and "BM25" not in r.stdout
    assert not [k for k in json.loads((out / "metrics.json").read_text())["retrievals"] if k.startswith("hybrid")]


def test_demo_hybrid_without_the_edge_extra_names_it_and_writes_nothing(tmp_path):
    out = tmp_path / "demo"
    block = 'import sys; sys.modules["qdrant_edge"] = None  # a base install without the edge extra'
    r = cli_subprocess("demo", "--hybrid", "--n-queries", 20, "--out", out, "-q", pre=block)
    one_line_error(r, "dbnorm-qdrant[edge]", narrates=True)
    assert not out.exists()
