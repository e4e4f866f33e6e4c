"""Recall of the index vector under HNSW (issue 14): Qdrant Edge, synthetic clustered points.

The index vector ``[g, -bias(g)]`` is searched with Qdrant's HNSW like any other vector. On a
brute-force collection the index ranking equals the normalised ranking exactly (tests); under
HNSW it is approximate, like every HNSW search. This script measures how approximate:
recall@10 of ``mode="index"`` against the exact normalised top-10 (the matrix-level
``BankNormalizer.search``), for several ``hnsw_ef`` and Qdrant's default, next to the recall of a
plain HNSW query against the exact raw top-10 on the same collection and ef (the extra
dimension's cost, if any), and the median latency of both at the default ef.

    python benchmarks/bench_index_recall.py [--points 100000] [--queries 500] [--json FILE]

Synthetic data: unit vectors around 300 random centres (a clustered cloud, so hubs exist), the
queries and the query bank from the same mixture with their own noise, the gallery bank from the
points' mixture. Building HNSW (``optimize()``) for two vectors takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from qdrant_client import models

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbnorm_qdrant import BankNormalizer  # noqa: E402
from dbnorm_qdrant.edge import EdgeClient  # noqa: E402
from dbnorm_qdrant.qdrant import DBNormClient  # noqa: E402

log = logging.getLogger("bench_index_recall")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def mixture(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> np.ndarray:
    c = centres[rng.integers(0, len(centres), n)]
    return unit(c + rng.normal(0, noise / np.sqrt(centres.shape[1]), (n, centres.shape[1])))


def data(points: int, queries: int, bank: int, dim: int = 384, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(300, dim)))
    return {"G": mixture(rng, centres, points, 1.2), "Q": mixture(rng, centres, queries, 1.4),
            "QB": mixture(rng, centres, bank, 1.4), "GB": mixture(rng, centres, bank, 1.2)}


def recall(got: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(e.tolist())) / len(e) for g, e in zip(got, exact)]))


def run(a: argparse.Namespace) -> dict:
    d = data(a.points, a.queries, a.bank)
    nz = BankNormalizer(d["QB"], d["GB"], method="dualis", beta_q=20.0, beta_g=3.0)
    t0 = time.perf_counter()
    _, exact_norm = nz.search(d["Q"], d["G"], top_k=10)
    raw = d["Q"] @ d["G"].T
    exact_raw = np.argsort(-raw, axis=1)[:, :10]
    del raw
    log.info("exact top-10 lists in %.0f s", time.perf_counter() - t0)
    out: dict = {"points": a.points, "queries": a.queries, "bank": a.bank, "method": "dualis", "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        client = EdgeClient(tmp)
        client.create_collection("c", vectors_config=models.VectorParams(size=d["G"].shape[1],
                                                                         distance=models.Distance.COSINE))
        for i in range(0, a.points, 10_000):
            client.upload_collection("c", vectors=d["G"][i:i + 10_000], ids=list(range(i, min(a.points, i + 10_000))))
        db = DBNormClient(client, nz)
        t0 = time.perf_counter()
        db.precompute("c", index=True, progress=False, page_size=2048)
        out["precompute_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        client.shard("c").optimize()
        out["optimize_s"] = round(time.perf_counter() - t0, 1)
        log.info("precompute %.0f s, optimize (HNSW for both vectors) %.0f s", out["precompute_s"], out["optimize_s"])
        Q = [q.tolist() for q in d["Q"]]
        for ef in [None, *a.ef]:
            sp = None if ef is None else models.SearchParams(hnsw_ef=ef)
            t_idx, t_raw, got_idx, got_raw = [], [], [], []
            for q in Q:
                t = time.perf_counter()
                got_idx.append([p.id for p in db.query_points("c", q, limit=10, mode="index", search_params=sp).points])
                t_idx.append(time.perf_counter() - t)
                t = time.perf_counter()
                got_raw.append([p.id for p in client.query_points("c", q, limit=10, search_params=sp).points])
                t_raw.append(time.perf_counter() - t)
            row = {"hnsw_ef": "default" if ef is None else ef, "index_recall@10": round(recall(got_idx, exact_norm), 4),
                   "plain_recall@10": round(recall(got_raw, exact_raw), 4),
                   "index_ms": round(1e3 * statistics.median(t_idx), 3), "plain_ms": round(1e3 * statistics.median(t_raw), 3)}
            row["latency_ratio"] = round(row["index_ms"] / row["plain_ms"], 2)
            out["rows"].append(row)
            log.info("%s", row)
        client.close()
    return out


def table(out: dict) -> str:
    lines = ["| hnsw_ef | index recall@10 (vs exact normalised) | plain recall@10 (vs exact raw) | index ms | plain ms | ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['hnsw_ef']} | {r['index_recall@10']:.3f} | {r['plain_recall@10']:.3f} | {r['index_ms']:.2f} | "
              f"{r['plain_ms']:.2f} | {r['latency_ratio']:.2f}x |" for r in out["rows"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--bank", type=int, default=4000)
    ap.add_argument("--ef", type=int, nargs="*", default=[16, 32, 64, 128, 256])
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = run(a)
    print(f"Index vector under HNSW (Qdrant Edge; {a.points:,} synthetic 384-d points, {a.queries} queries, dualis; "
          f"precompute {out['precompute_s']} s, optimize {out['optimize_s']} s):\n")
    print(table(out))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
