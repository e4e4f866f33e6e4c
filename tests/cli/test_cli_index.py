"""``stats precompute --index``: the index vector from the command line (docs/index.md)."""

from __future__ import annotations

import json

import numpy as np

from cli_run import N_G, cli, ok


def test_stats_precompute_index(files, tmp_path):
    from qdrant_client import QdrantClient, models

    path = tmp_path / "qdrant"  # a folder of its own: the index vector changes what with_vectors=True returns
    c = QdrantClient(path=str(path))
    G = np.load(files["G"])
    c.create_collection("g", vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    c.upload_collection("g", vectors=G, ids=list(range(len(G))), wait=True)
    c.close()
    common = ["--collection", "g", "--path", path, "--query-bank", files["QB"], "--method", "is", "--json"]
    out = json.loads(ok(cli("stats", "precompute", *common, "--index")).stdout)
    assert out["index_written"] == N_G and out["index_skipped"] == 0 and out["index_name"].startswith("_dbnorm_")
    again = json.loads(ok(cli("stats", "precompute", *common, "--index")).stdout)
    assert again["index_written"] == 0 and again["index_skipped"] == N_G
    st = json.loads(ok(cli("stats", "status", *common)).stdout)
    assert st["index_vectors"] == [out["index_name"]] and st["index_current"]
    st2 = json.loads(ok(cli("stats", "status", *common[:-2], "csls", "--json")).stdout)
    assert not st2["index_current"] and st2["index_vectors"] == [out["index_name"]]
    c = QdrantClient(path=str(path))
    try:
        vectors = c.get_collection("g").config.params.vectors
        assert vectors[out["index_name"]].size == G.shape[1] + 1
    finally:
        c.close()
    # rerank / evaluate --mode index: the ranking the client path gives over every candidate
    rows = {}
    for mode in ("index", "client"):
        out_file = tmp_path / f"{mode}.jsonl"
        ok(cli("rerank", "--collection", "g", "--path", path, "--queries", files["Q"], "--query-bank", files["QB"],
               "--method", "is", "--top-k", 5, "--candidates", N_G, "--mode", mode, "--out", out_file, "-q"))
        rows[mode] = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert [r["ids"] for r in rows["index"]] == [r["ids"] for r in rows["client"]]
    np.testing.assert_allclose([r["raw_scores"] for r in rows["index"]], [r["raw_scores"] for r in rows["client"]],
                               rtol=1e-5, atol=1e-6)
    ev = {mode: json.loads(ok(cli("evaluate", "--collection", "g", "--path", path, "--queries", files["Q"],
                                  "--query-bank", files["QB"], "--method", "is", "--candidates", N_G, "--top-k", 10,
                                  "--mode", mode, "--json")).stdout) for mode in ("index", "client")}
    assert ev["index"]["is"]["R1"] == ev["client"]["is"]["R1"]
    bad = cli("rerank", "--collection", "g", "--path", path, "--queries", files["Q"], "--query-bank", files["QB"],
              "--method", "csls", "--mode", "index", "--out", tmp_path / "x.jsonl", "-q")
    assert bad.returncode != 0 and "--index" in bad.stderr
