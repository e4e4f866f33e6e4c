"""Where a reranked query's time goes on Qdrant Edge: an A/B of its parts.

Run from the project root (needs the ``edge`` extra)::

    python benchmarks/profile_edge.py                      # the table, ~1 minute
    python benchmarks/profile_edge.py --search-threads 1   # shards with one search thread
    python benchmarks/profile_edge.py --json out.json

Each variant below runs once per query vector, in an order that rotates from query to
query (so every variant sees the caches the others leave), ``--reps`` passes over
``--queries`` vectors of wordnet_gloss (or the shipped sample); medians, and the difference
to the plain query:

- plain: ``EdgeShard.query`` of a request built beforehand (limit 10);
- + repr: the same, after printing the request's query (what ``DBNormEdgeShard.query`` must
  do to read the request back);
- built from the vector: ``Query.Nearest(vector.tolist())`` and the request, then the query
  (what ``DBNormEdgeShard.search`` does before the engine call);
- the lane, client / server: ``search`` and ``query`` (limit 10, N = 10), and the engine's
  own time inside ``search`` (client).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import qdrant_edge as qe  # noqa: E402
from bench_edge import PARAMS, load, make_shard  # noqa: E402
from bench_qdrant import _cpu  # noqa: E402

from dbnorm_qdrant.banks import BankSet  # noqa: E402
from dbnorm_qdrant.edge import DBNormEdgeShard  # noqa: E402


class _Timed:
    """The shard, with the time of each query call kept."""

    def __init__(self, shard):
        self.shard, self.times = shard, []

    def __getattr__(self, name):
        return getattr(self.shard, name)

    def query(self, req):
        t0 = time.perf_counter()
        try:
            return self.shard.query(req)
        finally:
            self.times.append(time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--bank", type=int, default=10_000)
    ap.add_argument("--search-threads", type=int, default=None, help="EdgeConfig(max_search_threads=...)")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    d = load(a.bank)
    Q = d["Q"][: a.queries]
    with tempfile.TemporaryDirectory() as tmp:
        shard, cfg = make_shard(Path(tmp) / "s", d["G"], threads=a.search_threads)
        es = DBNormEdgeShard(shard, banks=BankSet(d["QB"], d["GB"]), params=PARAMS, config=cfg, using="v")
        es.precompute(progress=False)
        timed = _Timed(shard)
        es.shard = timed  # the lane's engine calls
        user = [qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist(), using="v"), with_payload=False)
                for q in Q]
        for i in range(len(Q)):  # warm-up: the cache, the lane
            es.query(user[i], candidates=10, mode="client")
            es.search(Q[i], limit=10, candidates=10, mode="server")
        engine: list[float] = []

        def lane_client(i):
            n = len(timed.times)
            es.search(Q[i], limit=10, candidates=10, mode="client")
            engine.extend(timed.times[n:])

        variants = {
            "plain": lambda i: shard.query(user[i]),
            "+ repr of the query": lambda i: (repr(user[i].query), shard.query(user[i])),
            "built from the vector": lambda i: shard.query(qe.QueryRequest(
                limit=10, query=qe.Query.Nearest(Q[i].tolist(), using="v"), with_payload=False)),
            "search, client": lane_client,
            "query, client": lambda i: es.query(user[i], candidates=10, mode="client"),
            "search, server": lambda i: es.search(Q[i], limit=10, candidates=10, mode="server"),
            "query, server": lambda i: es.query(user[i], candidates=10, mode="server"),
        }
        names = list(variants)
        times: dict[str, list[float]] = {k: [] for k in names}
        served = es.fast.served
        for r in range(a.reps):
            for i in range(len(Q)):
                k = (i + r) % len(names)
                for name in names[k:] + names[:k]:
                    t0 = time.perf_counter()
                    variants[name](i)
                    times[name].append(time.perf_counter() - t0)
        assert es.fast.served - served == 4 * a.reps * len(Q), "a lane variant took the whole way"
        shard.close()
    med = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
    med["engine inside search, client"] = float(np.median(engine)) * 1e6
    plain = med["plain"]
    print(f"machine: {_cpu()}; {d['name']}, {len(d['G']):,} points; search threads: "
          f"{a.search_threads or 'engine default'}; limit 10, N = 10, {len(Q)} queries x {a.reps}\n")
    print("| part | median us | - plain us | x plain |\n|---|---:|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.0f} | {v - plain:+.0f} | {v / plain:.2f}x |")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": _cpu(), "search_threads": a.search_threads,
                                            "median_us": med}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
