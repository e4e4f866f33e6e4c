"""``stats precompute`` / ``stats status`` / ``stats refresh``: statistics in a collection's payload."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import Counter
from typing import Any, Iterator

from ..qdrant.server_path import bias_field
from . import common as c
from . import options as o
from .qdrant_io import Qdrant, open_qdrant

_DOCS = {
    "precompute": "write every point's statistics to its payload (resumable: points whose statistics are "
                  "current are skipped)",
    "status": "coverage, fingerprints and staleness of the stored statistics (banks optional)",
    "refresh": "recompute the activation sets (dis/dualdis) and rewrite the flags that changed",
}


def add_parser(sub: Any) -> None:
    p = o.subparser(sub, "stats", help="statistics stored in a collection's payload")
    ssub = p.add_subparsers(dest="stats_command", metavar="SUBCOMMAND", required=True)
    for name, func in (("precompute", run_precompute), ("status", run_status), ("refresh", run_refresh)):
        doc = _DOCS[name]
        p = o.subparser(ssub, name, help=doc, description=doc[0].upper() + doc[1:] + ".")
        o.add_qdrant_opts(p)
        o.add_bank_opts(p)
        o.add_method_opts(p, "the bank file's, else auto")
        p.add_argument("--payload-key", default="_dbnorm", help="the reserved payload key (default _dbnorm)")
        if name == "precompute":
            p.add_argument("--page-size", type=o.positive_int,
                           help="points per page (default 256; with --compute ray: points per task, default 4096)")
            p.add_argument("--force", action="store_true", help="recompute even current statistics")
            p.add_argument("--index", action="store_true",
                           help="also write the index vector that --mode index / mode='index' searches "
                                "(a named vector of size d+1; docs/index.md)")
            o.add_compute_opts(p)
        o.add_json_opt(p)
        o.add_output_opts(p)
        p.set_defaults(func=func)


def _db_for(args: argparse.Namespace, q: Qdrant, bank_set: Any, stored: Any, paired: bool) -> tuple[Any, Any]:
    """A DBNormClient over the collection with the banks and parameters, and its normalizer."""
    from ..qdrant import DBNormClient

    dist, size = q.vector(args.collection, args.using)
    c.check_dim(bank_set, size, args.collection)
    params, _ = c.params(args, bank_set, stored, paired)
    nz = bank_set.normalizer(params, unit=dist == "Cosine")
    return DBNormClient(q.client, nz, payload_key=args.payload_key), nz


@contextlib.contextmanager
def _collection_db(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """(DBNormClient, normalizer) over ``--collection`` with the banks and method, inputs checked first."""
    c.check_method(args)
    bank_set, stored, paired = c.banks(args)
    with open_qdrant(args) as q:
        q.require(args.collection)
        yield _db_for(args, q, bank_set, stored, paired)


def run_precompute(args: argparse.Namespace) -> int:
    with _collection_db(args) as (db, nz):
        t0 = time.perf_counter()
        if args.compute == "ray":
            from ..scale import precompute_ray

            rep = precompute_ray(db, args.collection, address=args.ray_address, num_workers=args.workers,
                                 chunk_size=args.page_size or 4096, using=args.using, force=args.force,
                                 progress=not args.quiet, index=args.index)
        else:
            rep = db.precompute(args.collection, using=args.using, page_size=args.page_size or 256,
                                force=args.force, progress=not args.quiet, index=args.index)
        dt = time.perf_counter() - t0
    out = {"collection": args.collection, "fingerprint": rep.fingerprint, "written": rep.written,
           "skipped": rep.skipped, "seconds": round(dt, 3), "params": nz.params.to_dict(), "payload_key": args.payload_key}
    if args.compute == "ray":
        out.update(workers=rep.workers, chunks=rep.chunks, peak_worker_mb=round(rep.peak_worker_mb, 1),
                   added_during_run=rep.added_during_run)
    if args.index:
        out.update(index_name=rep.index_name, index_written=rep.index_written, index_skipped=rep.index_skipped)
    if args.json:
        c.emit_json(out)
    else:
        print(f"{args.collection}: wrote statistics of {rep.written} points, {rep.skipped} already current "
              f"(fingerprint {rep.fingerprint}, payload key {args.payload_key!r}) in {dt:.1f}s")
        if args.index:
            print(f"  index vector {rep.index_name!r}: {rep.index_written} written, {rep.index_skipped} present")
    return 0


def _fingerprints(args: argparse.Namespace, q: Qdrant, total: int, field: str | None = None) -> tuple[Counter, int]:
    """How many points carry each stored fingerprint (``None``: no statistics), and how many
    records hold ``field`` (the bias field of the expected normaliser, what the server formula
    reads: :func:`~dbnorm_qdrant.qdrant.server_path.bias_field`)."""
    from ..qdrant.sources import iter_pages

    fps: Counter[str | None] = Counter()
    biased = 0
    with c.progress(args, total=total, desc=f"scanning {args.collection}", unit="pt") as bar:
        for recs in iter_pages(q.client, args.collection, with_payload=[args.payload_key]):
            for r in recs:
                rec = (r.payload or {}).get(args.payload_key)
                fps[rec.get("fp") if isinstance(rec, dict) else None] += 1
                biased += field is not None and isinstance(rec, dict) and field in rec
            bar.update(len(recs))
    return fps, biased


def run_status(args: argparse.Namespace) -> int:
    c.check_method(args)
    bank_set, stored, paired = c.banks(args, required=False)
    with open_qdrant(args) as q:
        q.require(args.collection)
        q.vector(args.collection, args.using)
        expected = params = None
        if bank_set is not None:
            _, nz = _db_for(args, q, bank_set, stored, paired)
            expected, params = nz.fingerprint, nz.params
        total = q.count(args.collection)
        field = None if expected is None else bias_field(params, expected)
        fps, biased = _fingerprints(args, q, total, field)
        indexes = _index_vectors(q, args.collection)
    missing = fps.pop(None, 0)
    with_stats = sum(fps.values())
    out: dict[str, Any] = {
        "collection": args.collection, "points": total, "payload_key": args.payload_key,
        "with_stats": with_stats, "missing": missing, "fingerprints": dict(fps.most_common()),
        "coverage": (with_stats / total) if total else 0.0, "index_vectors": indexes,
    }
    if expected is not None:
        current = fps.get(expected, 0)
        # statistics stored before the bias field existed: served, but the next precompute rewrites them
        no_bias = current - biased if field is not None else 0
        out.update(fingerprint=expected, current=current, stale=with_stats - current,
                   coverage=(current / total) if total else 0.0, params=params.to_dict(),
                   without_bias_field=no_bias, up_to_date=current == total and no_bias == 0)
        from ..core.index import index_name

        out["index_vector"] = index_name(expected, args.using)
        out["index_current"] = out["index_vector"] in indexes
        if params.gated:
            out["activation_flags"] = (f"{params.method} gates on activation sets that go stale when points are added; "
                                       f"run `{o.PROG} stats refresh` after adding points")
    if args.json:
        c.emit_json(out)
    else:
        _print_status(args, out, fps, expected, params)
    return 0


def _print_status(args: argparse.Namespace, out: dict[str, Any], fps: Counter, expected: Any, params: Any) -> None:
    print(f"collection {args.collection!r}: {out['points']} points, payload key {args.payload_key!r}")
    if expected is not None:
        print(f"  fingerprint of these banks + params: {expected} ({params.method})")
        print(f"  current: {out['current']} ({out['coverage']:.1%})   stale: {out['stale']}   missing: {out['missing']}")
        if out["without_bias_field"]:
            print(f"  {out['without_bias_field']} current points predate the bias field the server formula reads: "
                  f"`{o.PROG} stats precompute` adds it")
        if "activation_flags" in out:
            print(f"  note: {out['activation_flags']}")
    else:
        print(f"  with statistics: {out['with_stats']} ({out['coverage']:.1%})   missing: {out['missing']}")
    for fp, n in fps.most_common(5):
        print(f"  fingerprint {fp}: {n} points")
    if expected is not None:
        state = "present" if out["index_current"] else f"absent (`{o.PROG} stats precompute --index` writes it)"
        print(f"  index vector {out['index_vector']}: {state}")
    if out["index_vectors"]:
        print(f"  index vectors in the collection: {', '.join(out['index_vectors'])}")


def _index_vectors(q: Qdrant, collection: str) -> list[str]:
    """The names of the collection's index vectors (``precompute --index``; docs/index.md)."""
    from ..core.index import INDEX_PREFIX

    vectors = q.client.get_collection(collection).config.params.vectors
    return sorted(k for k in vectors if k.startswith(INDEX_PREFIX)) if isinstance(vectors, dict) else []


def run_refresh(args: argparse.Namespace) -> int:
    with _collection_db(args) as (db, nz):
        rep = db.refresh(args.collection, using=args.using)
    out = {"collection": args.collection, "fingerprint": rep.fingerprint, "flags_changed": rep.flags_changed,
           "params": nz.params.to_dict()}
    if args.json:
        c.emit_json(out)
    elif not nz.params.gated:
        print(f"{nz.params.method} has no activation flags; nothing to refresh")
    else:
        print(f"{args.collection}: {rep.flags_changed} activation flags rewritten (fingerprint {rep.fingerprint})")
    return 0
