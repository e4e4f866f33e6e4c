"""Batch rerank on Ray Data: the query file read by Ray, ``map_batches`` with one normaliser
actor per worker, the rows streamed back in query order (docs/scale.md).

:func:`rerank_ray` yields the same rows as the local engine (:mod:`.rows`: ``query``, ``ids``,
``scores``, and ``raw_scores`` through a collection), batch by batch; ``dbnorm-qdrant rerank
--compute ray`` writes them with the local engine's writer, so the files are the same.

What an actor holds: against a gallery matrix, the normaliser, the matrix and its
statistics (computed once by the driver, shared through the object store); against a
collection on a server, its own client; against a collection in local mode or Qdrant Edge
(single-process, which a worker cannot open), an in-memory copy of the collection (its
vectors and stored statistics) built from a snapshot the driver scrolls once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..core.normalizer import BankNormalizer
from ..errors import InputError
from ..validation import as_matrix, check_int
from ._ray import ray_session, require_ray, unwrap
from .precompute import server_options
from .rows import collection_rows, matrix_rows

__all__ = ["rerank_ray", "query_source"]

#: the columns of a Parquet query file: the vectors, and (optional) the query ids
VECTOR_COLUMN, QUERY_COLUMN = "vector", "query"


def query_source(queries: Any, what: str = "queries") -> tuple[int, int, Any]:
    """``(rows, dimension, read)`` of the queries: a ``.npy`` file, a Parquet file (column
    ``vector``, optional ``query`` ids) or a 2-D array; ``read(ray, blocks)`` makes the Ray dataset.
    Checked on the driver, before Ray starts."""
    if isinstance(queries, (str, Path)):
        p = Path(queries)
        if not p.is_file():
            raise InputError(f"{what}: {p} does not exist; pass a .npy or .parquet file of query vectors.")
        if p.suffix.lower() == ".npy":
            from .._io_utils import load_npy

            arr = load_npy(p, what, mmap=True)
            if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
                raise InputError(f"{what}: {p} holds a {arr.dtype} array of shape {arr.shape}; pass a 2-D float "
                                 "array (rows x dimension).")
            return arr.shape[0], arr.shape[1], lambda ray, blocks: ray.data.read_numpy(str(p), override_num_blocks=blocks)
        if p.suffix.lower() in (".parquet", ".pq"):
            return _parquet_source(p, what)
        raise InputError(f"{what}: {p} has the extension {p.suffix or '(none)'!r}; pass a .npy or .parquet file.")
    Q = as_matrix(queries, what)
    return Q.shape[0], Q.shape[1], lambda ray, blocks: ray.data.from_numpy(np.array_split(Q, blocks))


def _parquet_source(p: Path, what: str) -> tuple[int, int, Any]:
    try:
        import pyarrow.parquet as pq

        f = pq.ParquetFile(p)
    except ImportError:
        raise InputError("Parquet query files need pyarrow: `pip install pyarrow` (or pass a .npy file).") from None
    except Exception as exc:
        raise InputError(f"{what}: {p} is not a readable Parquet file ({exc}).") from None
    names = f.schema_arrow.names
    if VECTOR_COLUMN not in names:
        raise InputError(f"{what}: {p} has no column {VECTOR_COLUMN!r} (its columns: {', '.join(names)}); store "
                         f"the query vectors as a list<float> column {VECTOR_COLUMN!r} (ids, optional, in "
                         f"{QUERY_COLUMN!r}).")
    n = f.metadata.num_rows
    first = f.read_row_group(0, columns=[VECTOR_COLUMN]).column(0) if f.num_row_groups else None
    dim = len(first[0].as_py()) if first is not None and len(first) else 0
    cols = [c for c in (VECTOR_COLUMN, QUERY_COLUMN) if c in names]
    return n, dim, lambda ray, blocks: ray.data.read_parquet(str(p), override_num_blocks=blocks).select_columns(cols)


def _vectors(batch: dict[str, Any], dim: int, what: str) -> np.ndarray:
    """The float32 ``(n, dim)`` query matrix of a Ray batch (``read_numpy``'s ``data`` column,
    Parquet's ``vector``, ``from_numpy``'s ``data``); a row of another dimension is refused."""
    col = batch.get("data", batch.get(VECTOR_COLUMN))
    rows = list(col) if col.dtype == object or col.ndim == 1 else col
    lens = {len(r) for r in rows}
    if lens != {dim}:
        bad = ", ".join(str(x) for x in sorted(lens - {dim}))
        raise InputError(f"{what}: some vectors have dimension {bad} but the gallery has {dim}; "
                         "use vectors from the same embedding model.")
    return np.asarray(np.stack(rows) if isinstance(rows, list) else rows, dtype=np.float32)


class _Reranker:
    """The Ray Data actor: built once per worker from the ``world`` in the object store,
    then called on each batch of queries; returns each row as JSON text (ids may be ints
    or UUID strings, and the rows must come back exactly as the local engine makes them)."""

    def __init__(self, world: list[Any]) -> None:
        import ray

        self.w = ray.get(world[0])
        if self.w["kind"] == "collection":
            from ..qdrant import DBNormClient

            self.db = DBNormClient(_open(self.w), settings=self.w["settings"])

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        w = self.w
        n = len(next(iter(batch.values())))
        try:
            Q = _vectors(batch, w["dim"], w["what"])
            qids = list(range(len(Q)))  # the driver puts the real ids back
            if w["kind"] == "matrix":
                rows = matrix_rows(w["nz"], w["G"], w["stats"], qids, Q, top_k=w["top_k"], what=w["what"])
            else:
                rows = collection_rows(self.db, w["collection"], qids, Q, top_k=w["top_k"], using=w["using"],
                                       candidates=w["candidates"])
            text = [json.dumps({k: v for k, v in r.items() if k != "query"}) for r in rows]
            err = [""] * n
        except InputError as exc:  # bad input is data: the driver raises it as it is (Ray would wrap it)
            text, err = [""] * n, [str(exc)] * n
        out = {"row": np.array(text, dtype=object), "error": np.array(err, dtype=object)}
        if QUERY_COLUMN in batch:
            out[QUERY_COLUMN] = batch[QUERY_COLUMN]
        return out


def _open(w: dict[str, Any]) -> Any:
    """The actor's Qdrant client: its own client to the server, or an in-memory copy of the collection."""
    from qdrant_client import QdrantClient, models

    if w["conn"] is not None:
        return QdrantClient(**w["conn"], check_compatibility=False)
    client = QdrantClient(":memory:")
    cfg = w["config"]
    client.create_collection(w["collection"], vectors_config=cfg.vectors, sparse_vectors_config=cfg.sparse_vectors)
    pts = [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload or {}) for r in w["points"]]
    for i in range(0, len(pts), 1024):
        client.upsert(w["collection"], points=pts[i : i + 1024], wait=True)
    return client


def _collection_world(db: Any, collection: str, using: str | None, dim: int, what: str) -> dict[str, Any]:
    """What a collection actor needs (checked on the driver: the collection, its vector, the query dimension)."""
    from ..qdrant.sources import iter_pages

    if not db.client.collection_exists(collection):
        raise InputError(f"collection {collection!r} does not exist; pass an existing collection.")
    desc = db.client.get_collection(collection)
    from ..qdrant.config import vector_info

    info = vector_info(desc, collection, using)
    if dim != info.size:
        raise InputError(f"{what} have dimension {dim} but collection {collection!r} has {info.size}; use vectors "
                         "from the same embedding model.")
    settings = dataclasses.replace(db.settings, query_log=None, rebuild_every=None)  # actors never log
    w: dict[str, Any] = {"kind": "collection", "collection": collection, "settings": settings,
                         "conn": server_options(db.client), "config": desc.config.params, "points": None}
    if w["conn"] is None:  # single-process Qdrant: a snapshot of the vectors and the stored statistics
        w["points"] = [r for recs in iter_pages(db.client, collection, with_vectors=True,
                                                with_payload=[db.payload_key]) for r in recs]
    return w


def rerank_ray(queries: Any, *, normalizer: BankNormalizer | None = None, gallery: Any = None, db: Any = None,
               collection: str | None = None, top_k: int = 10, batch_size: int = 256, candidates: int | None = None,
               using: str | None = None, address: str | None = None, num_workers: int | None = None,
               what: str = "queries") -> Iterator[list[dict[str, Any]]]:
    """Rerank a query set on Ray Data; yield the rows, batch by batch, in query order.

    Against a gallery matrix (``normalizer`` and ``gallery``: ids are row numbers) or a
    collection (``db``, a :class:`~dbnorm_qdrant.qdrant.DBNormClient`, and ``collection``).
    ``queries``: a ``.npy`` file, a Parquet file (a list<float> column ``vector``; the ids in
    ``query`` when present, else row numbers) or a 2-D array. Each row is ``{query, ids,
    scores}`` (plus ``raw_scores`` through a collection), as the local engine writes it.
    The input is checked before Ray starts; a task's :class:`InputError` is raised as it is,
    any other failure as :class:`~dbnorm_qdrant.scale.RayRunError`.
    """
    if (gallery is None) == (collection is None):
        raise InputError("pass either gallery= (with normalizer=) or collection= (with db=), not both or neither.")
    top_k = check_int(top_k, "top_k", hint="it is the number of results per query.")
    batch_size = check_int(batch_size, "batch_size", hint="it is the number of queries per Ray batch.")
    n, dim, read = query_source(queries, what)
    if gallery is not None:
        if normalizer is None:
            raise InputError("gallery= needs normalizer= (a BankNormalizer with the banks and the method).")
        G = as_matrix(gallery, "gallery")
        if dim != G.shape[1]:
            raise InputError(f"{what} have dimension {dim} but the gallery has {G.shape[1]}; use vectors from the "
                             "same embedding model.")
        world = {"kind": "matrix", "nz": normalizer, "G": G, "stats": normalizer.gallery_stats(G)}
    else:
        if db is None:
            raise InputError("collection= needs db= (a DBNormClient with the banks and the method).")
        world = _collection_world(db, collection, using, dim, what)
    world.update(dim=dim, what=what, top_k=top_k, using=using, candidates=candidates)
    yield from _run(read, world, n, batch_size, address, num_workers)


def _run(read: Any, world: dict[str, Any], n: int, batch_size: int, address: str | None,
         num_workers: int | None) -> Iterator[list[dict[str, Any]]]:
    ray = require_ray()
    with ray_session(address, num_workers) as workers:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come back in query order: row numbers are ids
        ctx.enable_progress_bars = False
        ref = [ray.put(world)]
        done = 0
        try:
            # read first, into the object store (spread over the nodes): the actor pool then holds every
            # CPU it asks for, and a read task still waiting for one would never run (Ray Data hangs)
            blocks = max(1, min(4 * workers, -(-n // batch_size)))  # enough blocks for every actor
            ds = read(ray, blocks).materialize().map_batches(
                _Reranker, fn_constructor_kwargs={"world": ref}, batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, batch_format="numpy")
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                if len(b["error"]) and b["error"][0]:
                    raise InputError(str(b["error"][0]))
                qids = b[QUERY_COLUMN].tolist() if QUERY_COLUMN in b else range(done, done + len(b["row"]))
                yield [{"query": q, **json.loads(r)} for q, r in zip(qids, b["row"])]
                done += len(b["row"])
        except Exception as exc:  # a task's InputError comes back wrapped by Ray: unwrap names it
            raise unwrap(exc, f"the rerank of {n} queries") from None
