"""``rerank``: batch offline reranking of a query set to JSONL or Parquet.

Through Qdrant (``--collection``: batched ``query_batch_points``) or against a plain
gallery matrix (``--gallery``); in this process, or on Ray (``--compute ray``: Ray Data reads
``--queries`` (.npy or Parquet), one normaliser actor per worker; the same rows, docs/scale.md). Rows stream to a temporary file next to ``--out``, which
is renamed into place only when every query is done: a failed run leaves no file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

from .._io_utils import atomic_path, check_writable, jsonable
from ..validation import check_vectors
from ..errors import InputError
from . import common as c
from . import options as o
from ..scale.rows import collection_rows, matrix_rows
from .qdrant_io import array_batches, collection_batches, open_qdrant

#: output format of each supported ``--out`` extension
FORMATS = {".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def add_parser(sub: Any) -> None:
    p = o.subparser(
        sub, "rerank", help="batch offline reranking to JSONL or Parquet",
        description="Top-k ids and scores per query, reranked with bank normalisation, written as "
        "one row per query ({query, ids, scores[, raw_scores]}) to JSONL or Parquet (by the --out "
        "extension, .jsonl or .parquet, or --format). Through Qdrant (--collection: batched query_batch_points) "
        "or against a plain gallery matrix (--gallery). Memory stays bounded by --batch-size.")
    p.add_argument("--out", required=True, metavar="FILE", help="results.jsonl or results.parquet (written on success)")
    p.add_argument("--format", choices=("jsonl", "parquet"), help="default: from the --out extension")
    p.add_argument("--queries", metavar="Q.npy",
                   help="query vectors (read memory-mapped); with --compute ray also Q.parquet (a list<float> "
                        "column 'vector', ids in 'query' if present)")
    p.add_argument("--query-collection", metavar="NAME", help="or: the queries are the points of this collection")
    p.add_argument("--query-using", metavar="VECTOR", help="the named vector of --query-collection")
    p.add_argument("--gallery", metavar="G.npy", help="rerank against this matrix instead of a collection")
    o.add_top_k_opt(p, 10)
    o.add_candidates_opt(p)
    o.add_mode_opt(p)
    o.add_batch_opts(p)
    o.add_json_opt(p, "print a JSON summary")
    o.add_bank_opts(p)
    o.add_method_opts(p, "the bank file's, else auto")
    o.add_qdrant_opts(p, required=False)
    o.add_compute_opts(p)
    o.add_output_opts(p)
    p.set_defaults(func=run)


def output_format(out: Path, fmt: str | None) -> str:
    """The format to write ``out`` in: ``--format``, else from its extension (which must be known)."""
    by_ext = FORMATS.get(out.suffix.lower())
    supported = ", ".join(sorted(FORMATS))
    if fmt is None and by_ext is None:
        raise InputError(f"--out {out}: unknown extension {out.suffix or '(none)'!r}; the supported extensions are "
                         f"{supported} (or pass --format jsonl|parquet).")
    if fmt is not None and by_ext is not None and fmt != by_ext:
        raise InputError(f"--out {out} has the {out.suffix} extension but --format is {fmt}; make them agree.")
    fmt = fmt or by_ext
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise InputError("Parquet output needs pyarrow, which is not installed: `pip install pyarrow` (or the "
                             "parquet extra), or write JSONL (--out results.jsonl).") from None
    return fmt  # type: ignore[return-value]


def _check(args: argparse.Namespace) -> tuple[Path, str]:
    if args.gallery and args.collection:
        raise InputError("give either --collection (rerank through Qdrant) or --gallery (a plain matrix), not both.")
    if not args.gallery and not args.collection:
        raise InputError("nothing to search: pass --collection NAME (with --path/--url) or --gallery G.npy.")
    if bool(args.queries) == bool(args.query_collection):
        raise InputError("pass the queries as --queries Q.npy or --query-collection NAME (one of them).")
    if args.query_collection and not args.collection:
        raise InputError("--query-collection needs --collection (and --path/--url).")
    if args.compute == "ray" and args.query_collection:
        raise InputError("--compute ray reads the queries from a file: pass --queries Q.npy or Q.parquet "
                         "(or use --compute local with --query-collection).")
    c.check_method(args)
    out = check_writable(args.out, "--out")
    return out, output_format(out, args.format)


def run(args: argparse.Namespace) -> int:
    out, fmt = _check(args)
    t0 = time.perf_counter()
    if args.compute == "ray":
        n = _on_ray(args, out, fmt)
    else:
        n = _through_qdrant(args, out, fmt) if args.collection else _against_matrix(args, out, fmt)
    dt = time.perf_counter() - t0
    c.log.info("reranked %d queries in %.1fs (%.1f queries/s) -> %s", n, dt, n / dt if dt else float("inf"), out)
    if args.json:
        c.emit_json({"out": str(out), "queries": n, "seconds": round(dt, 3)})
    elif not args.quiet:
        print(f"wrote top-{args.top_k} results of {n} queries to {out}")
    return 0


# ----------------------------------------------------------------------- writers
class _Jsonl:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "w", encoding="utf-8")
        self.rows = 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self._f.write(json.dumps(jsonable(r)) + "\n")
        self.rows += len(rows)

    def close(self) -> None:
        self._f.close()


class _Parquet:
    """One row group per batch; ids as strings when any is not an integer (UUID points)."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows, self._w = path, 0, None

    def write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {k: [r.get(k) for r in rows] for k in rows[0]}
        if any(not isinstance(i, int) for r in rows for i in r["ids"]) or not isinstance(rows[0]["query"], int):
            cols["ids"] = [[str(i) for i in r["ids"]] for r in rows]
            cols["query"] = [str(q) for q in cols["query"]]
        table = pa.table(cols)
        if self._w is None:
            self._w = pq.ParquetWriter(self.path, table.schema)
        self._w.write_table(table.cast(self._w.schema))
        self.rows += len(rows)

    def close(self) -> None:
        if self._w is None:  # no query at all: an empty table, so the file is still valid Parquet
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([("query", pa.int64()), ("ids", pa.list_(pa.int64())),
                                ("scores", pa.list_(pa.float64()))])
            self._w = pq.ParquetWriter(self.path, schema)
        self._w.close()


@contextlib.contextmanager
def row_writer(path: Path, fmt: str) -> Iterator[Any]:
    """A sink with ``write(rows)`` and ``rows``; the file appears at ``path`` only if the block succeeds."""
    with atomic_path(path, "--out") as tmp:
        sink = _Parquet(tmp) if fmt == "parquet" else _Jsonl(tmp)
        try:
            yield sink
        finally:
            sink.close()


# ---------------------------------------------------------------------- sources
def _against_matrix(args: argparse.Namespace, out: Path, fmt: str) -> int:
    Q = c.matrix(args.queries, "--queries", mmap=True)
    check_vectors(Q, "--queries")  # here, on the whole matrix: a bad row is named by its row number
    G = c.matrix(args.gallery, "--gallery", ncols=Q.shape[1], of="--queries")
    bank_set, stored, paired = c.banks(args, Q.shape[1])
    params, _ = c.params(args, bank_set, stored, paired)
    nz = bank_set.normalizer(params)
    c.log.info("gallery statistics for %d items (%s)...", len(G), params.method)
    stats = nz.gallery_stats(G)
    with row_writer(out, fmt) as w, c.progress(args, total=len(Q), desc="rerank", unit="q") as bar:
        for qids, vecs in array_batches(Q, args.batch_size):
            w.write(matrix_rows(nz, G, stats, qids, vecs, top_k=args.top_k, what="--queries"))
            bar.update(len(qids))
    return w.rows


def _through_qdrant(args: argparse.Namespace, out: Path, fmt: str) -> int:
    from ..qdrant import DBNormClient

    Q = c.matrix(args.queries, "--queries", mmap=True) if args.queries else None
    bank_set, stored, paired = c.banks(args, None if Q is None else Q.shape[1])
    with open_qdrant(args) as q:
        q.require(args.collection)
        dist, size = q.vector(args.collection, args.using)
        if args.query_collection:
            q.require(args.query_collection)
            total = q.count(args.query_collection)
            batches = collection_batches(q.client, args.query_collection, args.query_using, args.batch_size)
        else:
            if Q.shape[1] != size:
                raise InputError(f"--queries: {args.queries} has dimension {Q.shape[1]} but collection "
                                 f"{args.collection!r} has {size}; use vectors from the same embedding model.")
            # checked whole, up front: a bad row is named by its row number, not its place in a batch
            check_vectors(Q, "--queries", nonzero=dist != "Euclid")
            total, batches = len(Q), array_batches(Q, args.batch_size)
        c.check_dim(bank_set, size, args.collection)
        params, _ = c.params(args, bank_set, stored, paired)
        db = DBNormClient(q.client, bank_set.normalizer(params, unit=dist == "Cosine"), candidates=args.candidates,
                          mode=args.mode)
        with row_writer(out, fmt) as w, c.progress(args, total=total, desc="rerank", unit="q") as bar:
            for qids, vecs in batches:
                w.write(collection_rows(db, args.collection, qids, vecs, top_k=args.top_k, using=args.using,
                                        candidates=args.candidates))
                bar.update(len(qids))
    return w.rows


def _on_ray(args: argparse.Namespace, out: Path, fmt: str) -> int:
    """``--compute ray``: the rows of :func:`dbnorm_qdrant.scale.rerank_ray`, written as the local engine writes them."""
    from ..scale import rerank_ray, require_ray
    from ..scale.rerank import query_source

    require_ray()  # before any work: the extra is named when Ray is missing
    _, dim, _ = query_source(args.queries, "--queries")
    ray_kw = dict(top_k=args.top_k, batch_size=args.batch_size, address=args.ray_address, num_workers=args.workers,
                  what="--queries")
    bank_set, stored, paired = c.banks(args, dim)
    params, _ = c.params(args, bank_set, stored, paired)
    with contextlib.ExitStack() as stack:
        if args.collection:
            from ..qdrant import DBNormClient

            q = stack.enter_context(open_qdrant(args))
            q.require(args.collection)
            dist, size = q.vector(args.collection, args.using)
            c.check_dim(bank_set, size, args.collection)
            db = DBNormClient(q.client, bank_set.normalizer(params, unit=dist == "Cosine"), candidates=args.candidates,
                              mode=args.mode)
            rows = rerank_ray(args.queries, db=db, collection=args.collection, using=args.using,
                              candidates=args.candidates, **ray_kw)
        else:
            G = c.matrix(args.gallery, "--gallery", ncols=dim, of="--queries")
            rows = rerank_ray(args.queries, normalizer=bank_set.normalizer(params), gallery=G, **ray_kw)
        with row_writer(out, fmt) as w:
            for batch in rows:
                if batch:
                    w.write(batch)
    return w.rows
