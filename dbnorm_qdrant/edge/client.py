"""``EdgeClient``: the subset of the ``QdrantClient`` API the reranking layer uses, on Qdrant Edge.

The Qdrant layer (:mod:`dbnorm_qdrant.qdrant`) is written as generators that yield
qdrant-client calls (``query_points``, ``scroll``, ``batch_update_points``, ...; see
:mod:`dbnorm_qdrant.qdrant._io`). :class:`EdgeClient` answers those calls on
``qdrant_edge.EdgeShard`` objects, translating qdrant-client models to the engine's and
the engine's results back (:mod:`._convert`), so ``DBNormClient(EdgeClient(path), ...)``
runs every line of the layer -- planning, statistics, both rerank paths -- on Qdrant's
own engine, in process.

One collection is one ``EdgeShard`` in a sub-directory of the root folder
(``EdgeClient(path)``), or a shard the caller already holds
(:meth:`EdgeClient.from_shard`). The engine does not report a shard's vector
configuration, so the client keeps it: from ``<dir>/edge_config.json``, from the
``EdgeConfig`` given, or from ``create_collection``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import qdrant_edge as qe
from qdrant_client import models
from qdrant_client.http.models import QueryResponse

from ..errors import InputError
from . import _convert as cv
from . import _queries as qv

__all__ = ["EdgeClient", "engine_errors", "vectors_of_config"]

_NAME_HINT = "pass using= one of the shard's vector names"
#: engine message fragment -> what to do about it (the engine raises bare ``Exception``)
_HINTS = (
    ("Vector dimension error", "use vectors of the size the shard was created with"),
    ("Not existing vector name", _NAME_HINT),
    ("Shard is not initialized", "the EdgeShard is closed: open it again with EdgeShard.load(path) and wrap the "
                                 "new object"),
    ("Operation cancelled", "a formula read a payload value that is not a number (or a missing one without a "
                            "default): run precompute (it indexes the statistics fields) or query with "
                            "mode='client'"),
    ("No point with id", "check the point ids"),
    ("WouldBlock", "another EdgeShard object holds this shard open: close() it first"),
    ("does not exist", "check the path"),
)


class engine_errors:  # noqa: N801 (used as a function: ``with engine_errors("a query"):``)
    """Turn the engine's errors (bare ``Exception``; ``TypeError``/``ValueError`` on bad
    arguments) into an :class:`InputError` naming the operation, the engine's message and a fix.

    A class rather than a ``@contextmanager`` generator: it wraps every engine call of
    every query, and costs a tenth as much. With ``coll`` (a collection of :class:`EdgeClient`),
    a wrong vector name is answered with the collection's dense and sparse vectors."""

    __slots__ = ("what", "coll")

    def __init__(self, what: str, coll: Any = None) -> None:
        self.what = what
        self.coll = coll

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        if exc is None or isinstance(exc, InputError) or not isinstance(exc, Exception):
            return False
        msg = str(exc).strip()
        hint = next((h for k, h in _HINTS if k in msg), "check the arguments (docs/edge.md lists what is supported)")
        if self.coll is not None and hint is _NAME_HINT:
            hint = f"{hint}: dense {sorted(self.coll.dense)}, sparse {sorted(self.coll.sparse)}"
        raise InputError(f"Qdrant Edge refused {self.what}: {msg}; {hint}.") from exc


def vectors_of_config(config: Any) -> tuple[dict[str, tuple[int, str]], dict[str, models.SparseVectorParams]]:
    """``({name: (size, distance)}, {sparse name: SparseVectorParams})`` of an ``EdgeConfig`` or
    of the dict form of ``edge_config.json``; the unnamed vector is the name ``""``."""
    if isinstance(config, dict):
        dense = {n: (int(v["size"]), str(v["distance"])) for n, v in (config.get("vectors") or {}).items()}
        return dense, {n: cv.sparse_params_of(v) for n, v in sorted((config.get("sparse_vectors") or {}).items())}
    if isinstance(config, qe.EdgeConfig):
        vs = config.vectors
        vs = vs if isinstance(vs, dict) else {"": vs}
        dense = {n: (int(v.size), str(v.distance).rsplit(".", 1)[-1]) for n, v in vs.items()}
        return dense, {n: cv.sparse_params_of(v) for n, v in sorted((config.sparse_vectors or {}).items())}
    raise InputError(f"config must be a qdrant_edge.EdgeConfig or the dict of edge_config.json, got "
                     f"{type(config).__name__}.")


@dataclass
class _Coll:
    """One collection: its shard, directory (None: not ours to delete), vector configuration."""

    shard: Any
    path: Path | None
    dense: dict[str, tuple[int, str]]
    sparse: dict[str, models.SparseVectorParams] = field(default_factory=dict)
    owned: bool = True


_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class EdgeClient:
    """A ``QdrantClient`` look-alike over Qdrant Edge shards (one shard per collection).

    Parameters
    ----------
    path:
        The root folder: collection ``c`` is the shard in ``<path>/c`` (created by
        :meth:`create_collection`, opened on first use). Created when missing.

    Supported: ``collection_exists``, ``get_collections``, ``get_collection``, ``create_collection``,
    ``delete_collection``, ``upsert``, ``upload_collection``, ``delete``, ``set_payload``, ``overwrite_payload``,
    ``delete_payload``, ``batch_update_points``, ``create_payload_index``, ``create_vector_name``,
    ``update_vectors``, ``delete_vector_name``, ``count``, ``scroll``, ``retrieve``, ``query_points`` and
    ``query_batch_points`` (prefetch trees, fusion, MMR, recommend / discover / context), ``close``. What the
    engine lacks (shard keys, ``lookup_from``, geo conditions, grouped queries, ...) raises :class:`InputError`.
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.root = None if path is None else Path(path)
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        self._colls: dict[str, _Coll] = {}

    @classmethod
    def from_shard(cls, shard: Any, name: str = "edge", config: Any = None, *, path: str | os.PathLike | None = None,
                   distance: str | None = None, using: str | None = None) -> "EdgeClient":
        """A client whose one collection ``name`` is ``shard``, an open ``EdgeShard`` the
        caller keeps (never closed or deleted here).

        The engine does not report a shard's vectors, so give one of: ``config`` (the
        ``EdgeConfig`` it was created with, or the dict of its ``edge_config.json``),
        ``path`` (its directory: ``edge_config.json`` is read), or ``distance``
        (``"Cosine"``, ``"Dot"``, ``"Euclid"``: the size of vector ``using`` is then probed).
        """
        if not isinstance(shard, qe.EdgeShard):
            raise InputError(f"shard must be a qdrant_edge.EdgeShard, got {type(shard).__name__}.")
        if config is None and path is not None:
            config = _read_config(Path(path))
        if config is not None:
            dense, sparse = vectors_of_config(config)
        elif distance is not None:
            if distance not in cv.DISTANCE:
                raise InputError(f"distance must be one of {sorted(cv.DISTANCE)}, got {distance!r}.")
            dense, sparse = {using or "": (_probe_size(shard, using), distance)}, {}
        else:
            raise InputError(
                "an EdgeShard does not report its vector configuration (names, sizes, distance): pass config= (the "
                "EdgeConfig the shard was created with), path= (its directory, whose edge_config.json is read) or "
                "distance='Cosine'|'Dot'|'Euclid' (the size is then probed)."
            )
        client = cls(None)
        client._colls[name] = _Coll(shard, None if path is None else Path(path), dense, sparse, owned=False)
        return client

    # ------------------------------------------------------------------ collections
    def _dir(self, name: str) -> Path | None:
        if self.root is None or not isinstance(name, str) or not _NAME.match(name):
            return None
        return self.root / name

    def _coll(self, name: str) -> _Coll:
        c = self._colls.get(name)
        if c is not None:
            return c
        d = self._dir(name)
        if d is None or not (d / "edge_config.json").is_file():
            raise InputError(f"collection {name!r} does not exist; check the name or create it first.")
        with engine_errors(f"opening collection {name!r} at {d}"):
            shard = qe.EdgeShard.load(str(d))
        dense, sparse = vectors_of_config(_read_config(d))
        c = self._colls[name] = _Coll(shard, d, dense, sparse)
        return c

    def shard(self, collection_name: str) -> Any:
        """The ``EdgeShard`` behind a collection."""
        return self._coll(collection_name).shard

    def collection_exists(self, collection_name: str) -> bool:
        if collection_name in self._colls:
            return True
        d = self._dir(collection_name)
        return d is not None and (d / "edge_config.json").is_file()

    def get_collections(self) -> models.CollectionsResponse:
        """The collections: those opened or wrapped, and the shard folders under the root."""
        names = set(self._colls)
        if self.root is not None:
            names |= {d.name for d in self.root.iterdir() if (d / "edge_config.json").is_file()}
        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in sorted(names)])

    def get_collection(self, collection_name: str) -> models.CollectionInfo:
        """A ``CollectionInfo`` with the vector configuration and the counts (the rest is unset)."""
        c = self._coll(collection_name)
        with engine_errors(f"info of collection {collection_name!r}"):
            info = c.shard.info()
        vp = {n: models.VectorParams(size=s, distance=models.Distance(d)) for n, (s, d) in c.dense.items()}
        vectors: Any = vp[""] if set(vp) == {""} else vp
        params = models.CollectionParams.model_construct(
            vectors=vectors, sparse_vectors=dict(c.sparse) or None,
            shard_number=1, replication_factor=1, write_consistency_factor=1, on_disk_payload=False)
        config = models.CollectionConfig.model_construct(params=params, hnsw_config=None, optimizer_config=None,
                                                         wal_config=None, quantization_config=None)
        return models.CollectionInfo.model_construct(
            status=models.CollectionStatus.GREEN, optimizer_status=models.OptimizersStatusOneOf.OK,
            indexed_vectors_count=info.indexed_vectors_count, points_count=info.points_count,
            segments_count=info.segments_count, config=config, payload_schema={})

    def create_collection(self, collection_name: str, vectors_config: Any = None,
                          sparse_vectors_config: dict[str, Any] | None = None, **options: Any) -> bool:
        """A new shard in ``<root>/<collection_name>`` (dense vectors: one ``VectorParams``
        or a dict of them; sparse vectors by name, ``SparseVectorParams`` with ``modifier=IDF``
        and the index's ``full_scan_threshold`` / ``on_disk`` / ``datatype``)."""
        extra = sorted(k for k, v in options.items() if v is not None and k not in ("timeout",))
        if extra:
            raise cv._unsupported(f"create_collection option(s) {extra}")
        d = self._dir(collection_name)
        if d is None:
            raise InputError(f"cannot create collection {collection_name!r}: "
                             + ("this EdgeClient wraps one existing shard (from_shard); use EdgeClient(path)."
                                if self.root is None else "use letters, digits, '_', '-' or '.' in the name."))
        if self.collection_exists(collection_name):
            raise InputError(f"collection {collection_name!r} already exists; delete_collection it first.")
        vecs = vectors_config if isinstance(vectors_config, dict) else {"": vectors_config}
        dense = {}
        for n, vp in vecs.items():
            if vp is None or getattr(vp, "multivector_config", None) is not None:
                raise cv._unsupported("a collection without dense vectors, or with multivectors,")
            dist = vp.distance.value if hasattr(vp.distance, "value") else str(vp.distance)
            dense[n] = qe.EdgeVectorParams(size=int(vp.size), distance=cv.DISTANCE[dist])
        sparse = {n: cv.to_sparse_params(p) for n, p in (sparse_vectors_config or {}).items()}
        cfg = qe.EdgeConfig(vectors=dense[""] if set(dense) == {""} else dense, sparse_vectors=sparse or None)
        with engine_errors(f"creating collection {collection_name!r}"):
            shard = qe.EdgeShard.create(str(d), cfg)
        self._colls[collection_name] = _Coll(shard, d, *vectors_of_config(cfg))
        return True

    def delete_collection(self, collection_name: str, **_: Any) -> bool:
        """Close the shard and remove its directory (a wrapped shard: refused)."""
        c = self._colls.get(collection_name)
        if c is not None and not c.owned:
            raise InputError(f"collection {collection_name!r} is a shard this client wraps; it is not deleted here.")
        if not self.collection_exists(collection_name):
            return False
        c = self._colls.pop(collection_name, None)
        if c is not None:
            c.shard.close()
        d = self._dir(collection_name)
        if d is not None and d.exists():
            shutil.rmtree(d)
        return True

    def close(self, **_: Any) -> None:
        """Close the shards this client opened (wrapped shards stay open)."""
        for name in list(self._colls):
            c = self._colls[name]
            if c.owned:
                c.shard.close()
                del self._colls[name]

    # ------------------------------------------------------------------ writes
    def _check_vectors(self, c: _Coll, name: str, vector: Any) -> None:
        """Refuse a point the engine would refuse half-way (updates are not atomic there)."""
        vec = vector if isinstance(vector, dict) else {"": vector}
        for n, v in vec.items():
            if n in c.sparse:
                continue
            if n not in c.dense:
                raise InputError(f"collection {name!r} has no vector {n or '(unnamed)'!r}; its vectors are "
                                 f"{sorted(c.dense)}; nothing was written.")
            if len(v) != c.dense[n][0]:
                raise InputError(f"a vector of size {len(v)} for vector {n or '(unnamed)'!r} of collection {name!r}, "
                                 f"which has size {c.dense[n][0]}; nothing was written.")

    def _apply(self, name: str, ops: Sequence[Any], what: str) -> models.UpdateResult:
        c = self._coll(name)
        with engine_errors(f"{what} on collection {name!r}"):
            for op in ops:
                c.shard.update(op)
        return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)

    def _points_op(self, name: str, points: Sequence[Any]) -> Any:
        c = self._coll(name)
        pts = []
        for p in points:
            v = cv.to_vector(p.vector)
            self._check_vectors(c, name, v)
            pts.append(qe.Point(p.id, v, p.payload))
        return qe.UpdateOperation.upsert_points(pts)

    def upsert(self, collection_name: str, points: Any, wait: bool = True, **_: Any) -> models.UpdateResult:
        """Insert or replace points (``PointStruct`` list or a ``Batch``); checked first, so a
        bad point leaves the shard unchanged."""
        if isinstance(points, models.Batch):
            n = len(points.ids)
            vecs = points.vectors
            points = [models.PointStruct.model_construct(
                id=points.ids[i], payload=(points.payloads or [None] * n)[i],
                vector={k: v[i] for k, v in vecs.items()} if isinstance(vecs, dict) else vecs[i]) for i in range(n)]
        return self._apply(collection_name, [self._points_op(collection_name, list(points))], "upsert")

    def upload_collection(self, collection_name: str, vectors: Any, payload: Any = None, ids: Any = None,
                          batch_size: int = 1024, wait: bool = True, **_: Any) -> None:
        """Upload vectors (an array or list; a dict of them for named vectors) with optional
        payloads and ids (default: random UUIDs, as qdrant-client)."""
        if isinstance(vectors, dict):
            n = len(next(iter(vectors.values())))
            rows = [{k: v[i] for k, v in vectors.items()} for i in range(n)]
        else:
            rows = list(vectors)
            n = len(rows)
        ids = [str(uuid.uuid4()) for _ in range(n)] if ids is None else list(ids)
        payload = [None] * n if payload is None else list(payload)
        for i0 in range(0, n, batch_size):
            pts = [models.PointStruct.model_construct(id=ids[i], vector=rows[i], payload=payload[i])
                   for i in range(i0, min(n, i0 + batch_size))]
            self._apply(collection_name, [self._points_op(collection_name, pts)], "upload_collection")

    def _selector(self, sel: Any) -> tuple[list[Any] | None, Any]:
        """``(ids, None)`` or ``(None, edge filter)`` of a points selector."""
        if isinstance(sel, models.PointIdsList):
            return list(sel.points), None
        if isinstance(sel, models.FilterSelector):
            return None, cv.to_filter(sel.filter)
        if isinstance(sel, models.Filter):
            return None, cv.to_filter(sel)
        if isinstance(sel, (list, tuple)):
            return list(sel), None
        raise cv._unsupported(f"the points selector {type(sel).__name__}")

    def _op(self, op: Any) -> Any:
        """One qdrant-client update operation as an edge ``UpdateOperation``."""
        U = qe.UpdateOperation
        if isinstance(op, models.SetPayloadOperation):
            sp = op.set_payload
            sel = sp.points if sp.points is not None else sp.filter
            ids, flt = self._selector(sel)
            kw = {} if sp.key is None else {"key": sp.key}
            return U.set_payload(ids, sp.payload, **kw) if flt is None else U.set_payload_by_filter(flt, sp.payload, **kw)
        if isinstance(op, models.OverwritePayloadOperation):
            sp = op.overwrite_payload
            ids, flt = self._selector(sp.points if sp.points is not None else sp.filter)
            return U.overwrite_payload(ids, sp.payload) if flt is None else U.overwrite_payload_by_filter(flt, sp.payload)
        if isinstance(op, models.DeletePayloadOperation):
            dp = op.delete_payload
            ids, flt = self._selector(dp.points if dp.points is not None else dp.filter)
            return U.delete_payload(ids, list(dp.keys)) if flt is None else U.delete_payload_by_filter(flt, list(dp.keys))
        if isinstance(op, models.DeleteOperation):
            ids, flt = self._selector(op.delete)
            return U.delete_points(ids) if flt is None else U.delete_points_by_filter(flt)
        raise cv._unsupported(f"the update operation {type(op).__name__}")

    def batch_update_points(self, collection_name: str, update_operations: Sequence[Any], wait: bool = True,
                            **_: Any) -> list[models.UpdateResult]:
        """Apply update operations in order (set/overwrite/delete payload, delete, upsert)."""
        ops = []
        for op in update_operations:
            if isinstance(op, models.UpsertOperation):
                ops.append(self._points_op(collection_name, op.upsert.points))
            else:
                ops.append(self._op(op))
        res = self._apply(collection_name, ops, "batch_update_points")
        return [res] * len(ops)

    def set_payload(self, collection_name: str, payload: dict[str, Any], points: Any, key: str | None = None,
                    wait: bool = True, **_: Any) -> models.UpdateResult:
        """Set payload keys (merged; with ``key=``, inside the object at that key)."""
        op = models.SetPayloadOperation(set_payload=models.SetPayload(payload=payload, points=_ids(points),
                                                                      filter=_flt(points), key=key))
        return self._apply(collection_name, [self._op(op)], "set_payload")

    def overwrite_payload(self, collection_name: str, payload: dict[str, Any], points: Any, wait: bool = True,
                          **_: Any) -> models.UpdateResult:
        op = models.OverwritePayloadOperation(overwrite_payload=models.SetPayload(
            payload=payload, points=_ids(points), filter=_flt(points)))
        return self._apply(collection_name, [self._op(op)], "overwrite_payload")

    def delete_payload(self, collection_name: str, keys: Sequence[str], points: Any, wait: bool = True,
                       **_: Any) -> models.UpdateResult:
        op = models.DeletePayloadOperation(delete_payload=models.DeletePayload(
            keys=list(keys), points=_ids(points), filter=_flt(points)))
        return self._apply(collection_name, [self._op(op)], "delete_payload")

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True, **_: Any) -> models.UpdateResult:
        ids, flt = self._selector(points_selector)
        U = qe.UpdateOperation
        return self._apply(collection_name, [U.delete_points(ids) if flt is None else U.delete_points_by_filter(flt)],
                           "delete")

    # ------------------------------------------------------------------ named vectors
    def create_vector_name(self, collection_name: str, vector_name: str, vector_name_config: Any,
                           wait: bool = True, **_: Any) -> models.UpdateResult:
        """Add a dense named vector (``DenseVectorNameConfig``) to an existing collection; the
        other vectors and the payload are untouched, and the points have no value for it until
        :meth:`update_vectors`. The engine records it in ``<dir>/edge_config.json``, so a shard
        opened later knows it; a wrapped shard's vectors are updated in this client."""
        c = self._coll(collection_name)
        dense = getattr(vector_name_config, "dense", None)
        if dense is None:
            raise cv._unsupported("create_vector_name of a sparse vector")
        if dense.multivector_config is not None or dense.datatype is not None:
            raise cv._unsupported("create_vector_name with multivector_config / datatype")
        if not isinstance(vector_name, str) or not vector_name or vector_name in c.sparse:
            raise InputError(f"cannot add the vector {vector_name!r} to collection {collection_name!r}: give a "
                             f"non-empty name that is not one of its sparse vectors {sorted(c.sparse)}.")
        dist = dense.distance.value if hasattr(dense.distance, "value") else str(dense.distance)
        if dist not in cv.DISTANCE:
            raise InputError(f"distance must be one of {sorted(cv.DISTANCE)}, got {dist!r}.")
        res = self._apply(collection_name, [qe.UpdateOperation.create_dense_vector(
            vector_name, int(dense.size), cv.DISTANCE[dist])], "create_vector_name")
        c.dense[vector_name] = (int(dense.size), dist)
        return res

    def delete_vector_name(self, collection_name: str, vector_name: str, wait: bool = True,
                           **_: Any) -> models.UpdateResult:
        """Remove a dense named vector (its values on every point) from a collection."""
        c = self._coll(collection_name)
        if vector_name not in c.dense:  # the engine would accept any name silently
            raise InputError(f"collection {collection_name!r} has no vector {vector_name!r}; its vectors are "
                             f"{sorted(c.dense)}.")
        res = self._apply(collection_name, [qe.UpdateOperation.delete_vector_name(vector_name)], "delete_vector_name")
        del c.dense[vector_name]
        return res

    def update_vectors(self, collection_name: str, points: Sequence[models.PointVectors], wait: bool = True,
                       update_filter: Any = None, **_: Any) -> models.UpdateResult:
        """Set the named vectors given for existing points (their other vectors and payload
        untouched). Checked first (names, sizes, that every id exists), so a bad point leaves
        the shard unchanged (the engine would stop half-way)."""
        c = self._coll(collection_name)
        pvs, ids = [], []
        for p in points:
            v = cv.to_vector(p.vector)
            self._check_vectors(c, collection_name, v)
            pvs.append(qe.PointVectors(p.id, v))
            ids.append(p.id)
        with engine_errors(f"retrieve on collection {collection_name!r}"):
            found = {_id_key(r.id) for r in c.shard.retrieve(ids, False, False)}
        missing = [i for i in ids if _id_key(i) not in found]
        if missing:
            raise InputError(f"update_vectors: point {missing[0]!r} does not exist in collection "
                             f"{collection_name!r}; upsert it first. Nothing was written.")
        return self._apply(collection_name, [qe.UpdateOperation.update_vectors(pvs, cv.to_filter(update_filter))],
                           "update_vectors")

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None,
                             wait: bool = True, **_: Any) -> models.UpdateResult:
        """A payload index (``keyword``, ``integer``, ``float``, ``bool``, ...) on a field."""
        kind = field_schema.value if hasattr(field_schema, "value") else str(field_schema)
        typ = getattr(qe.PayloadSchemaType, kind.capitalize(), None)
        if typ is None:
            raise cv._unsupported(f"the payload index type {field_schema!r}")
        return self._apply(collection_name, [qe.UpdateOperation.create_field_index(field_name, typ)],
                           "create_payload_index")

    # ------------------------------------------------------------------ reads
    def count(self, collection_name: str, count_filter: Any = None, exact: bool = True, **_: Any) -> models.CountResult:
        c = self._coll(collection_name)
        with engine_errors(f"count on collection {collection_name!r}"):
            n = c.shard.count(qe.CountRequest(exact=bool(exact), filter=cv.to_filter(count_filter)))
        return models.CountResult(count=n)

    def scroll(self, collection_name: str, scroll_filter: Any = None, limit: int = 10, offset: Any = None,
               with_payload: Any = True, with_vectors: Any = False, order_by: Any = None,
               **_: Any) -> tuple[list[models.Record], Any]:
        """A page of records in id order and the next offset (``None`` at the end)."""
        if order_by is not None:
            raise cv._unsupported("scroll with order_by")
        c = self._coll(collection_name)
        with engine_errors(f"scroll on collection {collection_name!r}"):
            recs, nxt = c.shard.scroll(qe.ScrollRequest(
                offset=offset, limit=limit, filter=cv.to_filter(scroll_filter),
                with_payload=cv.to_payload_selector(with_payload), with_vector=cv.to_vector_selector(with_vectors)))
        return [cv.record(r) for r in recs], cv.point_id(nxt)

    def retrieve(self, collection_name: str, ids: Sequence[Any], with_payload: Any = True, with_vectors: Any = False,
                 **_: Any) -> list[models.Record]:
        """The records of ``ids`` (in request order; missing ids left out)."""
        c = self._coll(collection_name)
        with engine_errors(f"retrieve on collection {collection_name!r}"):
            recs = c.shard.retrieve(list(ids), cv.to_payload_selector(with_payload), cv.to_vector_selector(with_vectors))
        return [cv.record(r) for r in recs]

    def _by_ids(self, c: _Coll, name: str, ids: Sequence[Any], using: str | None) -> dict[Any, Any]:
        """The vector ``using`` of each point of ``ids`` (a query or examples given by id)."""
        with engine_errors(f"retrieve on collection {name!r}"):
            recs = {_id_key(r.id): r.vector for r in c.shard.retrieve(list(ids), False, [using] if using else True)}
        out = {pid: recs.get(_id_key(pid)) for pid in ids}
        out = {pid: v.get(using or "") if isinstance(v, dict) else v for pid, v in out.items()}
        for pid, v in out.items():
            if v is None:
                raise InputError(f"point {pid!r} (a query or example) does not exist in collection {name!r} or has no "
                                 f"vector {using or '(unnamed)'!r}; check the id and using=.")
        return out

    def _request(self, c: _Coll, name: str, r: Any) -> Any:
        """A qdrant-client ``QueryRequest`` (or ``Prefetch``) as the engine's, with its prefetches."""
        if getattr(r, "lookup_from", None) is not None or getattr(r, "shard_key", None) is not None:
            raise cv._unsupported("lookup_from / shard keys")
        q, flt, ids = r.query, cv.to_filter(r.filter), None
        if isinstance(q, models.NearestQuery) and q.mmr is None:
            q = q.nearest
        if isinstance(q, (int, str, uuid.UUID)) and not isinstance(q, bool):  # Qdrant leaves the query point out
            q, ids = self._by_ids(c, name, [q], r.using)[q], [q]
        elif type(q) in qv.SCORING_QUERIES:  # fusion, MMR, recommend, ...: not the plain vector query
            q, ids = qv.scoring_query(r, q, lambda xs: self._by_ids(c, name, xs, r.using), r.using in c.sparse)
        if ids:
            flt = qe.Filter(must=None if flt is None else [flt], must_not=[qe.HasIdCondition(set(ids))])
        pf = r.prefetch
        pfs = None if pf is None else [self._request(c, name, p) for p in (pf if isinstance(pf, list) else [pf])]
        common = dict(query=cv.to_query(q, r.using), prefetches=pfs, params=cv.to_search_params(r.params),
                      filter=flt, score_threshold=r.score_threshold)
        if isinstance(r, models.Prefetch):
            return qe.Prefetch(limit=10 if r.limit is None else r.limit, **common)
        return qe.QueryRequest(limit=10 if r.limit is None else r.limit, offset=r.offset,
                               with_payload=cv.to_payload_selector(r.with_payload),
                               with_vector=cv.to_vector_selector(r.with_vector), **common)

    def query_points(self, collection_name: str, query: Any = None, using: str | None = None, prefetch: Any = None,
                     query_filter: Any = None, search_params: Any = None, limit: int = 10, offset: int | None = None,
                     with_payload: Any = True, with_vectors: Any = False, score_threshold: float | None = None,
                     lookup_from: Any = None, shard_key_selector: Any = None, **_: Any) -> QueryResponse:
        """``QdrantClient.query_points`` on the engine (a ``QueryResponse`` of ``ScoredPoint``)."""
        c = self._coll(collection_name)
        req = cv.query_request(
            query=query, using=using, prefetch=prefetch, filter=query_filter, params=search_params, limit=limit,
            offset=offset, with_payload=with_payload, with_vector=with_vectors, score_threshold=score_threshold,
            lookup_from=lookup_from, shard_key=shard_key_selector)
        er = self._request(c, collection_name, req)
        with engine_errors(f"a query on collection {collection_name!r}", c):
            res = c.shard.query(er)
        return cv.query_response([cv.scored_point(p) for p in res])

    def query_batch_points(self, collection_name: str, requests: Sequence[models.QueryRequest],
                           **_: Any) -> list[QueryResponse]:
        """``QdrantClient.query_batch_points``: one engine ``query_batch``."""
        c = self._coll(collection_name)
        ers = [self._request(c, collection_name, r) for r in requests]
        with engine_errors(f"a batch query on collection {collection_name!r}", c):
            res = c.shard.query_batch(qe.QueryBatchRequest(ers))
        return [cv.query_response([cv.scored_point(p) for p in r]) for r in res]


def _id_key(pid: Any) -> Any:
    """A point id comparable across its forms (UUID object, UUID string in any case, int)."""
    return str(uuid.UUID(str(pid))) if isinstance(pid, (str, uuid.UUID)) else pid


def _ids(points: Any) -> Any:
    if isinstance(points, models.PointIdsList):
        return list(points.points)
    return None if isinstance(points, (models.Filter, models.FilterSelector)) else points


def _flt(points: Any) -> Any:
    if isinstance(points, models.FilterSelector):
        return points.filter
    return points if isinstance(points, models.Filter) else None


def _read_config(d: Path) -> dict[str, Any]:
    f = d / "edge_config.json"
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        raise InputError(f"{f} does not exist: {d} is not a Qdrant Edge shard directory; check the path.") from None


def _probe_size(shard: Any, using: str | None) -> int:
    """The size of vector ``using`` of a shard, read from the engine's error on a 1-d query
    (works on an empty shard; a 1-d vector itself gives no error)."""
    try:
        shard.query(qe.QueryRequest(limit=1, query=qe.Query.Nearest([0.0], using=using)))
    except Exception as exc:  # the engine's error names the expected dimension
        m = re.search(r"expected dim: (\d+)", str(exc))
        if m:
            return int(m.group(1))
        with engine_errors("probing the vector size"):
            raise
    return 1
