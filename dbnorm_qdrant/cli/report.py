"""``report``: the hubness report (:func:`dbnorm_qdrant.eval.report.write_report`) of a collection or matrices."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .._io_utils import check_writable
from ..errors import InputError
from ..eval.metrics import evaluate as _evaluate
from ..eval.metrics import hubness_metrics, k_occurrence
from . import common as c
from . import options as o
from .qdrant_io import array_batches, collection_batches, list_metrics, open_qdrant, reranked_lists


def add_parser(sub: Any) -> None:
    p = o.subparser(
        sub, "report", help="the hubness report (PNG + Markdown/HTML)",
        description="k-occurrence histogram before and after (log scale), the top hubs named by a "
        "payload field (--field) or a labels file (--labels), and the metrics table, as hubness.png "
        "plus report.md (or report.html) and metrics.json in --out (the plot needs matplotlib, the plots "
        "extra; without it the page says so). The folder is written only when the report is complete.")
    p.add_argument("--out", default="dbnorm-report", metavar="DIR", help="report folder (default ./dbnorm-report)")
    p.add_argument("--format", choices=("md", "html"), default="md", help="report page format (default md)")
    p.add_argument("--title", default="Hubness report", help="the page's title")
    p.add_argument("--queries", metavar="Q.npy", help="query vectors")
    p.add_argument("--query-collection", metavar="NAME", help="or: the queries are the points of this collection")
    p.add_argument("--query-using", metavar="VECTOR", help="the named vector of --query-collection")
    p.add_argument("--gallery", metavar="G.npy", help="a gallery matrix (instead of --collection)")
    p.add_argument("--gt", metavar="gt.npy|none",
                   help="ground truth for recall; default: the identity for matrices, none for a collection")
    p.add_argument("--field", metavar="KEY", help="payload field that names the hubs (collection)")
    p.add_argument("--labels", metavar="FILE", help="names of gallery items: .txt (one a line), .json list, or "
                   ".jsonl with --field (matrices)")
    o.add_candidates_opt(p)
    o.add_batch_opts(p)
    o.add_json_opt(p, "print the paths written as JSON")
    o.add_bank_opts(p)
    o.add_method_opts(p)
    o.add_qdrant_opts(p, required=False)
    o.add_output_opts(p)
    p.set_defaults(func=run)


def labels_file(path: str | None, field: str | None) -> dict[Any, Any] | None:
    """``--labels``: the name of each gallery item, by position (or by key for a JSON object)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--labels: file {p} does not exist; pass a .txt, .json or .jsonl file.")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".json":
            doc = json.loads(text)
            if isinstance(doc, dict) and field and field in doc:
                doc = doc[field]
            if isinstance(doc, dict):
                return dict(doc)
            return {i: v for i, v in enumerate(doc)}
        if p.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            return {i: (r.get(field) if field and isinstance(r, dict) else r) for i, r in enumerate(rows)}
    except (json.JSONDecodeError, AttributeError, TypeError, UnicodeDecodeError) as exc:
        raise InputError(f"--labels: cannot read {p} ({exc}); pass UTF-8 text, a JSON list or JSON lines.") from None
    return {i: line for i, line in enumerate(text.splitlines())}


def run(args: argparse.Namespace) -> int:
    from ..eval.report import write_report

    c.check_method(args)
    check_writable(args.out, "--out", folder=True)
    if args.collection:
        runs, labels, params, notes = _through_qdrant(args)
    else:
        runs, labels, params, notes = _from_matrices(args)
    paths = write_report(args.out, runs, k=o.HUB_K, labels=labels, title=args.title, fmt=args.format,
                         notes=notes, params=params.to_dict())
    if args.json:
        c.emit_json({k: None if v is None else str(v) for k, v in paths.items()})
    else:
        c.print_runs(runs, o.HUB_K)
        plot = f"{paths['png']} and " if paths["png"] else ""
        print(f"\nwrote {plot}{paths['page']}")
    return 0


def _from_matrices(args: argparse.Namespace) -> tuple[list, Any, Any, list[str]]:
    from ..eval.report import Retrieval

    if not (args.queries and args.gallery):
        raise InputError("report needs --queries Q.npy --gallery G.npy, or --collection NAME with --path/--url.")
    Q = c.matrix(args.queries, "--queries")
    G = c.matrix(args.gallery, "--gallery", ncols=Q.shape[1], of="--queries")
    bank_set, stored, paired = c.banks(args, Q.shape[1])
    gt = c.ground_truth(args.gt, len(Q)) if args.gt not in (None, "none") else None
    labels = labels_file(args.labels, args.field)
    params, _ = c.params(args, bank_set, stored, paired)
    with_recall = args.gt != "none" and (gt is not None or len(Q) <= len(G))
    runs = []
    for name, S in (("raw", Q @ G.T), (params.method, bank_set.normalizer(params).scores(Q, G))):
        m = _evaluate(S, gt, o.HUB_K, ks=(1, 5, 10)) if with_recall else hubness_metrics(S, o.HUB_K)
        runs.append(Retrieval(name, k_occurrence(S, o.HUB_K), m))
    notes = [f"{len(Q)} queries x {len(G)} gallery items, exact scores"]
    if with_recall and gt is None:
        notes.append("ground truth: the identity (query i matches gallery item i)")
    return runs, labels, params, notes


def _through_qdrant(args: argparse.Namespace) -> tuple[list, Any, Any, list[str]]:
    from ..eval.report import Retrieval
    from ..qdrant import DBNormClient

    if not (args.queries or args.query_collection):
        raise InputError("report on a collection needs queries: --queries Q.npy or --query-collection NAME.")
    Q = c.matrix(args.queries, "--queries") if args.queries else None
    bank_set, stored, paired = c.banks(args, None if Q is None else Q.shape[1])
    labels: dict[Any, Any] = {}
    top_k = o.HUB_K

    def keep_label(p: Any) -> None:
        if args.field and p.payload and args.field in p.payload:
            labels[p.id] = p.payload[args.field]

    with open_qdrant(args) as q:
        q.require(args.collection)
        dist, size = q.vector(args.collection, args.using)
        n = q.count(args.collection)
        if args.query_collection:
            q.require(args.query_collection)
            nq = q.count(args.query_collection)
            make = lambda: collection_batches(q.client, args.query_collection, args.query_using, args.batch_size)  # noqa: E731
        else:
            if Q.shape[1] != size:
                raise InputError(f"--queries: {args.queries} has dimension {Q.shape[1]} but collection "
                                 f"{args.collection!r} has {size}; use vectors from the same embedding model.")
            nq = len(Q)
            make = lambda: array_batches(Q, args.batch_size)  # noqa: E731
        gt = None if args.gt in (None, "none") else c.point_ids(args.gt, nq)
        c.check_dim(bank_set, size, args.collection)
        params, _ = c.params(args, bank_set, stored, paired)
        db = DBNormClient(q.client, bank_set.normalizer(params, unit=dist == "Cosine"), candidates=args.candidates)
        runs = []
        for name, rerank in (("raw", False), (params.method, True)):
            lists = reranked_lists(args, q, db, args.collection, make, total=nq, top_k=top_k, rerank=rerank,
                                   label=name, with_payload=[args.field] if args.field else False,
                                   on_point=keep_label)
            m, occ, ids = list_metrics(lists, n, gt, top_k)
            runs.append(Retrieval(name, occ, m, ids=ids + [None] * (len(occ) - len(ids))))
    notes = [f"{nq} queries against collection {args.collection!r} ({n} points), top {top_k} through Qdrant"]
    return runs, (labels or None), params, notes
