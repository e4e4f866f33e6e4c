"""``evaluate``: metrics before and after, from vectors (``.npy``) or through a Qdrant collection."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from ..core.methods import Params
from ..errors import InputError
from ..eval.metrics import evaluate as _evaluate
from . import common as c
from . import options as o
from .qdrant_io import array_batches, list_metrics, open_qdrant, reranked_lists


def add_parser(sub: Any) -> None:
    p = o.subparser(
        sub, "evaluate", help="metrics before and after, from vectors or through Qdrant",
        description="R@1/R@5/R@10, MedR, MeanR and k-skewness (top-10 k-occurrence) of the raw scores and "
        "of the normalised ones. With --json: one JSON object {\"none\": {...}, \"<method>\": {...}}, "
        "each with R1, R5, R10, MedR, MeanR, k_skewness (R@K in percent) and params (the method and "
        "parameters used; for auto, the ones tuning chose).",
        epilog="Ground truth defaults to the identity (query i matches gallery item i, or point id i "
        "with --collection). --method auto tunes on the banks: supervised (R@1 on held-out pairs) when "
        "the query bank and gallery bank have the same length (taken as aligned pairs) or with "
        "--paired; otherwise, or with --unpaired, unsupervised (minimum hubness). Through Qdrant, a "
        "correct item outside the top --top-k counts at rank top-k + 1 (MeanR is then a lower bound).")
    p.add_argument("--queries", required=True, metavar="Q.npy", help="query vectors (n x d)")
    p.add_argument("--gallery", metavar="G.npy", help="gallery vectors (m x d); or --collection")
    p.add_argument("--gt", metavar="gt.npy", help="correct gallery index (point id with --collection) per query")
    o.add_json_opt(p)
    o.add_bank_opts(p)
    o.add_method_opts(p)
    o.add_qdrant_opts(p, required=False)
    o.add_top_k_opt(p, 100, "; with --collection: results fetched per query, at least 10")
    o.add_candidates_opt(p)
    o.add_mode_opt(p)
    o.add_batch_opts(p)
    o.add_output_opts(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    c.check_method(args)
    if bool(args.gallery) == bool(args.collection):
        raise InputError("evaluate against --gallery G.npy or --collection NAME (with --path/--url): one of them.")
    Q = c.matrix(args.queries, "--queries")
    bank_set, stored, paired = c.banks(args, Q.shape[1])
    key = args.method or "auto"
    if args.collection:
        result = _through_qdrant(args, Q, bank_set, stored, paired, key)
    else:
        G = c.matrix(args.gallery, "--gallery", ncols=Q.shape[1], of="--queries")
        gt = c.ground_truth(args.gt, len(Q))
        params, _ = c.params(args, bank_set, stored, paired)
        t0 = time.perf_counter()
        raw = _evaluate(Q @ G.T, gt, o.HUB_K, ks=(1, 5, 10))
        new = _evaluate(bank_set.normalizer(params).scores(Q, G), gt, o.HUB_K, ks=(1, 5, 10)) \
            if params.method != "none" else raw
        c.log.info("scored %d queries x %d gallery items [%.1fs]", len(Q), len(G), time.perf_counter() - t0)
        result = {"none": c.contract(raw, Params(method="none")), key: c.contract(new, params)}
    if args.json:
        c.emit_json(result)
    else:
        c.print_table([[name] + [c.fmt(v[k]) for k in c.CONTRACT_KEYS] for name, v in result.items()],
                      ["method", "R@1", "R@5", "R@10", "MedR", "MeanR", "k-skew"])
        print(f"\nparams used: {json.dumps(result[key]['params'])}")
    return 0


def _through_qdrant(args: argparse.Namespace, Q: np.ndarray, bank_set: Any, stored: Any, paired: bool,
                    key: str) -> dict[str, Any]:
    from ..qdrant import DBNormClient

    if args.top_k < 10:
        raise InputError(f"--top-k {args.top_k} is too small: R@10 and the top-10 hubness need at least 10 results "
                         "per query; use --top-k 10 or more (default 100).")
    gt = c.point_ids(args.gt, len(Q))
    with open_qdrant(args) as q:
        q.require(args.collection)
        dist, size = q.vector(args.collection, args.using)
        if size != Q.shape[1]:
            raise InputError(f"--queries have dimension {Q.shape[1]} but collection {args.collection!r} has size "
                             f"{size}; use queries from the collection's embedding model.")
        n = q.count(args.collection)
        params, _ = c.params(args, bank_set, stored, paired)
        db = DBNormClient(q.client, bank_set.normalizer(params, unit=dist == "Cosine"), candidates=args.candidates,
                          mode=args.mode)
        out: dict[str, Any] = {}
        for name, rerank, p in (("none", False, Params(method="none")), (key, True, params)):
            if name == key and p.method == "none":
                out[name] = dict(out["none"], params=p.to_dict())
                continue
            lists = reranked_lists(args, q, db, args.collection, lambda: array_batches(Q, args.batch_size),
                                   total=len(Q), top_k=args.top_k, rerank=rerank,
                                   label=f"{name}: query_batch_points")
            m, _, _ = list_metrics(lists, n, gt, args.top_k)
            out[name] = c.contract(m, p)
        return out
