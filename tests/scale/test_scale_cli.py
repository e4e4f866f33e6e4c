"""``--compute ray`` on the command line: ``rerank`` writes the rows of ``--compute local``
(against a gallery matrix and a collection; .npy and Parquet queries; JSONL and Parquet
out); ``stats precompute`` / ``stats status``; bad input is one error line."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from dbnorm_qdrant.cli import main

N_Q, N_G, N_B = 200, 600, 800


def cli(*args) -> tuple[int, str, str]:
    """``dbnorm-qdrant ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    log = logging.getLogger("dbnorm_qdrant")
    saved = (log.handlers[:], log.level, log.propagate)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        finally:
            log.handlers[:], log.level, log.propagate = saved
    return code, out.getvalue(), err.getvalue()


def rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b):
        assert list(ra) == list(rb) and ra["query"] == rb["query"] and ra["ids"] == rb["ids"], (ra, rb)
        for col in ("scores", "raw_scores"):
            if col in ra:
                np.testing.assert_allclose(rb[col], ra[col], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def files(sample, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scale_cli")
    out = {}
    for name, key, n in (("Q", "Q", N_Q), ("G", "G", N_G), ("QB", "QB", N_B), ("GB", "GB", N_B)):
        out[name] = d / f"{name}.npy"
        np.save(out[name], sample[key][:n])
    out["qdrant"] = d / "qdrant"
    c = QdrantClient(path=str(out["qdrant"]))
    from qdrant_client import models

    c.create_collection("g", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    c.upload_collection("g", vectors=sample["G"][:N_G], ids=list(range(N_G)), wait=True)
    c.close()
    return out


def banks(files) -> list:
    return ["--query-bank", files["QB"], "--gallery-bank", files["GB"], "--method", "dualis", "-q"]


def test_rerank_against_a_matrix_writes_the_local_rows(ray_cluster, files, tmp_path):
    common = ["rerank", "--queries", files["Q"], "--gallery", files["G"], "--top-k", 10, "--batch-size", 64,
              *banks(files)]
    assert cli(*common, "--out", tmp_path / "local.jsonl")[0] == 0
    code, _, err = cli(*common, "--out", tmp_path / "ray.jsonl", "--compute", "ray", "--workers", 2)
    assert code == 0, err
    assert_same_rows(rows(tmp_path / "local.jsonl"), rows(tmp_path / "ray.jsonl"))


def test_rerank_through_a_collection_writes_the_local_rows_parquet_in_and_out(ray_cluster, files, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    Q = np.load(files["Q"])
    pq.write_table(pa.table({"vector": [r.tolist() for r in Q], "query": list(range(N_Q))}), tmp_path / "q.parquet")
    common = ["rerank", "--collection", "g", "--path", files["qdrant"], "--top-k", 10, *banks(files)]
    assert cli(*common, "--queries", files["Q"], "--out", tmp_path / "local.parquet")[0] == 0
    code, _, err = cli(*common, "--queries", tmp_path / "q.parquet", "--out", tmp_path / "ray.parquet",
                       "--compute", "ray")
    assert code == 0, err
    assert_same_rows(rows(tmp_path / "local.parquet"), rows(tmp_path / "ray.parquet"))


def test_a_query_file_of_the_wrong_dimension_is_one_error_line(ray_cluster, files, tmp_path):
    np.save(tmp_path / "q16.npy", np.ones((5, 16), np.float32))
    code, out, err = cli("rerank", "--queries", tmp_path / "q16.npy", "--gallery", files["G"], *banks(files),
                         "--out", tmp_path / "r.jsonl", "--compute", "ray")
    assert code == 2 and "dimension" in err and "16" in err and "Traceback" not in err, err
    assert not (tmp_path / "r.jsonl").exists()
    # a bad row inside the file: found by the actor, raised as the same one-line error, no file written
    import pyarrow as pa
    import pyarrow.parquet as pq

    vecs = [np.ones(384).tolist()] * 3 + [np.ones(16).tolist()]
    pq.write_table(pa.table({"vector": vecs}), tmp_path / "bad.parquet")
    code, out, err = cli("rerank", "--queries", tmp_path / "bad.parquet", "--gallery", files["G"], *banks(files),
                         "--out", tmp_path / "r.jsonl", "--compute", "ray")
    assert code == 2 and "vectors have dimension 16 but the gallery has 384" in err and "RayTaskError" not in err, err
    assert not (tmp_path / "r.jsonl").exists()


def test_stats_precompute_on_ray_and_status_after_points_were_added(ray_cluster, files, sample):
    code, out, err = cli("stats", "precompute", "--collection", "g", "--path", files["qdrant"], *banks(files),
                         "--compute", "ray", "--page-size", 200, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert (rep["written"], rep["chunks"], rep["added_during_run"]) == (N_G, 3, 0)
    c = QdrantClient(path=str(files["qdrant"]))
    c.upload_collection("g", vectors=sample["G"][N_G : N_G + 4], ids=list(range(N_G, N_G + 4)), wait=True)
    c.close()
    code, out, err = cli("stats", "status", "--collection", "g", "--path", files["qdrant"], *banks(files), "--json")
    st = json.loads(out)
    assert (st["current"], st["missing"], st["up_to_date"]) == (N_G, 4, False)
    assert st["fingerprint"] == rep["fingerprint"]


def test_a_precompute_with_a_bad_ray_address_is_one_error_line(files):
    code, out, err = cli("stats", "precompute", "--collection", "g", "--path", files["qdrant"], *banks(files),
                         "--compute", "ray", "--ray-address", "127.0.0.1:9")
    assert code == 2 and "cannot reach the Ray cluster" in err and err.count("\n") == 1, err
