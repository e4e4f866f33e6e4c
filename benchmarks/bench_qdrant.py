"""Qdrant-layer benchmarks: added latency of reranking, rerank compute, and R@1 against N.

Run from the project root (reads ../shared/data/wordnet_gloss; local-mode Qdrant)::

    python benchmarks/bench_qdrant.py                    # both tables (Markdown)
    python benchmarks/bench_qdrant.py --json out.json    # also write them as JSON
    python benchmarks/bench_qdrant.py --only latency     # latency | recall

Latency: G_test (5000 points, Cosine) in an in-memory collection; every reranked query
(limit 10, N = 100 candidates, set on the client) is paired with a plain ``query_points``
of the same N = 100 and the same query vector in the same process (the variants run in
an order that rotates from query to query), and every figure is a median over queries. The added latency is the median of the per-query paired differences (and
ratios), so the load of a shared machine drifts out. Variants:

- ``cached``: statistics in the in-memory cache (warmed by one pass over the queries);
- ``server``: statistics in the payload (``precompute``), the rerank runs inside
  Qdrant as a ``FormulaQuery`` over a prefetch of N;
- ``cold``: lazy compute, the cache emptied before every query (the candidates'
  vectors come back with the candidate query; statistics from the kernels);
- ``cached_oop``: as ``cached``, but the local-mode Qdrant runs in a child process
  (calls and results over a pipe), paired with a plain query through the same pipe; a
  loop of its own, with the two processes pinned to different cores;
- warm: the cached rerank with no Qdrant work between queries (a stub client hands out
  recorded responses), so the CPU caches stay warm: the compute alone;
- floor: in process, only the steps no wrapper can skip after the candidate query (ids
  and scores into one array, the compiled rerank, the returned points updated), timed
  like ``cached``: what cold caches cost before any of the wrapper's own work.

"Rerank compute" is the wall time of the wrapper minus the time spent inside the
wrapped client's calls (measured by a timing proxy around the client): planning,
statistics lookup, scoring, sorting and building the returned points; freeing the N
candidates Qdrant returned counts as client time, as it does in the plain query's
timing. In-process local mode scans the 5000 vectors (7.7 MB)
right before each rerank, which evicts the rerank's code and data from the CPU's
L1/L2 caches: each rerank then runs cache-cold. With Qdrant in another process (the
``cached_oop`` row; a Qdrant server is the same) the scan runs on another core.

R@1 against N: R@1 of the first ``--r1-queries`` test queries through
``DBNormClient.query_batch_points`` reranking only the raw top N, next to the raw
R@1 and the matrix-level R@1 (the whole 5000-item gallery normalised) of the same
queries, same banks and betas.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qdrant_client import QdrantClient, models  # noqa: E402

from dbnorm_qdrant.core.methods import Params  # noqa: E402
from dbnorm_qdrant.qdrant import BankSet, DBNormClient  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "wordnet_gloss"
BETAS = {"is": dict(beta_q=20.0), "dualis": dict(beta_q=20.0, beta_g=3.0)}


class _Timed:
    """A client proxy that adds up the wall time spent inside the client's calls.

    It keeps the last result, freed at the start of the next call: freeing the N
    candidates Qdrant returned is client time (the plain query's timing includes freeing
    its N points too), not rerank compute."""

    def __init__(self, client):
        self._c = client
        self.io = 0.0
        self._last = None

    def __getattr__(self, name):
        f = getattr(self._c, name)
        if not callable(f):
            return f

        def call(*a, **kw):
            t0 = time.perf_counter()
            self._last = None
            try:
                self._last = f(*a, **kw)
                return self._last
            finally:
                self.io += time.perf_counter() - t0

        return call


def _serve(conn, G: np.ndarray, names: tuple[str, ...]) -> None:
    """Child process: a local-mode Qdrant answering ``(method, kwargs)`` calls over a pipe."""
    c = make_client(G, names)
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, kw = msg
        try:
            conn.send((True, getattr(c, name)(**kw)))
        except Exception as e:  # handed back to the caller
            conn.send((False, e))


class _Remote:
    """A client proxy for a local-mode Qdrant in another process (see :func:`_serve`).

    Qdrant's search then runs on the other core, as a Qdrant server would, instead of
    streaming the collection through this process's CPU caches before every rerank."""

    def __init__(self, G: np.ndarray, names: tuple[str, ...]):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, G, names), daemon=True)
        self._proc.start()
        self.pid = self._proc.pid

    def __getattr__(self, name):
        def call(**kw):
            self._conn.send((name, kw))
            ok, v = self._conn.recv()
            if not ok:
                raise v
            return v

        return call

    def close(self) -> None:
        self._conn.send(None)
        self._proc.join(10)


class _Replay:
    """A stub client whose ``query_points`` hands out recorded responses, deep copies made
    up front (the layer turns the returned points into its results in place)."""

    def __init__(self, responses):
        import copy

        self._copies = [copy.deepcopy(r) for r in responses]
        self._i = 0

    def query_points(self, **kw):
        self._i += 1
        return self._copies[self._i - 1]


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        name = platform.processor() or "unknown CPU"
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {n} cores"


def load(bank: int):
    ld = lambda n: np.load(DATA / f"{n}.npy", allow_pickle=False)  # noqa: E731
    d = {"Q": ld("Q_test"), "G": ld("G_test"), "QB": ld("Q_bank")[:bank], "GB": ld("G_bank")[:bank], "gt": ld("gt_test")}
    return d


def make_client(G: np.ndarray, names=("wn",)) -> QdrantClient:
    c = QdrantClient(":memory:")
    for name in names:
        c.create_collection(name, vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
        c.upload_collection(name, vectors=G, ids=list(range(len(G))), payload=[{"i": i} for i in range(len(G))], wait=True)
    return c


# --------------------------------------------------------------------------- latency
def _timed(rows: dict, comp: dict, name: str, f, proxy: _Timed) -> None:
    """Run ``f``; record its wall time in ``rows[name]`` and its compute (wall time minus
    the time inside ``proxy``'s client calls) in ``comp[name]``."""
    proxy.io = 0.0
    t = time.perf_counter()
    f()
    dt = time.perf_counter() - t
    rows[name].append(dt)
    comp[name].append(dt - proxy.io)


def _bare_rerank(db: DBNormClient, collection: str, n_cand: int):
    """The unavoidable steps of a cached rerank alone, as a floor for the wrapper's compute:
    one candidate query, the ids and raw scores into one array, the compiled rerank over
    the cached biases, the returned points updated (no parsing, planning or checks)."""
    core = db.core
    info = core._info[(collection, None)]
    fp = core.normalizer(collection, info).fingerprint

    def rerank(client, q, limit):
        pts = client.query_points(collection_name=collection, query=q, limit=n_cand).points
        pos, scores = db.cache.additive_topk(collection, [p.id for p in pts], [p.score for p in pts], fp, 1.0, 0, limit)
        out = [pts[j] for j in pos]
        for pt, v in zip(out, scores):
            pt.score = v
        return out

    return rerank


def _latency_in_process(d, qs, banks, params, n_cand: int, limit: int, rows: dict, comp: dict) -> tuple[float, list]:
    """The in-process variants (cached, server, cold) and the warm replay; returns the
    precompute time and the warm compute times."""
    c = make_client(d["G"], names=("wn_lazy", "wn_payload"))
    lazy = DBNormClient(c, banks=banks, params=params, mode="client", candidates=n_cand)
    srv = DBNormClient(c, banks=banks, params=params, mode="server", candidates=n_cand)
    cold = DBNormClient(c, banks=banks, params=params, mode="client", candidates=n_cand)  # cache emptied per query
    t0 = time.perf_counter()
    srv.precompute("wn_payload", progress=False)
    t_pre = time.perf_counter() - t0
    # warm up every path (and fill the cache of the lazy client)
    for q in qs:
        lazy.query_points("wn_lazy", query=q, limit=limit)
    for q in qs[:20]:
        srv.query_points("wn_payload", query=q, limit=limit)
        c.query_points("wn_lazy", query=q, limit=n_cand)
    # parity check: the server path ranks like the client path
    a = lazy.query_points("wn_lazy", query=qs[0], limit=limit)
    b = srv.query_points("wn_payload", query=qs[0], limit=limit)
    assert [p.id for p in a.points] == [p.id for p in b.points]
    for q in qs[:5]:
        cold.query_points("wn_lazy", query=q, limit=limit)

    tl, ts, tc = _Timed(c), _Timed(c), _Timed(c)
    lazy.client, srv.client, cold.client = tl, ts, tc

    def plain(q):
        t = time.perf_counter()
        c.query_points("wn_lazy", query=q, limit=n_cand)
        rows["plain"].append(time.perf_counter() - t)

    def cold_query(q):
        cold.cache.clear()
        cold.core._warm.clear()  # cold: fetch the candidates' vectors with the candidate query
        _timed(rows, comp, "cold", lambda: cold.query_points("wn_lazy", query=q, limit=limit), tc)

    floor = _bare_rerank(lazy, "wn_lazy", n_cand)
    tf = _Timed(c)
    steps = [
        plain,
        lambda q: _timed(rows, comp, "cached", lambda: lazy.query_points("wn_lazy", query=q, limit=limit), tl),
        lambda q: _timed(rows, comp, "server", lambda: srv.query_points("wn_payload", query=q, limit=limit), ts),
        cold_query,
        lambda q: _timed(rows, comp, "floor", lambda: floor(tf, q, limit), tf),
    ]
    for i, q in enumerate(qs):  # the order rotates, so no variant always follows the same one
        for j in range(len(steps)):
            steps[(i + j) % len(steps)](q)

    # the cached rerank with warm CPU caches: the same queries back to back against a
    # stub client that hands out recorded candidate responses (copies made beforehand)
    lazy.client = _Replay([c.query_points("wn_lazy", query=q, limit=n_cand) for q in qs])
    warm = []
    for q in qs:
        t = time.perf_counter()
        lazy.query_points("wn_lazy", query=q, limit=limit)
        warm.append(time.perf_counter() - t)
    return t_pre, warm


def _latency_out_of_process(d, qs, banks, params, n_cand: int, limit: int, rows: dict, comp: dict) -> None:
    """The cached rerank against a Qdrant in another process, as a server would be: a loop
    of its own (in-process queries would evict this process's caches), this process and
    Qdrant's pinned to different cores where the machine has two."""
    remote = _Remote(d["G"], ("wn_lazy",))
    pin = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    cpus = sorted(os.sched_getaffinity(0)) if pin else []
    if pin:
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(remote.pid, set(cpus[1:]))
    try:
        oop = DBNormClient(remote, banks=banks, params=params, mode="client", candidates=n_cand)
        for q in qs:
            oop.query_points("wn_lazy", query=q, limit=limit)
        to = _Timed(remote)
        oop.client = to
        for q in qs:
            t = time.perf_counter()
            remote.query_points(collection_name="wn_lazy", query=q, limit=n_cand)
            rows["plain_oop"].append(time.perf_counter() - t)
            _timed(rows, comp, "cached_oop", lambda: oop.query_points("wn_lazy", query=q, limit=limit), to)
    finally:
        if pin:
            os.sched_setaffinity(0, set(cpus))
        remote.close()


def bench_latency(d, nq: int, method: str, n_cand: int = 100, limit: int = 10) -> dict:
    banks = BankSet(d["QB"], d["GB"])
    params = Params(method=method, **BETAS[method])
    qs = [q.tolist() for q in d["Q"][:nq]]
    rows: dict[str, list] = {k: [] for k in ("plain", "cached", "server", "cold", "plain_oop", "cached_oop", "floor")}
    comp: dict[str, list] = {k: [] for k in ("cached", "server", "cold", "cached_oop", "floor")}
    t_pre, warm = _latency_in_process(d, qs, banks, params, n_cand, limit, rows, comp)
    _latency_out_of_process(d, qs, banks, params, n_cand, limit, rows, comp)
    out = {"method": method, "N": n_cand, "limit": limit, "queries": nq, "bank_rows": len(d["QB"]),
           "precompute_s": round(t_pre, 2), "plain_ms": round(1e3 * float(np.median(rows["plain"])), 3),
           "plain_oop_ms": round(1e3 * float(np.median(rows["plain_oop"])), 3),
           "compute_warm_us": round(1e6 * float(np.median(warm)), 1),
           "compute_floor_us": round(1e6 * float(np.median(comp["floor"])), 1), "variants": {}}
    for k in ("cached", "server", "cold", "cached_oop"):
        v = np.asarray(rows[k])
        plain = np.asarray(rows["plain_oop" if k == "cached_oop" else "plain"])
        out["variants"][k] = {
            "median_ms": round(1e3 * float(np.median(v)), 3),
            "added_ms": round(1e3 * float(np.median(v - plain)), 3),
            "added_pct": round(100 * float(np.median(v / plain - 1)), 1),
            "compute_us": round(1e6 * float(np.median(comp[k])), 1),
        }
    return out


def latency_table(r: dict) -> str:
    lines = [
        f"Added latency per query, {r['method']}, limit {r['limit']}, N = {r['N']} "
        f"({r['queries']} queries, banks {r['bank_rows']} + {r['bank_rows']}; plain `query_points` "
        f"with limit {r['N']}: median {r['plain_ms']:.2f} ms)",
        "",
        "| statistics | median latency (ms) | added vs plain (ms) | added vs plain (%) | rerank compute (us) |",
        "|---|---:|---:|---:|---:|",
    ]
    label = {"cached": "cached in memory", "server": "payload, server-side rescoring", "cold": "cold (lazy compute)",
             "cached_oop": f"cached in memory, Qdrant in another process (plain: {r['plain_oop_ms']:.2f} ms)"}
    for k, v in r["variants"].items():
        lines.append(f"| {label[k]} | {v['median_ms']:.2f} | {v['added_ms']:+.2f} | {v['added_pct']:+.1f} | {v['compute_us']:.0f} |")
    lines.append(f"| cached in memory, CPU caches warm (replayed responses, back to back) | | | | {r['compute_warm_us']:.0f} |")
    lines.append(f"| floor: the unavoidable steps alone, in process (no parsing, planning, checks) | | | | "
                 f"{r['compute_floor_us']:.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- recall
def bench_recall(d, nq: int, ns=(10, 50, 100, 200, 500, 5000)) -> dict:
    c = make_client(d["G"])
    banks = BankSet(d["QB"], d["GB"])
    Q, G, gt = d["Q"][:nq], d["G"], d["gt"][:nq]
    raw = float(np.mean(np.argmax(Q @ G.T, axis=1) == gt))
    out = {"queries": nq, "bank_rows": len(d["QB"]), "raw": raw, "methods": {}}
    for method in ("is", "dualis"):
        p = Params(method=method, **BETAS[method])
        nz = banks.normalizer(p, unit=True)
        mat = float(np.mean(np.argmax(nz.scores(Q, G), axis=1) == gt))
        db = DBNormClient(c, banks=banks, params=p, mode="client")
        per_n = {}
        for n in ns:
            hits = 0
            for i0 in range(0, nq, 100):
                reqs = [models.QueryRequest(query=q.tolist(), limit=1, with_payload=False) for q in Q[i0 : i0 + 100]]
                res = db.query_batch_points("wn", reqs, candidates=n)
                hits += sum(int(r.points[0].id == g) for r, g in zip(res, gt[i0 : i0 + 100]))
            per_n[n] = hits / nq
        out["methods"][method] = {"matrix": mat, "by_N": per_n}
    return out


def recall_table(r: dict, ns) -> str:
    head = " | ".join(("all" if n >= 5000 else str(n)) for n in ns)
    lines = [
        f"R@1 against N ({r['queries']} queries, gallery 5000, banks {r['bank_rows']} + {r['bank_rows']}; "
        f"raw R@1 {100 * r['raw']:.1f}%)",
        "",
        f"| method | N = {head} | matrix level |",
        "|---|" + "---:|" * (len(ns) + 1),
    ]
    for m, v in r["methods"].items():
        cells = " | ".join(f"{100 * v['by_N'][n]:.1f}" for n in ns)
        lines.append(f"| {m} | {cells} | {100 * v['matrix']:.1f} |")
    lines[2] = "| method | " + " | ".join(f"N={'all' if n >= 5000 else n}" for n in ns) + " | matrix level |"
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", choices=("latency", "recall"))
    ap.add_argument("--queries", type=int, default=300, help="queries timed per variant")
    ap.add_argument("--r1-queries", type=int, default=1000)
    ap.add_argument("--bank", type=int, default=10000, help="rows of each bank")
    ap.add_argument("--method", default="dualis", choices=tuple(BETAS))
    args = ap.parse_args(argv)
    d = load(args.bank)
    res: dict = {"machine": _cpu(), "python": platform.python_version()}
    import qdrant_client

    res["qdrant_client"] = qdrant_client.__version__ if hasattr(qdrant_client, "__version__") else "?"
    print(f"machine: {res['machine']}\n")
    if args.only in (None, "latency"):
        res["latency"] = bench_latency(d, args.queries, args.method)
        print(latency_table(res["latency"]) + "\n")
    ns = (10, 50, 100, 200, 500, 5000)
    if args.only in (None, "recall"):
        res["recall"] = bench_recall(d, args.r1_queries, ns)
        print(recall_table(res["recall"], ns) + "\n")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
