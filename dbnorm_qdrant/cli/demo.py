"""``demo``: the main job on the sample shipped in the package, in embedded Qdrant.

Loads the WordNet sample (:func:`dbnorm_qdrant.datasets.load_sample`) into embedded
Qdrant, tunes on the bank pairs, reranks every test query through
:class:`~dbnorm_qdrant.qdrant.DBNormClient`, prints raw vs normalised recall and
hubness, and writes the hubness report (with its plot when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .._io_utils import check_writable, short
from ..errors import InputError
from . import common as c
from . import options as o
from .qdrant_io import Qdrant, array_batches, list_metrics, open_qdrant, reranked_lists

COLLECTION = "dbnorm_demo"


def add_parser(sub: Any) -> None:
    p = o.subparser(
        sub, "demo", help="the main job on a shipped real sample, in embedded Qdrant",
        description="Load a real sample (WordNet definitions -> lemma lists, all-MiniLM-L6-v2) into "
        "embedded Qdrant, tune on the bank pairs, rerank every test query through "
        "DBNormClient.query_batch_points, print raw vs normalised recall and hubness, and write the "
        "hubness report. Needs no network and no data beyond the package (the plot needs matplotlib: "
        'pip install "dbnorm-qdrant[plots]").')
    p.add_argument("--out", default="dbnorm-demo-report", metavar="DIR", help="report folder (default ./dbnorm-demo-report)")
    p.add_argument("--path", metavar="DIR", help="keep the embedded Qdrant in DIR (default: in memory)")
    o.add_engine_opt(p)
    o.add_candidates_opt(p, 100)
    p.add_argument("--n-queries", type=o.positive_int, metavar="N", help="use only the first N test queries")
    o.add_batch_opts(p)
    p.add_argument("--format", choices=("md", "html"), default="md", help="report page format (default md)")
    o.add_output_opts(p)
    p.set_defaults(func=run)


def _sample() -> Any:
    from ..datasets import load_sample

    try:
        return load_sample()
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None


def _load_gallery(args: argparse.Namespace, q: Qdrant, G: np.ndarray, texts: Any) -> None:
    """The gallery (payload ``text``) into collection :data:`COLLECTION`, or reuse it from ``--path``."""
    from qdrant_client import models

    if q.client.collection_exists(COLLECTION):
        if q.count(COLLECTION) != len(G):
            raise InputError(f"{args.path} already holds a collection {COLLECTION!r} of another size; "
                             "pass an empty --path.")
        c.log.info("reusing collection %r in %s", COLLECTION, args.path)
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
    with open_qdrant(args, create=True, memory=True) as q:
        t0 = time.perf_counter()
        _load_gallery(args, q, G, texts)
        print(f"\n1. loaded {len(G):,} gallery vectors into {q.where} [{time.perf_counter() - t0:.1f}s]")
        t0 = time.perf_counter()
        bank_set = BankSet.from_arrays(s.query_bank, s.gallery_bank)
        res = tune(bank_set.query_bank, bank_set.gallery_bank, paired=True, seed=0)
        params = res.params
        print(f"2. tuned on the bank pairs: {res.reason} [{time.perf_counter() - t0:.1f}s]")
        db = DBNormClient(q.client, bank_set.normalizer(params, unit=True), candidates=args.candidates)
        runs, results = _search(args, q, db, Q, len(G), c.method_name(params))
        print(f"3. searched {len(Q):,} queries with query_batch_points: raw, and reranked with "
              f"N = {args.candidates} candidates each\n")
        c.print_runs(runs, o.HUB_K)
        for name, (m, dt) in results.items():
            hubs = ", ".join(f"{short(texts[i], 30)} ({n})" for i, n in m["top_hubs"][:3] if i is not None)
            print(f"  {name}: top hubs {hubs}  [{dt:.1f}s]")
        notes = [f"{info['task']}; {info['model']}; source: {info['source']}; licence: {info['licence']}",
                 f"{len(Q)} test queries against {len(G)} gallery items in embedded Qdrant; ground truth: "
                 "query i matches item i; reranked with DBNormClient.query_batch_points "
                 f"(N = {args.candidates} raw candidates per query)",
                 f"tuning: {res.reason}"]
        paths = write_report(args.out, runs, k=o.HUB_K, labels=dict(enumerate(texts)), fmt=args.format, notes=notes,
                             title="dbnorm-qdrant demo: hubness on WordNet reverse-dictionary retrieval",
                             params=params.to_dict())
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
