"""Hybrid search benchmarks: plain vs normalised dense + sparse fusion (RRF, DBSF), groups, latency.

Run from the project root (reads ../shared/data; needs the ``edge`` extra: the BM25
encoder and the edge engine, ``pip install "dbnorm-qdrant[edge]"``)::

    python benchmarks/bench_hybrid.py                      # the tables (Markdown), ~11 minutes
    python benchmarks/bench_hybrid.py --json out.json      # also write them as JSON
    python benchmarks/bench_hybrid.py --sets wordnet_gloss --json out.json   # one set (results_hybrid.json
                                                           # holds one such run per set)
    python benchmarks/bench_hybrid.py --queries 200 --local-queries 30   # a quick run

On 2 shared cores local mode takes most of the time (its ``precompute`` writes 5,000
payloads in ~2 minutes a set); ``--local-queries 0`` leaves it out (~2 minutes a set).

Data: wordnet_gloss and bible_kjv_web (``--sets``): the first ``--queries`` (1,000) test
queries against the first ``--points`` (5,000) gallery items, all-MiniLM-L6-v2; banks
``--bank`` rows of Q_bank / G_bank; method ``dualis`` with the default betas (20, 3).
Collection: a dense vector ``dense`` (Cosine) and a sparse vector ``words``
(``Modifier.IDF``) holding the gallery text's BM25 vector (``BM25Encoder``, offline, its
``avg_len`` the gallery's mean length: ``dbnorm_qdrant.cli.hybrid.fitted_bm25``; ``--avg-len
256`` gives the encoder's default); a query's sparse vector is the BM25 query vector of its
text. A hybrid request: ``prefetch=[dense (limit 100), words (limit 100)]``, ``FusionQuery``
RRF or DBSF, limit 10; the wrapper reranks ``--candidates`` (400) raw candidates per dense
branch on the client and server paths.

Engines: the edge engine (``EdgeClient``, all queries) and qdrant-client's local mode (its
sparse search is pure Python, ~0.1 s a query at 5,000 points: the first ``--local-queries``
queries only). The two score the sparse branch alike up to ~1e-4 and the order of tied
scores, so each engine has its own reference rows.

Quality rows (R@1 and R@10 in percent; the answer of query i is gallery item i):

- plain dense, sparse only: one branch, limit 10; normalised dense: the matrix level
  (the whole gallery normalised by ``BankNormalizer``);
- plain hybrid: the engine's fusion, and ``qdrant_client.hybrid.fusion`` over the engine's
  two branches ("client fusion");
- reference normalised hybrid: the dense branch replaced by the top 100 of the
  matrix-level normalised scores ("matrix": what the index path computes), or of the
  normalised scores of the raw top ``--candidates`` ("rerank of N": the client and server
  paths), fused with ``qdrant_client.hybrid.fusion`` with the engine's sparse branch;
- DBNormClient: the same hybrid request through the wrapper, ``mode=`` client, server
  (after ``precompute``) and index (after ``precompute(index=True)``); "plan" is what
  ``DBNormClient.explain`` says (client: fused here; engine: one Qdrant query).

Ties: RRF gives equal scores to, e.g., the top of the dense branch and the top of the
sparse branch when neither is in the other. ``qdrant_client.hybrid.fusion`` (and local mode)
keep the first branch's point first; the edge engine (as a Qdrant server) does not break
ties, and its order of tied points changes from call to call. "tied top" is the share of
queries whose first two scores are equal; "R@1 ties split" counts a query 1/t when its
answer is one of t points tied at the top (the R@1 expected under a random tie order: the
figure to compare across rows); "== ref." is the share of queries whose top 10 equals the
row's reference up to the order of tied scores.

Groups: ``query_points_groups(group_by="group", limit=10, group_size=3)`` on a dense and a
hybrid RRF request; the ``group`` payload is the book of a Bible verse (66 groups) and the
first letter of a WordNet entry (26). A query passes when the heads of the groups equal the
first point of each group in the normalised ``query_points`` order (limit 400), in order;
"raw heads agree" is the share of queries whose groups from the *raw* ranking have the same
heads (what a grouped query returned before it was normalised).

Latency (edge engine, ``--lat-queries`` x ``--reps`` interleaved passes, the order rotating
from query to query): each normalised hybrid request against the plain hybrid request on
the same ``EdgeClient`` (same request translation), medians and p95 in microseconds and
their ratios.
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

from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion  # noqa: E402

from dbnorm_qdrant.banks import BankSet  # noqa: E402
from dbnorm_qdrant.cli.hybrid import DENSE, FUSIONS, SPARSE, fill_collection, fitted_bm25, hybrid_request  # noqa: E402
from dbnorm_qdrant.core.methods import Params  # noqa: E402
from dbnorm_qdrant.core.mmr import mmr  # noqa: E402
from dbnorm_qdrant.errors import InputError  # noqa: E402
from dbnorm_qdrant.qdrant import DBNormClient  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_edge import _interleaved  # noqa: E402  (variants timed in rotating order, as bench_edge does)
from bench_qdrant import _cpu  # noqa: E402  (the machine line, as the other benchmarks print it)

DATA = ROOT.parent / "shared" / "data"
SETS = ("wordnet_gloss", "bible_kjv_web")
PARAMS = Params(method="dualis")
COLL = "h"
PATHS = ("client", "server", "index")
RTOL = 1e-5  # scores equal up to float32 rounding
GROUPS = dict(group_by="group", limit=10, group_size=3)
MMR = dict(diversity=0.5, candidates_limit=100)  # the MMR rows: Qdrant's default diversity
GROUP_N = 2000  # candidates of the groups check: the grouped query and the order it is checked against rerank alike


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data
def group_key(name: str, ref: str, gallery_text: str) -> str:
    """The ``group`` payload of a gallery item, something a user would group by: the book
    of a Bible verse (``"Jer.3.4"`` -> ``"Jer"``) or the first letter of a WordNet entry."""
    if name.startswith("bible"):
        return ref.split(".", 1)[0]
    c = gallery_text.strip()[:1].lower()
    return c if c.isalpha() else "#"


def load(name: str, a: argparse.Namespace) -> dict:
    """The first ``--queries`` test queries (those whose answer is among the points), the
    first ``--points`` gallery items, their texts, BM25 vectors and groups, and the banks."""
    import qdrant_edge as qe

    from dbnorm_qdrant.edge import BM25Encoder

    d = DATA / name
    ld = lambda n: np.load(d / f"{n}.npy", allow_pickle=False)  # noqa: E731
    rows = [json.loads(line) for line in (d / "pairs_test.jsonl").read_text(encoding="utf-8").splitlines()]
    gt = ld("gt_test")
    keep = np.flatnonzero(gt < a.points)[:a.queries]
    g_text = [rows[i]["g"] for i in range(a.points)]
    q_text = [rows[i]["q"] for i in keep]
    if a.avg_len is None:
        enc, avg_len = fitted_bm25(g_text)
    else:
        enc, avg_len = BM25Encoder(qe.Bm25Config(avg_len=a.avg_len)), a.avg_len
    return {"name": name, "Q": ld("Q_test")[keep].astype(np.float32), "G": ld("G_test")[:a.points].astype(np.float32),
            "gt": gt[keep], "avg_len": avg_len,
            "q_sparse": [enc.embed_query(t) for t in q_text], "g_sparse": enc.embed_documents(g_text),
            "payload": [{"i": i, "text": g_text[i], "group": group_key(name, rows[i]["ref"], g_text[i])}
                        for i in range(a.points)],
            "banks": BankSet(ld("Q_bank")[:a.bank].astype(np.float32), ld("G_bank")[:a.bank].astype(np.float32))}


class Engine:
    """A hybrid collection :data:`COLL` on local mode (in memory) or the edge engine
    (``EdgeClient`` in a temporary folder), queried through the qdrant-client API."""

    def __init__(self, kind: str, d: dict) -> None:
        self.name, self._tmp = kind, None
        if kind == "edge":
            from dbnorm_qdrant.edge import EdgeClient

            self._tmp = tempfile.TemporaryDirectory()
            self.client = EdgeClient(self._tmp.name)
        else:
            self.client = QdrantClient(":memory:")
        fill_collection(self.client, COLL, d["G"], d["g_sparse"], d["payload"])

    def search(self, query, using: str, limit: int) -> list[models.ScoredPoint]:
        return self.client.query_points(COLL, query=query, using=using, limit=limit, with_payload=False).points

    def hybrid(self, q, sq, fusion: str, prefetch: int) -> list[models.ScoredPoint]:
        return self.client.query_points(COLL, **hybrid_request(q, sq, fusion, prefetch), with_payload=False).points

    def close(self) -> None:
        self.client.close()
        if self._tmp is not None:
            self._tmp.cleanup()


# --------------------------------------------------------------------------- quality
def fuse(fusion: str, branches: list[list[models.ScoredPoint]], limit: int = 10) -> list[models.ScoredPoint]:
    """``qdrant_client.hybrid.fusion`` over copies of the branches (the fusion writes the scores)."""
    fresh = [[p.model_copy() for p in b] for b in branches]
    if fusion == "RRF":
        return reciprocal_rank_fusion(fresh, limit=limit)
    return distribution_based_score_fusion(fresh, limit=limit)


def _scored(ids, scores) -> list[models.ScoredPoint]:
    return [models.ScoredPoint(id=int(j), version=0, score=float(s)) for j, s in zip(ids, scores)]


def top_points(S: np.ndarray, k: int) -> list[list[models.ScoredPoint]]:
    """The top ``k`` of each row of a score matrix, as Qdrant's scored points."""
    idx = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return [_scored(row, S[i, row]) for i, row in enumerate(idx)]


def reranked(S: np.ndarray, raw: list[list[models.ScoredPoint]], k: int) -> list[list[models.ScoredPoint]]:
    """Each query's raw candidates re-scored by its row of ``S``, the top ``k`` kept."""
    out = []
    for i, pts in enumerate(raw):
        ids = np.array([p.id for p in pts], dtype=np.int64)
        s = S[i, ids]
        o = np.argsort(-s, kind="stable")[:k]
        out.append(_scored(ids[o], s[o]))
    return out


def same_up_to_ties(a: list[models.ScoredPoint], b: list[models.ScoredPoint]) -> bool:
    """The same scores, and the same points in each run of equal scores but the last (which
    the limit may cut): equal up to the order of tied points."""
    sa, sb = np.array([p.score for p in a]), np.array([p.score for p in b])
    if len(a) != len(b) or not np.allclose(sa, sb, rtol=RTOL, atol=0):
        return False
    i = 0
    while i < len(a):
        j = i + 1
        while j < len(a) and np.isclose(sa[j], sa[i], rtol=RTOL, atol=0):
            j += 1
        if j < len(a) and {p.id for p in a[i:j]} != {p.id for p in b[i:j]}:
            return False
        i = j
    return True


def recall(lists: list[list[models.ScoredPoint]], gt: np.ndarray) -> dict:
    """R@1, R@1 with ties split, R@10 (percent) and the share of queries whose top two scores tie."""
    r1, split, r10, tied = [], [], [], []
    for pts, g in zip(lists, gt):
        top = [p.id for p in pts if pts and np.isclose(p.score, pts[0].score, rtol=RTOL, atol=0)]
        r1.append(bool(pts) and pts[0].id == g)
        split.append((g in top) / max(len(top), 1))
        r10.append(g in {p.id for p in pts[:10]})
        tied.append(len(top) > 1)
    return {"R@1": 100 * float(np.mean(r1)), "R@1_ties_split": 100 * float(np.mean(split)),
            "R@10": 100 * float(np.mean(r10)), "tied_top": float(np.mean(tied))}


def reference_lists(eng: Engine, d: dict, n: int, S: np.ndarray, prefetch: int, N: int) -> dict[str, list]:
    """The rows computed without the wrapper, on engine ``eng``, for the first ``n`` queries."""
    Q, sq = d["Q"][:n], d["q_sparse"][:n]
    raw = [eng.search(q.tolist(), DENSE, max(N, prefetch)) for q in Q]
    dense = [b[:prefetch] for b in raw]
    sparse = [eng.search(s, SPARSE, prefetch) for s in sq]
    matrix, rerank = top_points(S[:n], prefetch), reranked(S[:n], raw, prefetch)
    out = {"plain dense": [b[:10] for b in dense], "normalised dense (matrix)": [b[:10] for b in matrix],
           "sparse only": [b[:10] for b in sparse]}
    for f in FUSIONS:
        out[f"plain hybrid {f}"] = [eng.hybrid(q, s, f, prefetch) for q, s in zip(Q, sq)]
        out[f"plain hybrid {f} (client fusion)"] = [fuse(f, [a, b]) for a, b in zip(dense, sparse)]
        out[f"reference normalised hybrid {f} (matrix)"] = [fuse(f, [a, b]) for a, b in zip(matrix, sparse)]
        out[f"reference normalised hybrid {f} (rerank of N)"] = [fuse(f, [a, b]) for a, b in zip(rerank, sparse)]
    return out


def wrapper(eng: Engine, d: dict, N: int) -> DBNormClient:
    return DBNormClient(eng.client, banks=d["banks"], params=PARAMS, candidates=N)


def prepare(db: DBNormClient, path: str) -> None:
    """Store what ``path`` reads: the payload statistics (server), also the index vector (index)."""
    if path == "server":
        db.precompute(COLL, using=DENSE, progress=False)
    elif path == "index":
        db.precompute(COLL, using=DENSE, index=True, progress=False)


def wrapper_lists(db: DBNormClient, d: dict, n: int, path: str, prefetch: int) -> dict[str, tuple[list, str]]:
    """Each fusion's normalised hybrid through the wrapper on ``path``: (lists, the plan's path)."""
    Q, sq = d["Q"][:n], d["q_sparse"][:n]
    out = {}
    for f in FUSIONS:
        lists = [db.query_points(COLL, **hybrid_request(q, s, f, prefetch), mode=path, with_payload=False).points
                 for q, s in zip(Q, sq)]
        out[f"DBNormClient hybrid {f}, {path} path"] = (lists, db.explain(COLL, **hybrid_request(Q[0], sq[0], f,
                                                                                                 prefetch),
                                                                           mode=path)["path"])
    return out


def _mmr_query(q: np.ndarray) -> models.NearestQuery:
    return models.NearestQuery(nearest=q.tolist(), mmr=models.Mmr(**MMR))


def mmr_lists(eng: Engine, db: DBNormClient, d: dict, n: int, S: np.ndarray, N: int) -> dict[str, list]:
    """MMR (diversity 0.5 over 100 candidates, limit 10): Qdrant's plain MMR, the wrapper's (Qdrant's MMR
    with the normalised score as relevance), and its reference: the normalised rerank of the raw top N,
    its top 100 through :func:`dbnorm_qdrant.core.mmr.mmr` with the unit gallery vectors."""
    Q, cand = d["Q"][:n], MMR["candidates_limit"]
    plain = [eng.client.query_points(COLL, _mmr_query(q), using=DENSE, limit=10, with_payload=False).points for q in Q]
    norm = [db.query_points(COLL, _mmr_query(q), using=DENSE, limit=10, with_payload=False, mode="client").points
            for q in Q]
    G = d["G"].astype(np.float64)
    G /= np.linalg.norm(G, axis=1, keepdims=True)
    ref = []
    for pts in reranked(S[:n], [eng.search(q.tolist(), DENSE, N) for q in Q], cand):
        ids = np.array([p.id for p in pts])
        order, sc = mmr(np.array([p.score for p in pts]), G[ids], "Cosine", MMR["diversity"], 10)
        ref.append(_scored(ids[order], sc))
    return {"plain MMR": plain, "DBNormClient MMR, client path": norm, "reference normalised MMR (rerank of N)": ref}


def quality_rows(d: dict, engine: str, lists: dict[str, list], plans: dict[str, str]) -> list[dict]:
    """A row per list: recall, and the share equal to its reference up to ties."""
    def ref_of(k: str) -> str | None:
        f = next((f for f in FUSIONS if f" {f}" in k), None)
        if k.startswith("plain hybrid") and "client" not in k:
            return f"plain hybrid {f} (client fusion)"
        if k.startswith("DBNormClient MMR"):
            return "reference normalised MMR (rerank of N)"
        if k.startswith("DBNormClient"):
            return f"reference normalised hybrid {f} ({'matrix' if k.endswith('index path') else 'rerank of N'})"
        return None

    rows = []
    for k, v in lists.items():
        row = {"set": d["name"], "engine": engine, "row": k, "queries": len(v), "plan": plans.get(k, ""),
               **recall(v, d["gt"][:len(v)])}
        ref = ref_of(k)
        if ref is not None:
            row["reference"] = ref
            row["equal_share"] = float(np.mean([same_up_to_ties(a, b) for a, b in zip(v, lists[ref])]))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- groups
def first_heads(points, limit: int) -> list[tuple]:
    """``(group, id, score)`` of the first point of each group, groups in order of first
    appearance, the first ``limit``."""
    heads: dict = {}
    for p in points:
        g = (p.payload or {}).get("group")
        if g is not None and g not in heads:
            heads[g] = (g, p.id, p.score)
    return list(heads.values())[:limit]


def heads_match(got: list[tuple], want: list[tuple]) -> bool:
    """The same heads in the same order, up to the order of tied scores: the same head scores,
    each group's head scored as the group's first point, and the same groups but among
    those tied with the last head (the limit may cut that tie elsewhere). An engine that does
    not break ties may put another of the tied points first in each of two calls."""
    if [h[:2] for h in got] == [h[:2] for h in want]:
        return True
    sg, sw = np.array([h[2] for h in got]), np.array([h[2] for h in want])
    if len(got) != len(want) or not np.allclose(sg, sw, rtol=RTOL, atol=0):
        return False
    first = {w[0]: w[2] for w in want}
    cut = ~np.isclose(sw, sw[-1], rtol=RTOL, atol=0) if len(want) else sw.astype(bool)
    return ({h[0] for h, k in zip(got, cut) if k} == {w[0] for w, k in zip(want, cut) if k}
            and all(np.isclose(h[2], first[h[0]], rtol=RTOL, atol=0) for h in got if h[0] in first))


def groups_check(eng: Engine, db: DBNormClient, d: dict, n: int, path: str, kind: str, prefetch: int) -> dict:
    """Group heads of the normalised grouped query against the normalised ``query_points`` order."""
    ok, exact, raw_ok = [], [], []
    for q, s in zip(d["Q"][:n], d["q_sparse"][:n]):
        req = {"query": q.tolist(), "using": DENSE} if kind == "dense" else hybrid_request(q, s, "RRF", prefetch)
        req.pop("limit", None)
        res = db.query_points_groups(COLL, **req, **GROUPS, mode=path, candidates=GROUP_N, with_payload=False)
        heads = [(g.id, g.hits[0].id, g.hits[0].score) for g in res.groups]
        want = first_heads(db.query_points(COLL, **req, limit=400, mode=path, candidates=GROUP_N,
                                           with_payload=["group"]).points,
                           GROUPS["limit"])
        raw = first_heads(eng.client.query_points(COLL, **req, limit=400, with_payload=["group"]).points,
                          GROUPS["limit"])
        ok.append(heads_match(heads, want))
        exact.append([h[:2] for h in heads] == [h[:2] for h in want])
        raw_ok.append([h[:2] for h in raw] == [h[:2] for h in want])
    return {"set": d["name"], "engine": eng.name, "path": path, "request": kind, "queries": n,
            "heads_equal": float(np.mean(ok)), "heads_equal_exactly": float(np.mean(exact)),
            "raw_heads_agree": float(np.mean(raw_ok))}


# --------------------------------------------------------------------------- latency
def latency(eng: Engine, db: DBNormClient, d: dict, nq: int, reps: int, prefetch: int) -> list[dict]:
    """Each fusion and path: an A/B of the plain hybrid request and the normalised one on that path,
    interleaved (so a path is compared with the plain query timed beside it, not after another path's
    rerank has cooled the CPU caches); microseconds."""
    rows = []
    for f in FUSIONS:
        reqs = [hybrid_request(q, s, f, prefetch) for q, s in zip(d["Q"][:nq], d["q_sparse"][:nq])]
        plain = lambda i: eng.client.query_points(COLL, **reqs[i], with_payload=False)  # noqa: E731
        row = {"set": d["name"], "engine": eng.name, "fusion": f, "queries": nq, "reps": reps}
        plains = []
        for p in PATHS:
            variants = {"plain": plain,
                        p: (lambda p: lambda i: db.query_points(COLL, **reqs[i], mode=p, with_payload=False))(p)}
            for v in variants.values():  # warm-up (the client path's statistics cache, compiled kernels)
                for i in range(nq):
                    v(i)
            times = _interleaved(variants, nq, reps)
            med = {k: float(np.median(t)) * 1e6 for k, t in times.items()}
            p95 = {k: float(np.percentile(t, 95)) * 1e6 for k, t in times.items()}
            plains.append((med["plain"], p95["plain"]))
            row[f"{p}_us"], row[f"{p}_p95_us"] = med[p], p95[p]
            row[f"{p}_x"], row[f"{p}_p95_x"] = med[p] / med["plain"], p95[p] / p95["plain"]
        row["plain_us"] = float(np.median([m for m, _ in plains]))
        row["plain_p95_us"] = float(np.median([q for _, q in plains]))
        rows.append(row)
    return rows


def mmr_latency(eng: Engine, db: DBNormClient, d: dict, nq: int, reps: int) -> dict:
    """Plain MMR vs the wrapper's MMR (client path), interleaved; microseconds."""
    reqs = [_mmr_query(q) for q in d["Q"][:nq]]
    variants = {"plain": lambda i: eng.client.query_points(COLL, reqs[i], using=DENSE, limit=10, with_payload=False),
                "normalised": lambda i: db.query_points(COLL, reqs[i], using=DENSE, limit=10, with_payload=False,
                                                        mode="client")}
    for v in variants.values():
        for i in range(nq):
            v(i)
    times = _interleaved(variants, nq, reps)
    med = {k: float(np.median(t)) * 1e6 for k, t in times.items()}
    p95 = {k: float(np.percentile(t, 95)) * 1e6 for k, t in times.items()}
    return {"set": d["name"], "engine": eng.name, "queries": nq, "reps": reps, "plain_us": med["plain"],
            "plain_p95_us": p95["plain"], "normalised_us": med["normalised"], "normalised_p95_us": p95["normalised"],
            "x": med["normalised"] / med["plain"], "p95_x": p95["normalised"] / p95["plain"]}


# --------------------------------------------------------------------------- run
def run_engine(kind: str, d: dict, n: int, S: np.ndarray, a: argparse.Namespace, res: dict) -> None:
    t0 = time.perf_counter()
    eng = Engine(kind, d)
    try:
        lists = reference_lists(eng, d, n, S, a.prefetch, a.candidates)
        plans: dict[str, str] = {}
        _stderr(f"  {d['name']} {kind}: reference rows [{time.perf_counter() - t0:.0f} s]")
        db = wrapper(eng, d, a.candidates)
        for path in PATHS:
            prepare(db, path)
            for k, (v, plan) in wrapper_lists(db, d, n, path, a.prefetch).items():
                lists[k], plans[k] = v, plan
            ng = min(n, a.group_queries)
            for kind_g in ("dense", "hybrid RRF") if kind == "edge" else ("dense",):
                res["groups"].append(groups_check(eng, db, d, ng, path, kind_g, a.prefetch))
            _stderr(f"  {d['name']} {kind}: {path} path [{time.perf_counter() - t0:.0f} s]")
        for k, v in mmr_lists(eng, db, d, n, S, a.candidates).items():
            lists[k], plans[k] = v, "client" if k.startswith("DBNormClient") else ""
        res["quality"] += quality_rows(d, kind, lists, plans)
        if kind == "edge" and a.lat_queries:
            res["latency"] += latency(eng, db, d, min(a.lat_queries, len(d["Q"])), a.reps, a.prefetch)
            res["mmr_latency"].append(mmr_latency(eng, db, d, min(a.lat_queries, len(d["Q"])), a.reps))
            _stderr(f"  {d['name']} {kind}: latency [{time.perf_counter() - t0:.0f} s]")
    finally:
        eng.close()


def run_set(name: str, a: argparse.Namespace, res: dict) -> None:
    d = load(name, a)
    res["avg_len"][name] = d["avg_len"]
    S = d["banks"].normalizer(PARAMS, unit=True).scores(d["Q"], d["G"])
    for kind, n in (("edge", len(d["Q"])), ("local", min(a.local_queries, len(d["Q"])))):
        if n == 0:
            continue
        try:
            run_engine(kind, d, n, S, a, res)
        except InputError as exc:  # an engine that cannot run hybrid requests yet: said, and skipped
            res["skipped"].append(f"{name} on {kind}: {exc}")
            print(f"{name} on {kind} skipped: {exc}")


# --------------------------------------------------------------------------- output
def quality_table(rows: list[dict]) -> str:
    out = ["| set | engine (queries) | row | plan | R@1 | R@1 ties split | R@10 | tied top | == ref. |",
           "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        eq = f"{r['equal_share']:.1%}" if "equal_share" in r else ""
        out.append(f"| {r['set']} | {r['engine']} ({r['queries']}) | {r['row']} | {r['plan']} | {r['R@1']:.1f} "
                   f"| {r['R@1_ties_split']:.1f} | {r['R@10']:.1f} | {r['tied_top']:.0%} | {eq} |")
    return "\n".join(out)


def groups_table(rows: list[dict]) -> str:
    out = ["| set | engine (queries) | request | path | heads == normalised order (up to ties) | exactly "
           "| raw heads agree |", "|---|---|---|---|---:|---:|---:|"]
    out += [f"| {r['set']} | {r['engine']} ({r['queries']}) | {r['request']} | {r['path']} | {r['heads_equal']:.1%} "
            f"| {r['heads_equal_exactly']:.1%} | {r['raw_heads_agree']:.1%} |" for r in rows]
    return "\n".join(out)


def latency_table(rows: list[dict]) -> str:
    out = ["| set | fusion | plain hybrid us (p95) | " + " | ".join(f"{p} path us: x (p95 x)" for p in PATHS) + " |",
           "|---|---|---:|" + "---:|" * len(PATHS)]
    for r in rows:
        cells = [f"{r[f'{p}_us']:.0f}: {r[f'{p}_x']:.2f}x ({r[f'{p}_p95_x']:.2f}x)" for p in PATHS]
        out.append(f"| {r['set']} | {r['fusion']} | {r['plain_us']:.0f} ({r['plain_p95_us']:.0f}) | "
                   + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS), help="data sets (default both)")
    ap.add_argument("--queries", type=int, default=1000, help="test queries on the edge engine (default 1000)")
    ap.add_argument("--points", type=int, default=5000, help="gallery points (default 5000)")
    ap.add_argument("--bank", type=int, default=10_000, help="bank rows (default 10000)")
    ap.add_argument("--prefetch", type=int, default=100, help="limit of each prefetch branch (default 100)")
    ap.add_argument("--candidates", type=int, default=400,
                    help="raw candidates per dense branch on the client and server paths (default 400)")
    ap.add_argument("--avg-len", type=float, default=None,
                    help="BM25 avg_len (default: the gallery texts' mean length; 256 is the encoder's default)")
    ap.add_argument("--local-queries", type=int, default=100,
                    help="queries on local mode (default 100; its sparse search takes ~0.1 s; 0: skip)")
    ap.add_argument("--group-queries", type=int, default=200, help="queries of the groups check (default 200)")
    ap.add_argument("--lat-queries", type=int, default=200, help="queries per latency row (default 200; 0: skip)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved latency passes (default 3)")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    res: dict = {"machine": _cpu(), "python": platform.python_version(), "method": PARAMS.to_dict(),
                 "args": vars(a), "avg_len": {}, "quality": [], "groups": [], "latency": [], "mmr_latency": [], "skipped": []}
    print(f"machine: {res['machine']}\n")
    for name in a.sets:
        run_set(name, a, res)
    lens = ", ".join(f"{k} {v:.2f}" for k, v in res["avg_len"].items())
    print(f"Quality (R@1 / R@10 in %; {a.points} points, prefetch {a.prefetch} per branch, limit 10, N = "
          f"{a.candidates}; dualis, {a.bank} bank rows; BM25 avg_len {lens}):\n")
    print(quality_table(res["quality"]))
    print(f"\nGroups (group_by 'group', limit {GROUPS['limit']}, group_size {GROUPS['group_size']}):\n")
    print(groups_table(res["groups"]))
    if res["latency"]:
        print(f"\nLatency (edge engine through EdgeClient; per path an A/B with the plain hybrid request, "
              f"{a.lat_queries} queries x {a.reps} interleaved passes; median us and ratio to the plain request "
              "timed beside it, p95 ratio in brackets):\n")
        print(latency_table(res["latency"]))
        print(f"\nMMR latency (edge; diversity {MMR['diversity']}, candidates_limit {MMR['candidates_limit']}, "
              "limit 10; the wrapper's MMR runs on the client path):\n")
        print("| set | plain MMR us (p95) | normalised MMR us (p95) | x (p95 x) |\n|---|---:|---:|---:|")
        for r in res["mmr_latency"]:
            print(f"| {r['set']} | {r['plain_us']:.0f} ({r['plain_p95_us']:.0f}) | {r['normalised_us']:.0f} "
                  f"({r['normalised_p95_us']:.0f}) | {r['x']:.2f}x ({r['p95_x']:.2f}x) |")
    res["seconds"] = time.perf_counter() - t_start
    print(f"\n[{res['seconds']:.0f} s]")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
