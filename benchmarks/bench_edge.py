"""Qdrant Edge benchmarks: the rerank's cost on Qdrant's own engine, and its quality.

Run from the project root (needs the ``edge`` extra: ``pip install "dbnorm-qdrant[edge]"``)::

    python benchmarks/bench_edge.py                  # the tables (Markdown), ~3 minutes
    python benchmarks/bench_edge.py --json out.json  # also write them as JSON
    python benchmarks/bench_edge.py --big 0 --no-local   # the 5k engine rows and quality only

Latency. Data: wordnet_gloss G_test (5,000 x 384, Cosine; ``../shared/data``) or, without
it, the shipped sample's gallery (1,500); and ``--big`` (default 100,000) synthetic 384-d
Gaussian points, searched by full scan as a freshly filled shard is (the engine has no
background optimiser; ``--hnsw`` runs ``optimize()`` first, which takes minutes here).
Banks: ``--bank`` rows of Q_bank / G_bank (synthetic: 2,000 + 2,000); ``dualis``
(beta_q 20, beta_g 3). For N = 10 and 100 three requests run per query vector, in an order
that rotates from query to query, ``--reps`` passes over ``--queries`` vectors:

- plain: ``EdgeShard.query`` with ``limit = N`` (no payload);
- client: ``DBNormEdgeShard.query`` (limit 10, N candidates, ``mode="client"``): the
  rerank in this process, statistics from the cache (warmed by ``precompute``);
- server: the same with ``mode="server"``: a prefetch of N and a formula in the engine
  over the statistics stored (and indexed) in the payload.

Figures: median and p95 in microseconds, and each as a ratio to the plain query of the
same N. "engine" is the share of the reranked query's time spent inside the engine's
calls (the rest: request translation, the layer's planning and rerank, results).
``--search-threads 1`` gives the shards one search thread (``EdgeConfig(max_search_threads=1)``)
instead of the engine's default pool, which on a few cores is quicker for one query at a
time, for the plain query and for the layer's Python after it. The
same columns on qdrant-client's local mode at 5k (at 100k local mode takes ~0.2 s a
query: left out).

Quality (wordnet_gloss G_test when present, else the sample): R@1 of ``dualis`` through
the edge driver at N = 100 (client mode) against the raw and the matrix-level R@1 (the
whole gallery normalised), and the share of queries whose server-mode top 10 equals the
client-mode top 10.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import qdrant_edge as qe  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

from dbnorm_qdrant.banks import BankSet  # noqa: E402
from dbnorm_qdrant.core.methods import Params  # noqa: E402
from dbnorm_qdrant.edge import DBNormEdgeShard  # noqa: E402
from dbnorm_qdrant.qdrant import DBNormClient  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_qdrant import _cpu  # noqa: E402  (the machine line, as the other benchmarks print it)

DATA = ROOT.parent / "shared" / "data" / "wordnet_gloss"
PARAMS = Params(method="dualis", beta_q=20.0, beta_g=3.0)
NS = (10, 100)


def load(bank: int) -> dict:
    """wordnet_gloss (G_test 5,000) from ../shared, else the shipped sample (1,500)."""
    if (DATA / "G_test.npy").is_file():
        ld = lambda n: np.load(DATA / f"{n}.npy", allow_pickle=False).astype(np.float32)  # noqa: E731
        return {"name": "wordnet_gloss G_test", "Q": ld("Q_test"), "G": ld("G_test"), "QB": ld("Q_bank")[:bank],
                "GB": ld("G_bank")[:bank]}
    from dbnorm_qdrant.datasets import load_sample

    s = load_sample()
    return {"name": "shipped sample", "Q": s.queries, "G": s.gallery, "QB": s.query_bank, "GB": s.gallery_bank}


def make_shard(path: Path, G: np.ndarray, optimize: bool = False, threads: int | None = None):
    cfg = qe.EdgeConfig(vectors={"v": qe.EdgeVectorParams(size=G.shape[1], distance=qe.Distance.Cosine)},
                        max_search_threads=threads)
    shard = qe.EdgeShard.create(str(path), cfg)
    for i in range(0, len(G), 5000):
        shard.update(qe.UpdateOperation.upsert_points(
            [qe.Point(j, {"v": G[j]}, {"i": j}) for j in range(i, min(len(G), i + 5000))]))
    if optimize:
        shard.optimize()
    return shard, cfg


class _TimedShard:
    """The shard, with the time spent in its query calls added up."""

    def __init__(self, shard):
        self.shard, self.t = shard, 0.0

    def __getattr__(self, name):
        f = getattr(self.shard, name)

        def call(*a, **kw):
            t0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                self.t += time.perf_counter() - t0
        return call


def _interleaved(variants: dict, n: int, reps: int) -> dict[str, list[float]]:
    """Run ``variants[name](i)`` for i < n, ``reps`` passes, the order rotating per query; seconds."""
    names = list(variants)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for i in range(n):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.perf_counter()
                variants[name](i)
                out[name].append(time.perf_counter() - t0)
    return out


def _row(engine: str, points: int, N: int, times: dict, share: dict | None = None) -> dict:
    med = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
    p95 = {k: float(np.percentile(v, 95)) * 1e6 for k, v in times.items()}
    row = {"engine": engine, "points": points, "N": N, "plain_us": med["plain"], "plain_p95_us": p95["plain"]}
    for k in [k for k in ("client", "server", "client_search", "server_search") if k in med]:
        row[f"{k}_us"], row[f"{k}_p95_us"] = med[k], p95[k]
        row[f"{k}_x"], row[f"{k}_p95_x"] = med[k] / med["plain"], p95[k] / p95["plain"]
        if share is not None:
            row[f"{k}_engine_share"] = share[k]
    return row


def bench_edge(G, Q, banks: BankSet, nq: int, reps: int, label: str, optimize: bool = False,
               threads: int | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        shard, cfg = make_shard(Path(d) / "s", G, optimize, threads)
        es = DBNormEdgeShard(shard, banks=banks, params=PARAMS, config=cfg, using="v")
        es.precompute(progress=False)  # statistics in the payload (server) and in the cache (client)
        timed = _TimedShard(shard)
        es.client._colls[es.collection].shard = es.shard = timed  # the whole way and the lane
        rows = []
        for N in NS:
            plain = [qe.QueryRequest(limit=N, query=qe.Query.Nearest(q.tolist(), using="v"), with_payload=False)
                     for q in Q[:nq]]
            rr = [qe.QueryRequest(limit=min(10, N), query=qe.Query.Nearest(q.tolist(), using="v"),
                                  with_payload=False) for q in Q[:nq]]
            qv = Q[:nq]
            run = {
                "client": lambda i: es.query(rr[i], candidates=N, mode="client"),
                "server": lambda i: es.query(rr[i], candidates=N, mode="server"),
                "client_search": lambda i: es.search(qv[i], limit=min(10, N), candidates=N, mode="client"),
                "server_search": lambda i: es.search(qv[i], limit=min(10, N), candidates=N, mode="server"),
            }
            share = {}
            for k, f in run.items():  # warm-up, and the engine's share of the time
                timed.t, t0 = 0.0, time.perf_counter()
                for i in range(nq):
                    f(i)
                share[k] = timed.t / (time.perf_counter() - t0)
            times = _interleaved({"plain": lambda i: shard.query(plain[i]), **run}, nq, reps)
            rows.append(_row("edge", len(G), N, times, share) | {"search_threads": threads})
            print(f"  {label} N={N} done", file=sys.stderr, flush=True)
        shard.close()
    return rows


def bench_local(G, Q, banks: BankSet, nq: int, reps: int) -> list[dict]:
    c = QdrantClient(":memory:")
    c.create_collection("c", vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    c.upload_collection("c", vectors=G, ids=list(range(len(G))), payload=[{"i": i} for i in range(len(G))], wait=True)
    db = DBNormClient(c, banks=banks, params=PARAMS)
    db.precompute("c", progress=False)
    qs = [q.tolist() for q in Q[:nq]]
    rows = []
    for N in NS:
        times = _interleaved({
            "plain": lambda i: c.query_points("c", query=qs[i], limit=N, with_payload=False),
            "client": lambda i: db.query_points("c", query=qs[i], limit=min(10, N), candidates=N, mode="client",
                                                with_payload=False),
            "server": lambda i: db.query_points("c", query=qs[i], limit=min(10, N), candidates=N, mode="server",
                                                with_payload=False),
        }, nq, reps)
        rows.append(_row("local", len(G), N, times))
    return rows


def quality(d: dict, nq: int | None) -> dict:
    """R@1 (query i matches item i) raw / matrix level / edge driver at N = 100, and the
    share of queries whose server-mode top 10 equals the client-mode top 10."""
    Q, G = d["Q"][:nq], d["G"]
    banks = BankSet(d["QB"], d["GB"])
    truth = np.arange(len(Q))
    S = banks.normalizer(PARAMS, unit=True).scores(Q, G)
    r1_raw = float(np.mean(np.argmax(Q @ G.T, axis=1) == truth))
    r1_mat = float(np.mean(np.argmax(S, axis=1) == truth))
    with tempfile.TemporaryDirectory() as tmp:
        shard, cfg = make_shard(Path(tmp) / "s", G)
        es = DBNormEdgeShard(shard, banks=banks, params=PARAMS, config=cfg, using="v", candidates=100)
        reqs = [qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist(), using="v")) for q in Q]
        chunks = [qe.QueryBatchRequest(reqs[i:i + 256]) for i in range(0, len(reqs), 256)]
        cli = [r for b in chunks for r in es.query_batch(b, mode="client")]
        es.precompute(progress=False)
        srv = [r for b in chunks for r in es.query_batch(b, mode="server")]
        shard.close()
    r1_edge = float(np.mean(np.array([r[0].id if r else -1 for r in cli]) == truth))
    same = float(np.mean([[p.id for p in a] == [p.id for p in b] for a, b in zip(cli, srv)]))
    gain = (r1_edge - r1_raw) / (r1_mat - r1_raw) if r1_mat != r1_raw else float("nan")
    return {"data": d["name"], "queries": len(Q), "gallery": len(G), "N": 100, "r1_raw": r1_raw, "r1_matrix": r1_mat,
            "r1_edge": r1_edge, "gain_kept": gain, "server_top10_equals_client": same}


COLUMNS = ("client_search", "server_search", "client", "server")


def table(rows: list[dict]) -> str:
    """The latency rows as Markdown: per variant, the median in us and the median (p95) as a
    ratio to the plain query's; the engine's share of each variant's time."""
    out = ["| engine | points | N | plain median us (p95) | client `search` | server `search` | client `query` "
           "| server `query` | engine share |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{r[k + '_us']:.0f} us: {r[k + '_x']:.2f}x ({r[k + '_p95_x']:.2f}x)" if k + "_us" in r else "-"
                 for k in COLUMNS]
        share = " / ".join(f"{r[k + '_engine_share']:.0%}" for k in COLUMNS if k + "_engine_share" in r)
        eng = r["engine"] + (f" ({r['search_threads']} search thread{'s' * (r['search_threads'] > 1)})"
                             if r.get("search_threads") else "")
        out.append(f"| {eng} | {r['points']:,} | {r['N']} | {r['plain_us']:.0f} ({r['plain_p95_us']:.0f}) "
                   f"| {' | '.join(cells)} | {share} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--queries", type=int, default=200, help="query vectors per latency row (default 200)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved passes (default 3)")
    ap.add_argument("--bank", type=int, default=10_000, help="bank rows of wordnet (default 10000)")
    ap.add_argument("--big", type=int, default=100_000, help="synthetic points (default 100000; 0: skip)")
    ap.add_argument("--big-queries", type=int, default=100, help="query vectors per synthetic row (default 100)")
    ap.add_argument("--hnsw", action="store_true",
                    help="build the synthetic shard's HNSW index (optimize(); minutes on 2 cores) instead of the "
                         "full scan a freshly filled shard runs")
    ap.add_argument("--search-threads", type=int, default=None,
                    help="the shards' EdgeConfig(max_search_threads=...) (default: the engine's, from the CPU count)")
    ap.add_argument("--local-queries", type=int, default=60, help="query vectors per local-mode row (default 60)")
    ap.add_argument("--no-local", action="store_true", help="skip the local-mode rows")
    ap.add_argument("--quality-queries", type=int, default=None, help="queries for the quality figures (default all)")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    res: dict = {"machine": _cpu(), "python": platform.python_version(), "qdrant_edge": "0.9.0", "method": "dualis",
                 "rows": []}
    print(f"machine: {res['machine']}\n")
    d = load(a.bank)
    banks = BankSet(d["QB"], d["GB"])
    res["rows"] += bench_edge(d["G"], d["Q"], banks, a.queries, a.reps, f"edge {len(d['G'])}",
                              threads=a.search_threads)
    if not a.no_local:
        res["rows"] += bench_local(d["G"], d["Q"], banks, a.local_queries, 2)
    if a.big:
        rng = np.random.default_rng(0)
        X = rng.normal(size=(a.big, 384)).astype(np.float32)
        Qs = (X[rng.choice(a.big, a.big_queries, replace=False)] + rng.normal(size=(a.big_queries, 384)) * 0.5)
        B = rng.normal(size=(4000, 384)).astype(np.float32)
        res["rows"] += bench_edge(X, Qs.astype(np.float32), BankSet(B[:2000], B[2000:]), a.big_queries, 2,
                                  f"edge {a.big}", optimize=a.hnsw, threads=a.search_threads)
    print(f"Latency ({d['name']} and synthetic {a.big:,} x 384 ({'HNSW' if a.hnsw else 'full scan'}); dualis; "
          f"limit 10 from N candidates; {a.queries} queries x {a.reps} interleaved passes (synthetic "
          f"{a.big_queries} x 2, local {a.local_queries} x 2)):\n")
    print(table(res["rows"]))
    res["quality"] = q = quality(d, a.quality_queries)
    print(f"\nQuality ({q['data']}, {q['queries']} queries, N = 100, dualis): R@1 raw {q['r1_raw']:.4f}, matrix "
          f"{q['r1_matrix']:.4f}, edge driver {q['r1_edge']:.4f} -> {q['gain_kept']:.1%} of the matrix-level gain; "
          f"server top 10 == client top 10 for {q['server_top10_equals_client']:.1%} of queries")
    res["seconds"] = time.perf_counter() - t_start
    print(f"\n[{res['seconds']:.0f} s]")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
