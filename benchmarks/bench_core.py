"""Core benchmarks: normalize() speed and memory, statistics throughput, quality on real data.

Run from the project root (reads ../shared/data)::

    python benchmarks/bench_core.py                 # all three tables
    python benchmarks/bench_core.py --json out.json # also write them as JSON
    python benchmarks/bench_core.py --only speed    # speed | stats | quality

Every speed figure is a ratio against a baseline measured in the same process:
the dense NumPy implementation of the official algorithm (time and tracemalloc
peak), and this machine's BLAS SGEMM throughput. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbnorm_qdrant import BankNormalizer, normalize, tune  # noqa: E402
from dbnorm_qdrant.eval.metrics import hubness_metrics, retrieval_metrics  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


# ------------------------------------------------------------ official, dense NumPy
def _official_is(train_test, test_test, beta):
    return np.exp(test_test * beta) / np.sum(np.exp(train_test * beta), axis=0)


def _official_qb_norm(train_test, test_test, k, beta):
    test_test = test_test.copy()  # the official code mutates its input
    retrieved = np.unique(np.argsort(-train_test, axis=1)[:, :k].reshape(-1))
    normalized = test_test
    e_train = np.exp(train_test * beta)
    e_test = np.exp(test_test * beta)
    norm_sum = np.sum(e_train, axis=0)
    top1 = np.argsort(-e_test, axis=1)[:, 0]
    rows = np.nonzero(np.isin(top1, retrieved))
    normalized[rows, :] = np.divide(e_test[rows, :], norm_sum)
    return normalized


def official_dense(method, S, SQ, SG, beta_q, beta_g, k=1):
    if method == "dualis":
        return _official_is(SQ, S, beta_q) * _official_is(SG, S, beta_g)
    return _official_qb_norm(SQ, S, k, beta_q) * _official_qb_norm(SG, S, k, beta_g)


def measure(fn, repeat):
    times, peaks = [], []
    for _ in range(repeat):
        gc.collect()
        tracemalloc.start()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del out
    return statistics.median(times), statistics.median(peaks)


def load(name):
    d = DATA / name
    return {k: np.load(d / f"{k}.npy") for k in ("Q_test", "G_test", "Q_bank", "G_bank")}


def bench_speed(repeat):
    d = load("wordnet_gloss")
    S = d["Q_test"] @ d["G_test"].T
    SQ = d["Q_bank"] @ d["G_test"].T
    SG = d["G_bank"] @ d["G_test"].T
    rows = []
    for method in ("dualis", "dualdis"):
        normalize(S[:50, :50], method, query_bank_sims=SQ[:, :50], gallery_bank_sims=SG[:, :50])  # JIT warm-up
        t_ref, m_ref = measure(lambda: official_dense(method, S, SQ, SG, 20.0, 3.0), repeat)
        t_us, m_us = measure(lambda: normalize(S, method, query_bank_sims=SQ, gallery_bank_sims=SG), repeat)
        rows.append(
            {
                "method": method,
                "official_s": t_ref,
                "ours_s": t_us,
                "speedup": t_ref / t_us,
                "official_peak_mb": m_ref / 2**20,
                "ours_peak_mb": m_us / 2**20,
                "memory_ratio": m_us / m_ref,
            }
        )
    return rows


def sgemm_peak(d=384, repeat=5):
    """BLAS SGEMM throughput (FLOP/s) on cache-friendly blocks with a preallocated output."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2048, d)).astype(np.float32)
    B = rng.standard_normal((8192, d)).astype(np.float32)
    C = np.empty((2048, 8192), np.float32)
    np.matmul(A, B.T, out=C)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(3):
            np.matmul(A, B.T, out=C)
        ts.append((time.perf_counter() - t) / 3)
    return 2 * 2048 * 8192 * d / min(ts)


def bench_stats(repeat):
    d = load("wordnet_gloss")
    G, QB, GB = d["G_test"], d["Q_bank"], d["G_bank"]
    peak = sgemm_peak(G.shape[1])
    rows = []
    for method, act in (("is", False), ("dualis", False), ("dualdis", True)):
        bn = BankNormalizer(QB, GB, method=method)
        bn.gallery_stats(G[:100], activation=act)  # warm-up
        ts = []
        for _ in range(repeat):
            t = time.perf_counter()
            bn.gallery_stats(G, activation=act)
            ts.append(time.perf_counter() - t)
        t = statistics.median(ts)
        bank_rows = len(QB) + (len(GB) if method != "is" else 0)
        flop = 2 * len(G) * bank_rows * G.shape[1]
        rows.append(
            {
                "statistics": f"{method}{' + activation' if act else ''}",
                "gallery": len(G),
                "bank_rows": bank_rows,
                "seconds": t,
                "gflops": flop / t / 1e9,
                "sgemm_peak_gflops": peak / 1e9,
                "fraction_of_peak": flop / t / peak,
            }
        )
    return rows


def bench_quality():
    rows = []
    for name in ("wordnet_gloss", "bible_kjv_web"):
        d = load(name)
        Q, G, QB, GB = d["Q_test"], d["G_test"], d["Q_bank"], d["G_bank"]
        S = Q @ G.T
        SQ, SG = QB @ G.T, GB @ G.T
        beta_q = 20.0 if name == "wordnet_gloss" else 33.3333
        for method in ("none", "is", "dis", "dualis", "dualdis", "csls", "nnn", "centrality", "auto"):
            t = time.perf_counter()
            if method == "auto":
                res = tune(QB, GB, paired=True)
                out = BankNormalizer(QB, GB, params=res.params).scores(Q, G)
                params = res.params.to_dict()
            else:
                out = normalize(S, method, query_bank_sims=SQ, gallery_bank_sims=SG, beta_q=beta_q, beta_g=3.0)
                params = {"beta_q": beta_q, "beta_g": 3.0} if method != "none" else {}
            r, h = retrieval_metrics(out), hubness_metrics(out)
            rows.append(
                {
                    "set": name,
                    "method": method,
                    "R1": r["R1"],
                    "R5": r["R5"],
                    "R10": r["R10"],
                    "k_skewness": h["k_skewness"],
                    "seconds": time.perf_counter() - t,
                    "params": params,
                }
            )
    return rows


def table(rows, cols, fmt=None):
    fmt = fmt or {}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            cells.append(fmt.get(c, "{:.3g}" if isinstance(v, float) else "{}").format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine():
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)" for i in threadpool_info() if i.get("user_api") == "blas"]
    import os

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=["speed", "stats", "quality"], action="append")
    args = ap.parse_args(argv)
    parts = args.only or ["speed", "stats", "quality"]
    if not DATA.is_dir():
        ap.error(f"data not found at {DATA}")
    out = {"machine": machine()}
    print(f"machine: {out['machine']}")
    if "speed" in parts:
        out["speed"] = bench_speed(args.repeat)
        print("\nnormalize() on wordnet_gloss (S 5000x5000, banks 10k+10k, float32) vs dense official NumPy")
        print(table(out["speed"], list(out["speed"][0]), {"speedup": "{:.1f}x", "memory_ratio": "{:.3f}", "official_peak_mb": "{:.0f}", "ours_peak_mb": "{:.0f}"}))
    if "stats" in parts:
        out["stats"] = bench_stats(args.repeat)
        print("\ngallery statistics from vectors (wordnet_gloss) vs BLAS SGEMM peak measured in this run")
        print(table(out["stats"], list(out["stats"][0]), {"fraction_of_peak": "{:.0%}", "gflops": "{:.0f}", "sgemm_peak_gflops": "{:.0f}"}))
    if "quality" in parts:
        out["quality"] = bench_quality()
        print("\nquality on the test split (R@K in %, k-skewness over all items, k=10)")
        print(table(out["quality"], ["set", "method", "R1", "R5", "R10", "k_skewness"], {"R1": "{:.2f}", "R5": "{:.2f}", "R10": "{:.2f}", "k_skewness": "{:.2f}"}))
        auto = [r for r in out["quality"] if r["method"] == "auto"]
        for r in auto:
            print(f"auto on {r['set']}: {r['params']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
