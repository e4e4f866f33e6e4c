"""``demo``: the main job on the sample shipped in the package, in embedded Qdrant.

Loads the WordNet sample (:func:`dbnorm_qdrant.datasets.load_sample`) into embedded
Qdrant, tunes on the bank pairs, reranks every test query through
:class:`~dbnorm_qdrant.qdrant.DBNormClient`, prints raw vs normalised recall and
hubness, and writes the hubness report (with its plot when matplotlib is installed).
``--hybrid`` adds hybrid search (:mod:`.hybrid`): the sample's texts as BM25 sparse vectors
next to the dense ones, each query's definition as a sparse query, the two branches fused
(RRF, DBSF) plain and with the dense branch normalised.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .._io_utils import check_writable, short
from ..errors import InputError
from . import common as c
from . import hybrid as hy
from . import options as o
from .qdrant_io import Qdrant, array_batches, list_metrics, open_qdrant, reranked_lists

COLLECTION = "dbnorm_demo"
#: the collection of ``--hybrid``: dense vector ``dense`` and sparse vector ``words``
HYBRID_COLLECTION = "dbnorm_demo_hybrid"


def add_parser(sub: Any) -> None:
    p = o.subparser(
        sub, "demo", help="the main job on a shipped real sample, in embedded Qdrant",
        description="Load a real sample (WordNet definitions -> lemma lists, all-MiniLM-L6-v2) into "
        "embedded Qdrant, tune on the bank pairs, rerank every test query through "
        "DBNormClient.query_batch_points, print raw vs normalised recall and hubness, and write the "
        "hubness report. Needs no network and no data beyond the package (the plot needs matplotlib: "
        'pip install "dbnorm-qdrant[plots]"). --hybrid adds hybrid search: a BM25 sparse vector of each text next to '
        "the dense one, the two branches of every query fused (RRF, DBSF) plain and with the dense branch normalised.")
    p.add_argument("--out", default="dbnorm-demo-report", metavar="DIR", help="report folder (default ./dbnorm-demo-report)")
    p.add_argument("--path", metavar="DIR", help="keep the embedded Qdrant in DIR (default: in memory)")
    o.add_engine_opt(p)
    o.add_candidates_opt(p, 100)
    p.add_argument("--n-queries", type=o.positive_int, metavar="N", help="use only the first N test queries")
    o.add_batch_opts(p)
    p.add_argument("--format", choices=("md", "html"), default="md", help="report page format (default md)")
    p.add_argument("--hybrid", action="store_true",
                   help="also run hybrid search: dense + BM25 sparse vectors of the texts, prefetch 100 each, fused by "
                        "RRF and DBSF, plain and with the dense branch normalised (rows 'hybrid ...'; needs the edge "
                        'extra for the BM25 encoder: pip install "dbnorm-qdrant[edge]")')
    o.add_output_opts(p)
    p.set_defaults(func=run)


def _sample() -> Any:
    from ..datasets import load_sample

    try:
        return load_sample()
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None


def _reuse(args: argparse.Namespace, q: Qdrant, name: str, n: int) -> bool:
    """Whether collection ``name`` of ``--path`` holds the ``n`` points to reuse (a size mismatch is refused)."""
    if not q.client.collection_exists(name):
        return False
    if q.count(name) != n:
        raise InputError(f"{args.path} already holds a collection {name!r} of another size; pass an empty --path.")
    c.log.info("reusing collection %r in %s", name, args.path)
    return True


def _load_gallery(args: argparse.Namespace, q: Qdrant, G: np.ndarray, texts: Any) -> None:
    """The gallery (payload ``text``) into collection :data:`COLLECTION`, or reuse it from ``--path``."""
    from qdrant_client import models

    if _reuse(args, q, COLLECTION, len(G)):
        return
    q.client.create_collection(COLLECTION, vectors_config=models.VectorParams(
        size=G.shape[1], distance=models.Distance.COSINE))
    with c.progress(args, total=len(G), desc="loading gallery into Qdrant", unit="pt") as bar:
        for i in range(0, len(G), 500):
            j = min(i + 500, len(G))
            q.client.upload_collection(COLLECTION, vectors=G[i:j], ids=list(range(i, j)),
                                       payload=[{"text": t} for t in texts[i:j]], batch_size=500, wait=True)
            bar.update(j - i)


def run(args: argparse.Namespace) -> int:
    from ..banks import BankSet
    from ..core.tuning import tune
    from ..eval.report import write_report
    from ..qdrant import DBNormClient

    check_writable(args.out, "--out", folder=True)
    t_start = time.perf_counter()
    s = _sample()
    info, texts = s.meta, s.gallery_texts
    Q, G = s.queries, s.gallery
    if args.n_queries is not None:
        Q = Q[: args.n_queries]
    print(f"dbnorm-qdrant demo: {info['task']}")
    print(f"  {len(G):,} gallery items, {len(Q):,} test queries, {len(s.query_bank):,} bank pairs; {info['model']}")
    sparse = _sparse_vectors(s, len(Q)) if args.hybrid else None  # before Qdrant opens: a missing extra changes nothing
    with open_qdrant(args, create=True, memory=True) as q:
        t0 = time.perf_counter()
        _load_gallery(args, q, G, texts)
        print(f"\n1. loaded {len(G):,} gallery vectors into {q.where} [{time.perf_counter() - t0:.1f}s]")
        t0 = time.perf_counter()
        bank_set = BankSet.from_arrays(s.query_bank, s.gallery_bank)
        res = tune(bank_set.query_bank, bank_set.gallery_bank, paired=True, seed=0)
        params = res.params
        print(f"2. tuned on the bank pairs: {res.reason} [{time.perf_counter() - t0:.1f}s]")
        normalizer = bank_set.normalizer(params, unit=True)
        db = DBNormClient(q.client, normalizer, candidates=args.candidates)
        runs, results = _search(args, q, db, Q, len(G), c.method_name(params))
        print(f"3. searched {len(Q):,} queries with query_batch_points: raw, and reranked with "
              f"N = {args.candidates} candidates each")
        if sparse is not None:
            t0 = time.perf_counter()
            # the hybrid's dense branch (limit 100) reranks the wrapper's default N (4 x 100), not --candidates
            h_runs, h_results = _hybrid(args, q, DBNormClient(q.client, normalizer), G, Q, sparse, texts,
                                        c.method_name(params))
            runs, results = runs + h_runs, {**results, **h_results}
            print(f"   hybrid: dense + BM25 sparse vectors of the texts (avg_len {sparse[2]:.2f}), prefetch "
                  f"{hy.PREFETCH} each, fused by {' and '.join(hy.FUSIONS)}: plain, and with the dense branch "
                  f"normalised [{time.perf_counter() - t0:.1f}s]")
        print()
        c.print_runs(runs, o.HUB_K)
        for name, (m, dt) in results.items():
            hubs = ", ".join(f"{short(texts[i], 30)} ({n})" for i, n in m["top_hubs"][:3] if i is not None)
            print(f"  {name}: top hubs {hubs}  [{dt:.1f}s]")
        notes = [f"{info['task']}; {info['model']}; source: {info['source']}; licence: {info['licence']}",
                 f"{len(Q)} test queries against {len(G)} gallery items in embedded Qdrant; ground truth: "
                 "query i matches item i; reranked with DBNormClient.query_batch_points "
                 f"(N = {args.candidates} raw candidates per query)",
                 f"tuning: {res.reason}"]
        if sparse is not None:
            notes.append(f"hybrid: a dense and a sparse prefetch ({hy.PREFETCH} each; BM25 of the texts, avg_len "
                         f"{sparse[2]:.2f}, IDF modifier) fused by RRF or DBSF; normalised: the dense branch through "
                         "DBNormClient (the wrapper's default N)")
        paths = write_report(args.out, runs, k=o.HUB_K, labels=dict(enumerate(texts)), fmt=args.format, notes=notes,
                             title="dbnorm-qdrant demo: hubness on WordNet reverse-dictionary retrieval",
                             params=params.to_dict(), plot_runs=2)  # the plot: raw vs normalised dense
    plot = f"plot {paths['png']}" if paths["png"] else 'no plot: pip install "dbnorm-qdrant[plots]"'
    print(f"\n4. hubness report: {paths['page']} ({plot})")
    print(f"done in {time.perf_counter() - t_start:.1f}s")
    return 0


def _search(args: argparse.Namespace, q: Qdrant, db: Any, Q: np.ndarray, n_gallery: int,
            method: str) -> tuple[list[Any], dict[str, Any]]:
    """Raw and reranked top-10 of every query: the report's retrievals and (metrics, seconds) by name."""
    from ..eval.report import Retrieval

    gt = list(range(len(Q)))
    runs, results = [], {}
    for name, rerank in (("raw cosine", False), (method, True)):
        t0 = time.perf_counter()
        lists = reranked_lists(args, q, db, COLLECTION, lambda: array_batches(Q, args.batch_size), total=len(Q),
                               top_k=o.HUB_K, rerank=rerank, label=f"{name}: query_batch_points")
        m, occ, ids = list_metrics(lists, n_gallery, gt, o.HUB_K)
        m.pop("MedR"), m.pop("MeanR")  # only the top 10 is fetched: ranks beyond it are unknown
        results[name] = (m, time.perf_counter() - t0)
        runs.append(Retrieval(name, occ, m, ids=ids + [None] * (len(occ) - len(ids))))
    return runs, results


def _sparse_vectors(s: Any, n_queries: int) -> tuple[list[Any], list[Any], float]:
    """BM25 vectors of the gallery texts and of the first ``n_queries`` query texts, and the
    encoder's ``avg_len`` (:func:`.hybrid.fitted_bm25`)."""
    if s.query_texts is None or s.gallery_texts is None:
        raise InputError("--hybrid embeds the sample's texts, and this install's sample has none; reinstall "
                         "dbnorm-qdrant (or rebuild the sample with scripts/make_demo_sample.py).")
    enc, avg_len = hy.fitted_bm25(s.gallery_texts)
    return enc.embed_documents(s.gallery_texts), [enc.embed_query(t) for t in s.query_texts[:n_queries]], avg_len


def _hybrid(args: argparse.Namespace, q: Qdrant, db: Any, G: np.ndarray, Q: np.ndarray,
            sparse: tuple[list[Any], list[Any], float], texts: Any, method: str) -> tuple[list[Any], dict[str, Any]]:
    """Plain and normalised hybrid top-10 of every query, per fusion: the report's retrievals
    and (metrics, seconds) by name (collection :data:`HYBRID_COLLECTION`)."""
    from ..eval.report import Retrieval

    g_sparse, q_sparse, _ = sparse
    n = len(g_sparse)
    if not _reuse(args, q, HYBRID_COLLECTION, n):
        with c.progress(args, total=n, desc="loading the hybrid collection", unit="pt") as bar:
            hy.fill_collection(q.client, HYBRID_COLLECTION, G, g_sparse, [{"text": t} for t in texts], bar)
    gt = list(range(len(Q)))
    runs, results = [], {}
    for fusion in hy.FUSIONS:
        for name, searcher in ((f"hybrid {fusion}, raw dense", q.client), (f"hybrid {fusion}, {method} dense", db)):
            t0 = time.perf_counter()
            with c.progress(args, total=len(Q), desc=name, unit="q") as bar:
                lists = hy.hybrid_lists(searcher, HYBRID_COLLECTION, Q, q_sparse, fusion, top_k=o.HUB_K, bar=bar)
            m, occ, ids = list_metrics(lists, n, gt, o.HUB_K)
            m.pop("MedR"), m.pop("MeanR")  # only the top 10 is fetched: ranks beyond it are unknown
            results[name] = (m, time.perf_counter() - t0)
            runs.append(Retrieval(name, occ, m, ids=ids + [None] * (len(occ) - len(ids))))
    return runs, results
