"""NeighborRetr pieces on real data: centrality, uniform (Sinkhorn) and the adapter.

Run from the project root (reads ../shared/data)::

    python benchmarks/bench_neighborretr.py                  # Markdown table
    python benchmarks/bench_neighborretr.py --json out.json  # also as JSON
    python benchmarks/bench_neighborretr.py --epochs 3       # shorter adapter training

Train on the bank pairs (Q_bank[i], G_bank[i]), evaluate on the test split (Q_test[i]
matches G_test[i]). Every method uses its library defaults (no tuning). Also measures
the drift of the uniform bias when 10% new gallery items get it by the column
half-step instead of a full re-solve.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbnorm_qdrant import normalize  # noqa: E402
from dbnorm_qdrant.core.methods import DEFAULT_BETA_Q  # noqa: E402
from dbnorm_qdrant.eval.metrics import hubness_metrics, retrieval_metrics  # noqa: E402
from dbnorm_qdrant.core.sinkhorn import column_potentials, sinkhorn_sims  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = ("wordnet_gloss", "bible_kjv_web")


def _row(name, S, t):
    r, h = retrieval_metrics(S), hubness_metrics(S)
    return {"method": name, "R@1": r["R1"], "R@5": r["R5"], "R@10": r["R10"],
            "k_skewness": h["k_skewness"], "seconds": t}


def _drift(SQ: np.ndarray, S: np.ndarray, v_full: np.ndarray, frac: float = 0.1, seed: int = 0) -> dict:
    """Solve on 90% of the gallery, give the other 10% their potential by the column half-step."""
    n = SQ.shape[1]
    rng = np.random.default_rng(seed)
    new = np.sort(rng.choice(n, int(round(frac * n)), replace=False))
    base = np.setdiff1d(np.arange(n), new)
    beta = DEFAULT_BETA_Q
    r = sinkhorn_sims(np.ascontiguousarray(SQ[:, base]), beta)
    v = np.empty(n)
    v[base] = r.v
    v[new] = column_potentials(r.u, beta, r.n_ref, S_bank=SQ[:, new])
    lam = 0.5
    R_half = retrieval_metrics(S + lam * v[None, :] / beta)
    R_full = retrieval_metrics(S + lam * v_full[None, :] / beta)
    return {
        "new_items": int(len(new)),
        "spearman_all": float(spearmanr(v, v_full)[0]),
        "spearman_new": float(spearmanr(v[new], v_full[new])[0]),
        "max_abs_diff_sim_units": float(np.max(np.abs((v - v.mean()) - (v_full - v_full.mean()))) / beta),
        "R@1_half_step": R_half["R1"],
        "R@1_full_resolve": R_full["R1"],
    }


def run_set(name: str, epochs: int, rows: list, drift: dict) -> None:
    d = DATA / name
    Qt, Gt, Qb, Gb = (np.load(d / f"{x}.npy") for x in ("Q_test", "G_test", "Q_bank", "G_bank"))
    S = Qt @ Gt.T
    SQ = Qb @ Gt.T
    SG = Gb @ Gt.T
    out = []
    out.append(_row("raw", S, 0.0))
    for m in ("is", "dualis", "nnn", "centrality", "uniform"):
        t = time.perf_counter()
        N = normalize(S, m, query_bank_sims=SQ, gallery_bank_sims=SG)
        out.append(_row(m, N, time.perf_counter() - t))
        if m == "uniform":  # N = S + 0.5 v / beta, v from the full solve
            v_full = (N - S)[0] / 0.5 * DEFAULT_BETA_Q
    drift[name] = _drift(SQ, S, v_full)
    try:
        from dbnorm_qdrant.experimental.adapter import AdapterConfig, train_adapter
    except ImportError:
        print("torch missing: adapter rows skipped", file=sys.stderr)
    else:
        t = time.perf_counter()
        ad = train_adapter(Qb, Gb, AdapterConfig(epochs=epochs, seed=0))
        t_train = time.perf_counter() - t
        Qa = ad.adapt_queries(Qt)
        Sa = Qa @ Gt.T
        out.append(_row(f"adapter ({epochs} ep)", Sa, t_train))
        t = time.perf_counter()
        SQa = ad.adapt_queries(Qb) @ Gt.T
        N = normalize(Sa, "dualis", query_bank_sims=SQa, gallery_bank_sims=SG)
        out.append(_row("adapter + dualis", N, t_train + time.perf_counter() - t))
    for r in out:
        rows.append({"set": name, **r})


def markdown(rows: list, drift: dict) -> str:
    lines = ["| set | method | R@1 | R@5 | R@10 | k-skewness | s |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['method']} | {r['R@1']:.2f} | {r['R@5']:.2f} | {r['R@10']:.2f} | "
            f"{r['k_skewness']:.2f} | {r['seconds']:.1f} |"
        )
    lines += ["", "Uniform bias of 10% new items by the column half-step vs a full re-solve (lambda = 0.5):", "",
              "| set | new items | Spearman (all) | Spearman (new) | max abs diff (sim units) | R@1 half-step | "
              "R@1 re-solve |", "|---|---:|---:|---:|---:|---:|---:|"]
    for s, d in drift.items():
        lines.append(
            f"| {s} | {d['new_items']} | {d['spearman_all']:.5f} | {d['spearman_new']:.5f} | "
            f"{d['max_abs_diff_sim_units']:.2e} | {d['R@1_half_step']:.2f} | {d['R@1_full_resolve']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    a = ap.parse_args(argv)
    rows: list = []
    drift: dict = {}
    for s in a.sets:
        run_set(s, a.epochs, rows, drift)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), {platform.python_version()}"
    print(f"Machine: {machine}\n")
    print(markdown(rows, drift))
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine, "rows": rows, "drift": drift}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
