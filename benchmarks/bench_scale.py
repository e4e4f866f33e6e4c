"""Scale-out on Ray: the statistics precompute and the batch rerank, local engine vs Ray.

Run from the project root (needs the ray extra)::

    python benchmarks/bench_scale.py                            # the table
    python benchmarks/bench_scale.py --json benchmarks/results_scale.json

Synthetic unit 384-d vectors (``--points``, default 20,000; banks 2,000 + 2,000, method
``dualis``) in an in-memory Qdrant. Precompute: points/s of ``DBNormClient.precompute``
(one process, every BLAS thread, pages of the chunk size) and of ``precompute_ray`` with 1 and 2 workers on the same
cores (a local Ray with that many CPUs), each the median of ``--repeat`` forced runs; the
Ray rows also give the per-worker compute rate (points / task seconds, scroll and writes
left out) and the largest peak resident memory of a worker. Rerank: queries/s of the local
rows (:func:`dbnorm_qdrant.scale.rows.matrix_rows`) and of ``rerank_ray`` against a gallery
matrix (``--queries`` queries x the points).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbnorm_qdrant import BankNormalizer  # noqa: E402
from dbnorm_qdrant.core.centering import unit_rows  # noqa: E402
from dbnorm_qdrant.qdrant import DBNormClient  # noqa: E402
from dbnorm_qdrant.scale import precompute_ray, rerank_ray  # noqa: E402
from dbnorm_qdrant.scale.rows import matrix_rows  # noqa: E402

log = logging.getLogger("bench_scale")


def data(n: int, nq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = lambda m: unit_rows(rng.normal(size=(m, 384))).astype(np.float32)  # noqa: E731
    return {"G": f(n), "Q": f(nq), "QB": f(2000), "GB": f(2000)}


def collection(G: np.ndarray):
    from qdrant_client import QdrantClient, models

    c = QdrantClient(":memory:")
    c.create_collection("g", vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    c.upload_collection("g", vectors=G, ids=list(range(len(G))), wait=True)
    return c


def bench_precompute(d: dict, repeat: int, chunk: int) -> list[dict]:
    import ray

    nz = BankNormalizer(d["QB"], d["GB"], method="dualis")
    db = DBNormClient(collection(d["G"]), nz)
    n = len(d["G"])
    db.precompute("g", progress=False)  # warm: numba compiled, cache filled
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        db.precompute("g", force=True, progress=False, page_size=chunk)  # the same pages as the Ray chunks
        times.append(time.perf_counter() - t0)
    local = n / statistics.median(times)
    rows = [{"engine": "local (1 process)", "workers": "-", "points_per_s": round(local), "ratio": 1.0}]
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 object_store_memory=500 * 1024 * 1024)
        try:
            precompute_ray(db, "g", chunk_size=chunk, force=True, progress=False)  # warm the workers
            reps = [precompute_ray(db, "g", chunk_size=chunk, force=True, progress=False) for _ in range(repeat)]
        finally:
            ray.shutdown()
        rate = n / statistics.median(r.seconds for r in reps)
        task = statistics.median(n / sum(r.chunk_seconds) for r in reps)  # points per worker-second of compute
        rows.append({"engine": "ray", "workers": workers, "points_per_s": round(rate),
                     "ratio": round(rate / local, 3), "per_worker_compute_points_per_s": round(task),
                     "per_worker_ratio": round(task / local, 3),
                     "peak_worker_mb": round(max(r.peak_worker_mb for r in reps), 1)})
    return rows


def bench_rerank(d: dict, repeat: int) -> list[dict]:
    import ray

    nz = BankNormalizer(d["QB"], d["GB"], method="dualis")
    G, Q = d["G"], d["Q"]
    st = nz.gallery_stats(G)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(0, len(Q), 256):
            matrix_rows(nz, G, st, list(range(i, min(i + 256, len(Q)))), Q[i : i + 256], top_k=10)
        times.append(time.perf_counter() - t0)
    local = len(Q) / statistics.median(times)
    rows = [{"engine": "local (1 process)", "workers": "-", "queries_per_s": round(local), "ratio": 1.0}]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=500 * 1024 * 1024)
    try:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            n = sum(len(b) for b in rerank_ray(Q, normalizer=nz, gallery=G, top_k=10, batch_size=256))
            times.append(time.perf_counter() - t0)
        assert n == len(Q)
    finally:
        ray.shutdown()
    rate = len(Q) / statistics.median(times)
    rows.append({"engine": "ray data", "workers": 2, "queries_per_s": round(rate), "ratio": round(rate / local, 3)})
    return rows


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    lines += [" | ".join(str(r.get(c, "")) for c in cols) for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=4_000)
    ap.add_argument("--chunk-size", type=int, default=2_048)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    d = data(args.points, args.queries)
    pre = bench_precompute(d, args.repeat, args.chunk_size)
    rr = bench_rerank(d, args.repeat)
    print(f"precompute: {args.points} points x 384-d, banks 2000 + 2000 (dualis), chunks of {args.chunk_size}, "
          f"{os.cpu_count()} cores; medians of {args.repeat}")
    print(table(pre))
    print(f"\nrerank against a {args.points}-row matrix: {args.queries} queries, top 10")
    print(table(rr))
    if args.json:
        Path(args.json).write_text(json.dumps({"points": args.points, "queries": args.queries, "cores": os.cpu_count(),
                                               "chunk_size": args.chunk_size, "repeat": args.repeat,
                                               "precompute": pre, "rerank": rr}, indent=2) + "\n")


if __name__ == "__main__":
    main()
