"""Hub audit and poisoning defence: planted hubs against raw search, the normalisations, the audit and its quarantine.

Run from the project root (reads ../shared/data; Qdrant Edge, ``pip install "dbnorm-qdrant[edge]"``)::

    nice -n 10 python benchmarks/bench_audit.py --json benchmarks/results_audit.json   # ~10 minutes on 2 cores
    python benchmarks/bench_audit.py --data wordnet_gloss --attacks mixed            # one set, one attack
    python benchmarks/bench_audit.py --queries 500 --reps 1                          # a smoke run

Data: wordnet_gloss and bible_kjv_web (``--data``; a set missing under ../shared/data is
skipped with a message): the 5,000 items G_test form the collection ``docs`` (Cosine, ids
0..4,999, on :class:`dbnorm_qdrant.edge.EdgeClient`), banks Q_bank / G_bank (10,000 each).
A seeded permutation of the 5,000 test queries Q_test splits them: the first 1,000 are the
*attacker's sample* of the query distribution (what :mod:`dbnorm_qdrant.eval.attacks` plants
hubs from); the other 4,000 (``--queries``) are the *evaluated* queries, never seen by the
attacker, with their answers gt_test.

Attacks (``--attacks``): 15 hubs (``--hubs``) of each kind of :data:`~dbnorm_qdrant.eval.attacks.KINDS`,
``optimized`` also with ``joint=True`` (the hubs optimised together on the union of the
top-k lists they enter), and ``mixed`` (5 centroid + 5 cluster + 5 optimized), added to the
collection as ids 5,000..5,014 (a fresh collection per attack).

Measured per set and attack, every query through :class:`~dbnorm_qdrant.qdrant.DBNormClient`
(limit 10, N = 100 candidates, client path; ``query_batch_points`` in batches of 100):

- *share*: the planted-hub share of the top-10 lists (at least one planted id in the list),
  raw (``rerank=False``: plain Qdrant) and under ``csls``, ``is`` (beta_q 20) and ``dualis``
  (beta_q 20, beta_g 3), and raw and dualis once the audit quarantined what it flags at the
  default budget (``db.audit(..., budget=0.005, quarantine=True)``; the wrapper then leaves
  quarantined points out of its results);
- *audit recall / precision* at budgets 0.1%, 0.2%, 0.5%, 1%: the audit runs once at the
  largest budget and the smaller budgets take the prefixes of ``report.flagged`` (most
  suspicious first, at most ceil(budget * points) ids);
- *R@1* of the evaluated queries: clean collection raw and dualis; poisoned raw, dualis,
  dualis after the quarantine;
- *cost*: ``db.audit`` seconds against ``db.precompute(force=True)`` seconds on the same
  (clean) collection, median of ``--reps`` each (the audit then reuses the statistics the
  precompute stored); and the audit of each poisoned collection, which has none stored;
- on the clean collection: the points the audit flags at the default budget (natural hubs),
  their k-occurrence against the query bank before and after normalisation (the report's
  ``kocc`` / ``kocc_normalized``), and in the evaluated queries' raw and dualis top-10 lists.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qdrant_client import models

from dbnorm_qdrant.banks import BankSet
from dbnorm_qdrant.core.params import Params
from dbnorm_qdrant.edge import EdgeClient
from dbnorm_qdrant.eval.attacks import KINDS, hub_share, mixed_hubs, plant_hubs
from dbnorm_qdrant.qdrant import DBNormClient

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_qdrant import _cpu

DATA = ROOT.parent / "shared" / "data"
SETS = ("wordnet_gloss", "bible_kjv_web")
ATTACKS = (*KINDS, "joint", "mixed")
METHODS = {"csls": Params(method="csls"), "is": Params(method="is", beta_q=20.0),
           "dualis": Params(method="dualis", beta_q=20.0, beta_g=3.0)}
BUDGETS = (0.001, 0.002, 0.005, 0.01)
DEFAULT_BUDGET = 0.005
N_CAND = 100
BATCH = 100
SAMPLE = 1000  # the attacker's sample of Q_test
CLEAN_ROWS = 10  # flagged points of a clean collection printed per set


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data and collections
def load(name: str) -> dict[str, Any] | None:
    d = DATA / name
    files = ("Q_test", "G_test", "gt_test", "Q_bank", "G_bank")
    if any(not (d / f"{f}.npy").exists() for f in files):
        return None
    ld = lambda n: np.load(d / f"{n}.npy", allow_pickle=False)
    return {"name": name, "Q": ld("Q_test").astype(np.float32), "G": ld("G_test").astype(np.float32),
            "gt": ld("gt_test"), "QB": ld("Q_bank").astype(np.float32), "GB": ld("G_bank").astype(np.float32)}


def fill(client: Any, name: str, X: np.ndarray) -> None:
    """A Cosine collection ``name`` of the rows of ``X`` with ids 0..len-1."""
    client.create_collection(name, vectors_config=models.VectorParams(size=X.shape[1],
                                                                      distance=models.Distance.COSINE))
    client.upload_collection(name, vectors=X, ids=list(range(len(X))), wait=True)


def top10(db: DBNormClient, coll: str, Q: np.ndarray, **kw: Any) -> list[list[int]]:
    """The top-10 ids of every query, through the wrapper (``kw``: rerank=, params=, ...)."""
    out: list[list[int]] = []
    for i in range(0, len(Q), BATCH):
        reqs = [models.QueryRequest(query=q.tolist(), limit=10, with_payload=False) for q in Q[i:i + BATCH]]
        out += [[p.id for p in r.points] for r in db.query_batch_points(coll, reqs, **kw)]
    return out


def r1(lists: list[list[int]], gt: np.ndarray) -> float:
    return float(np.mean([bool(t) and t[0] == g for t, g in zip(lists, gt)]))


def runs(db: DBNormClient, coll: str, Q: np.ndarray, methods: tuple[str, ...] = tuple(METHODS)
         ) -> dict[str, list[list[int]]]:
    """Top-10 lists raw and under ``methods`` of :data:`METHODS` (N = 100)."""
    out = {"raw": top10(db, coll, Q, rerank=False)}
    for m in methods:
        out[m] = top10(db, coll, Q, params=METHODS[m], candidates=N_CAND)
    return out


def median_seconds(f: Callable[[], Any], reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


# --------------------------------------------------------------------------- the measures
def audit_scores(flagged: list[Any], planted: set[Any], n_points: int) -> dict[str, dict[str, float]]:
    """Recall and precision of the prefixes of ``flagged`` at every budget of :data:`BUDGETS`."""
    out = {}
    for b in BUDGETS:
        top = flagged[:math.ceil(b * n_points)]
        hit = sum(i in planted for i in top)
        out[f"{b:g}"] = {"flagged": len(top), "recall": hit / len(planted), "precision": hit / len(top) if top else 0.0}
    return out


def clean_run(db: DBNormClient, coll: str, d: dict[str, Any], E: np.ndarray, reps: int) -> dict[str, Any]:
    """R@1 of the clean collection, the natural hubs the audit flags, audit vs precompute time."""
    Q, gt = d["Q"][E], d["gt"][E]
    raw, dual = top10(db, coll, Q, rerank=False), top10(db, coll, Q, params=METHODS["dualis"], candidates=N_CAND)
    res: dict[str, Any] = {"r1_raw": r1(raw, gt), "r1_dualis": r1(dual, gt)}
    t_pre = median_seconds(lambda: db.precompute(coll, force=True, progress=False), reps)
    t_aud = median_seconds(lambda: db.audit(coll, budget=DEFAULT_BUDGET, progress=False), reps)
    res.update(precompute_s=t_pre, audit_s=t_aud, audit_over_precompute=t_aud / t_pre)
    rep = db.audit(coll, budget=DEFAULT_BUDGET, progress=False)
    pos = {pid: i for i, pid in enumerate(rep.ids)}
    n = len(rep.ids)
    kocc_raw = np.bincount([i for t in raw for i in t], minlength=n)
    kocc_dual = np.bincount([i for t in dual for i in t], minlength=n)
    res["flagged"] = [{"id": pid, "score": float(rep.score[pos[pid]]), "kocc_bank": int(rep.kocc[pos[pid]]),
                       "kocc_bank_normalized": int(rep.kocc_normalized[pos[pid]]),
                       "kocc_eval_raw": int(kocc_raw[pid]), "kocc_eval_dualis": int(kocc_dual[pid])}
                      for pid in rep.flagged]
    res["kocc_bank_median"] = float(np.median(rep.kocc))
    res["audit_reused_stats"] = int(rep.reused_stats)
    res["audit_method"] = rep.method
    return res


def attack_run(db: DBNormClient, c: Any, d: dict[str, Any], kind: str, A: np.ndarray, E: np.ndarray,
               n_hubs: int, seed: int) -> dict[str, Any]:
    G, Q, gt = d["G"], d["Q"][E], d["gt"][E]
    t0 = time.perf_counter()
    if kind == "mixed":
        H = mixed_hubs(n_hubs, A, G, seed=seed)
    elif kind == "joint":
        H = plant_hubs("optimized", n_hubs, A, G, seed=seed, joint=True)
    else:
        H = plant_hubs(kind, n_hubs, A, G, seed=seed)
    res: dict[str, Any] = {"attack": kind, "hubs": n_hubs, "plant_s": time.perf_counter() - t0}
    coll = f"p_{kind}"
    fill(c, coll, np.vstack([G, H]))
    planted = set(range(len(G), len(G) + n_hubs))
    lists = runs(db, coll, Q)
    res["share"] = {m: hub_share(v, planted) for m, v in lists.items()}
    res["r1"] = {"raw": r1(lists["raw"], gt), "dualis": r1(lists["dualis"], gt)}
    t0 = time.perf_counter()
    rep = db.audit(coll, budget=max(BUDGETS), progress=False)
    res["audit_s"] = time.perf_counter() - t0
    res["audit"] = audit_scores(list(rep.flagged), planted, rep.n_points)
    qrep = db.audit(coll, budget=DEFAULT_BUDGET, progress=False, quarantine=True)
    res["quarantined"] = int(qrep.quarantined)
    lists_q = runs(db, coll, Q, ("dualis",))  # csls and is after the quarantine: left out for time
    res["share_quarantine"] = {m: hub_share(v, planted) for m, v in lists_q.items()}
    res["r1"]["dualis_quarantine"] = r1(lists_q["dualis"], gt)
    res["r1"]["raw_quarantine"] = r1(lists_q["raw"], gt)
    c.delete_collection(coll)
    db.forget(coll)
    return res


def run_set(d: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    note = lambda msg: _stderr(f"  {d['name']}: {msg} [{time.perf_counter() - t0:.0f} s]")
    perm = np.random.default_rng(a.seed).permutation(len(d["Q"]))
    A, E = d["Q"][perm[:SAMPLE]], perm[SAMPLE:SAMPLE + a.queries]
    res: dict[str, Any] = {"set": d["name"], "points": len(d["G"]), "attacker_sample": SAMPLE,
                           "queries": len(E), "attacks": []}
    tmp = tempfile.mkdtemp(prefix="bench_audit_")
    try:
        c = EdgeClient(tmp)
        db = DBNormClient(c, banks=BankSet(d["QB"], d["GB"]), params=METHODS["dualis"], candidates=N_CAND)
        fill(c, "docs", d["G"])
        res["clean"] = clean_run(db, "docs", d, E, a.reps)
        note(f"clean: audit {res['clean']['audit_s']:.2f} s, precompute {res['clean']['precompute_s']:.2f} s")
        for kind in a.attacks:
            r = attack_run(db, c, d, kind, A, E, a.hubs, a.seed)
            res["attacks"].append(r)
            note(f"{kind}: share raw {r['share']['raw']:.3f} dualis {r['share']['dualis']:.4f}, recall@0.5% "
                 f"{r['audit']['0.005']['recall']:.2f}")
        c.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["seconds"] = time.perf_counter() - t0
    return res


# --------------------------------------------------------------------------- tables
def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def tables(results: list[dict[str, Any]]) -> str:
    out = [("Planted-hub share of the top-10 lists (15 hubs in 5,000 items; N = 100; after: the audit's "
           "quarantine at budget 0.5%):"), "",
           "| set | attack | raw | csls | is | dualis | raw, after | dualis, after | quarantined |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in results:
        for r in s["attacks"]:
            sh, sq = r["share"], r["share_quarantine"]
            out.append(f"| {s['set']} | {r['attack']} | {_pct(sh['raw'])} | {_pct(sh['csls'])} | {_pct(sh['is'])} "
                       f"| {_pct(sh['dualis'])} | {_pct(sq['raw'])} | {_pct(sq['dualis'])} | {r['quarantined']} |")
    first = next((r["audit"] for s in results for r in s["attacks"]), None)
    heads = [f"{100 * b:g}%" + (f" ({first[f'{b:g}']['flagged']} flagged)" if first else "") for b in BUDGETS]
    out += ["", ("Audit recall / precision of the planted hubs at each budget (share of the collection flagged; "
            "with 15 planted in 5,015 points a budget under 0.3% flags fewer points than were planted, so "
            "recall there is at most flagged / 15):"), "",
            "| set | attack | " + " | ".join(heads) + " |", "|---|---|" + "---:|" * len(BUDGETS)]
    for s in results:
        for r in s["attacks"]:
            cells = [f"{v['recall']:.2f} / {v['precision']:.2f}" for v in r["audit"].values()]
            out.append(f"| {s['set']} | {r['attack']} | " + " | ".join(cells) + " |")
    out += ["", "R@1 of the evaluated queries (N = 100):", "",
            "| set | clean raw | clean dualis | attack | poisoned raw | poisoned dualis | dualis + quarantine |",
            "|---|---:|---:|---|---:|---:|---:|"]
    for s in results:
        for r in s["attacks"]:
            out.append(f"| {s['set']} | {s['clean']['r1_raw']:.4f} | {s['clean']['r1_dualis']:.4f} | {r['attack']} "
                       f"| {r['r1']['raw']:.4f} | {r['r1']['dualis']:.4f} | {r['r1']['dualis_quarantine']:.4f} |")
    out += ["", "Audit cost (clean collection, median of the runs):", "",
            ("| set | points | precompute s | audit s (stored statistics reused) | audit / precompute "
            "| audit s without stored statistics (poisoned collections, median) |"), "|---|---:|---:|---:|---:|---:|"]
    for s in results:
        c = s["clean"]
        cold = np.median([r["audit_s"] for r in s["attacks"]]) if s["attacks"] else float("nan")
        out.append(f"| {s['set']} | {s['points']:,} | {c['precompute_s']:.2f} | {c['audit_s']:.2f} "
                   f"| {c['audit_over_precompute']:.2f}x | {cold:.2f} |")
    out += ["", ("Clean collections: the points the audit flags at budget 0.5% (natural hubs; the first "
                 f"{CLEAN_ROWS} per set here, all in the JSON), their k-occurrence (top-10) in the query bank raw -> "
                 "normalised and in the evaluated queries' lists raw -> dualis:"), "",
            "| set | id | score | k-occ bank raw -> normalised | k-occ eval raw -> dualis |", "|---|---:|---:|---:|---:|"]
    for s in results:
        c = s["clean"]
        for f in c["flagged"][:CLEAN_ROWS]:
            out.append(f"| {s['set']} | {f['id']} | {f['score']:.1f} | {f['kocc_bank']} -> "
                       f"{f['kocc_bank_normalized']} | {f['kocc_eval_raw']} -> {f['kocc_eval_dualis']} |")
        fl = c["flagged"]
        if fl:
            med = {key: float(np.median([f[key] for f in fl])) for key in fl[0] if key.startswith("kocc")}
            out.append(f"| {s['set']} | all {len(fl)} flagged, median | | {med['kocc_bank']:.0f} -> "
                       f"{med['kocc_bank_normalized']:.0f} (collection median {c['kocc_bank_median']:.0f}) "
                       f"| {med['kocc_eval_raw']:.0f} -> {med['kocc_eval_dualis']:.0f} |")
    return "\n".join(out)


def goals(results: list[dict[str, Any]]) -> str:
    """The issue-16 goals, met or not, per set and attack."""
    out = ["| set | attack | dualis share <= 1% | poisoned dualis R@1 >= clean raw R@1 | recall at 0.5% >= 0.9 |",
           "|---|---|---|---|---|"]
    yes = lambda ok: "yes" if ok else "**no**"
    for s in results:
        for r in s["attacks"]:
            out.append(f"| {s['set']} | {r['attack']} | {yes(r['share']['dualis'] <= 0.01)} "
                       f"({_pct(r['share']['dualis'])}) | {yes(r['r1']['dualis'] >= s['clean']['r1_raw'])} "
                       f"| {yes(r['audit']['0.005']['recall'] >= 0.9)} ({r['audit']['0.005']['recall']:.2f}) |")
    cost = ", ".join(f"{s['set']} {s['clean']['audit_over_precompute']:.2f}x" for s in results)
    return "\n".join(out) + f"\n\nAudit cost <= 2x precompute: {cost}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--data", nargs="+", default=list(SETS), help=f"sets under ../shared/data (default {SETS})")
    ap.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS, help="attacks (default all)")
    ap.add_argument("--hubs", type=int, default=15, help="planted hubs per attack (default 15)")
    ap.add_argument("--queries", type=int, default=4000, help="evaluated queries (default 4000: all but the sample)")
    ap.add_argument("--reps", type=int, default=3, help="timed runs of audit and precompute (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the query split and the attacks (default 0)")
    ap.add_argument("--tables-from", metavar="FILE", help="print the tables of an earlier --json file and exit")
    a = ap.parse_args(argv)
    if a.tables_from:
        sets = json.loads(Path(a.tables_from).read_text())["sets"]
        print(tables(sets) + "\n\nGoals (issue 16):\n\n" + goals(sets))
        return 0
    t0 = time.perf_counter()
    res: dict[str, Any] = {"machine": _cpu(), "python": platform.python_version(), "engine": "qdrant-edge",
                           "candidates": N_CAND, "methods": {k: v.to_dict() for k, v in METHODS.items()},
                           "budgets": BUDGETS, "default_budget": DEFAULT_BUDGET, "sets": []}
    print(f"machine: {res['machine']}\n")
    for name in a.data:
        d = load(name)
        if d is None:
            _stderr(f"{name}: not under {DATA}, skipped")
            continue
        res["sets"].append(run_set(d, a))
    print(tables(res["sets"]))
    if res["sets"]:
        print("\nGoals (issue 16):\n")
        print(goals(res["sets"]))
    res["seconds"] = time.perf_counter() - t0
    print(f"\n[{res['seconds']:.0f} s]")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
