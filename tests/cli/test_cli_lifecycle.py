"""``rebuild`` / ``status``: a collection served from its query log, from the command line
(docs/lifecycle.md).

The storages are built from the shipped sample: a slice of its gallery as the collection,
its bank queries sent through a logging ``DBNormClient`` (then closed, so the folder is
free), and each test works on a copy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cli_run import cli, ok, one_line_error, tree

#: gallery points in the collection and bank queries logged (a slice: local mode writes point by point)
N_POINTS, N_LOGGED = 400, 250


def _build(path: Path, client_cls) -> Path:
    """``path``: collection 'g' (N_POINTS items) and query log 'g_log' (N_LOGGED queries)."""
    from qdrant_client import models

    from dbnorm_qdrant.datasets import load_sample
    from dbnorm_qdrant.qdrant import DBNormClient

    s = load_sample()
    G, QB = s.gallery[:N_POINTS], s.query_bank[:N_LOGGED]
    c = client_cls(path)
    c.create_collection("g", vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    c.upsert("g", points=models.Batch(ids=list(range(len(G))), vectors=G.tolist()), wait=True)
    db = DBNormClient(c, query_log={"g": "g_log"})
    db.query_batch_points("g", [models.QueryRequest(query=q.tolist(), limit=5) for q in QB])
    db.close()  # writes the buffered log and releases the folder
    return path


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """An embedded Qdrant (local mode) with a logged collection, no rebuild yet."""
    from qdrant_client import QdrantClient

    return _build(tmp_path_factory.mktemp("logged") / "qdrant", lambda p: QdrantClient(path=str(p)))


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "qdrant"
    shutil.copytree(src, dst)
    return dst


def _args(path: Path, *extra) -> list:
    return ["--collection", "g", "--query-log", "g_log", "--path", path, *extra]


def _status(path: Path, *extra) -> dict:
    return json.loads(ok(cli("status", *_args(path, *extra), "--json")).stdout)


def test_rebuild_then_status(logged, tmp_path):
    path = _copy(logged, tmp_path)
    cold = _status(path)
    assert cold["active_version"] is None and "cold start" in cold["serving"]
    assert cold["log_size"] == N_LOGGED and cold["logged"] == N_LOGGED and cold["versions"] == {}

    r = ok(cli("rebuild", *_args(path, "--min-log", 200, "--gallery-sample", 300, "-q")))
    lines = r.stdout.splitlines()
    assert lines[0] == "'g', logged to 'g_log': version 1 is active", r.stdout
    rows = dict(re.split(r"\s{2,}", ln.strip(), maxsplit=1) for ln in lines[3:])  # the table: field, value
    assert rows["version"] == "1" and rows["previous"] == "-" and rows["retired versions"] == "-"
    assert rows["query bank"] == f"{N_LOGGED} logged queries" and rows["gallery bank"] == "300 points sampled"
    method = rows["method"].split()[0]
    assert method in ("is", "dualis"), rows["method"]  # the log lowers the sample's hubness (0.50 -> -0.14 here)
    indexed = rows["index vector"].startswith("_dbnorm_")
    assert rows["points written"] == f"{N_POINTS} statistics" + (f", {N_POINTS} index vectors" if indexed else ""), rows
    assert re.fullmatch(r"k_skewness -?[0-9.]+ -> -?[0-9.]+ \(\d+ held-out logged queries\)", rows["tuning"])

    st = _status(path)
    assert st["active_version"] == 1 and st["serving"].startswith("version 1")
    assert st["query_bank"] == N_LOGGED and st["gallery_bank"] == 300
    assert st["params"]["method"] == method and st["versions"] == {"1": "ready"}
    assert st["log_size"] == N_LOGGED and st["logged"] == N_LOGGED and st["age_s"] >= 0
    assert st["tuning"]["logged"] == N_LOGGED

    text = ok(cli("status", *_args(path))).stdout
    assert text.startswith("'g', logged to 'g_log': served by version 1") and "1 ready" in text
    assert f"{N_LOGGED} queries held, {N_LOGGED} logged in all" in text


def test_rebuild_with_too_few_logged_queries_changes_nothing(logged, tmp_path):
    path = _copy(logged, tmp_path)
    before = tree(path)
    line = one_line_error(cli("rebuild", *_args(path, "--min-log", 1000, "-q")), "--min-log", f"holds {N_LOGGED}")
    assert "min_log" not in line  # the API's name turned into the flag
    assert tree(path) == before
    assert _status(path)["active_version"] is None


def test_status_without_a_log_is_cold_and_writes_nothing(qpath, tmp_path):
    path = _copy(qpath, tmp_path)
    before = tree(path)
    r = ok(cli("status", "--collection", "g", "--query-log", "g_log", "--path", path))
    assert r.stdout.startswith("'g', logged to 'g_log': served by the cold start") and "nothing logged yet" in r.stdout
    st = _status(path)
    assert st["active_version"] is None and st["log_size"] == 0 and st["logged"] == 0 and st["versions"] == {}
    assert tree(path) == before  # no log, no state collection created


def test_bad_input(qpath, tmp_path):
    path = _copy(qpath, tmp_path)
    before = tree(path)
    one_line_error(cli("status", "--collection", "nope", "--query-log", "g_log", "--path", path),
                   "'nope' does not exist", "existing collections: g")
    one_line_error(cli("rebuild", "--collection", "g", "--query-log", "g_log", "--path", path, "-q"),
                   "--query-log: collection 'g_log' does not exist", "existing collections: g, nv, q")
    one_line_error(cli("rebuild", "--collection", "g", "--query-log", "g_log", "--path", path, "--min-log", 50),
                   "--min-log must be an integer >= 100")
    assert tree(path) == before
    r = cli("status", "--collection", "g", "--query-log", "g_log", "--path", path, "--using", "a")
    assert r.returncode == 2 and "--using" in r.stderr  # the lifecycle serves the one dense vector


def test_rebuild_on_the_edge_engine(tmp_path):
    pytest.importorskip("qdrant_edge", reason="--engine edge needs the edge extra")
    from dbnorm_qdrant.edge import EdgeClient

    path = _build(tmp_path / "edge", EdgeClient)
    edge = ["--engine", "edge"]
    out = json.loads(ok(cli("rebuild", *_args(path, *edge, "--min-log", 200, "--gallery-sample", 300, "-q",
                                              "--json"))).stdout)
    assert out["version"] == 1 and out["previous"] is None and out["query_bank"] == N_LOGGED
    again = json.loads(ok(cli("rebuild", *_args(path, *edge, "--min-log", 200, "--gallery-sample", 300, "--seed", 1,
                                                "-q", "--json"))).stdout)
    assert again["version"] == 2 and again["previous"] == 1 and again["removed"] == [1]
    st = _status(path, *edge)
    assert st["active_version"] == 2 and st["versions"] == {"1": "retired", "2": "ready"}
    assert st["params"] == again["params"] and st["query_bank"] == N_LOGGED


def test_help_lists_the_commands():
    top = ok(cli("--help")).stdout
    assert "rebuild" in top and "status" in top
    for name in ("rebuild", "status"):
        h = ok(cli(name, "--help")).stdout
        assert "--query-log LOG" in h and "--engine" in h and "--using" not in h  # the log's one dense vector
    assert "--min-log N" in ok(cli("rebuild", "--help")).stdout
