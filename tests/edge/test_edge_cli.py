"""``--engine edge`` on the command line: the demo on Qdrant's engine, and the option's errors."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

pytest.importorskip("qdrant_edge", reason='qdrant-edge-py is not installed: pip install "dbnorm-qdrant[edge]"')

from dbnorm_qdrant.cli import main  # noqa: E402


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_demo_on_the_edge_engine(tmp_path):
    code, out, err = _run("demo", "--engine", "edge", "--path", tmp_path / "q", "--n-queries", 150,
                          "--out", tmp_path / "rep", "-q")
    assert code == 0, err
    assert "Qdrant Edge at" in out and "R@1" in out
    assert (tmp_path / "q" / "dbnorm_demo" / "edge_config.json").is_file()  # one shard per collection
    raw, new = json.loads((tmp_path / "rep" / "metrics.json").read_text())["retrievals"].values()
    assert new["metrics"]["k_skewness"] < raw["metrics"]["k_skewness"]


def test_engine_edge_needs_a_folder(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "q.npy", rng.normal(size=(5, 8)).astype(np.float32))
    np.save(tmp_path / "qb.npy", rng.normal(size=(50, 8)).astype(np.float32))
    code, _, err = _run("evaluate", "--engine", "edge", "--url", "http://localhost:1", "--collection", "c",
                        "--queries", tmp_path / "q.npy", "--query-bank", tmp_path / "qb.npy")
    assert code == 2 and "--engine edge opens a folder: pass --path" in err, err
