"""Writing, topping up and dropping the index vector (docs/index.md).

:func:`index_logic` adds the named vector ``_dbnorm_<short fingerprint>`` (size d + 1,
``Distance.DOT``) to an existing collection with ``create_vector_name`` and writes each
point's index row ``[g, -bias(g)]`` (:func:`dbnorm_qdrant.core.index.index_rows`) with
``update_vectors``, page by page. ``update_vectors`` sets only the vector it names: the
user's vectors and payload are never written. Points that already hold the index vector
are skipped, so an interrupted run resumes, and :meth:`DBNormClient.refresh` uses the same
pass to give points upserted later their row. Everything that would make the index wrong
is refused before anything is written: centering, a distance that is not an inner product
(Euclid), a name taken by a vector that is not an index vector, zero vectors under Cosine,
a client that cannot add a named vector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import models

from ..core.index import INDEX_PREFIX, index_form, index_rows
from ..core.normalizer import BankNormalizer
from ..errors import InputError
from ._io import Call, Logic
from .config import VectorInfo
from .sources import point_key, record_vector, scroll_pages

if TYPE_CHECKING:
    from .core import Core

__all__ = ["names_logic", "check_index_logic", "write_index_logic", "drop_index_logic"]


def names_logic(core: Core, collection: str) -> Logic:
    """Logic: read the collection's vector names afresh (another process may have changed them)."""
    desc = yield Call("get_collection", dict(collection_name=collection))
    core.set_names(collection, desc)
    return core.names(collection)


def _has(record: Any, name: str) -> bool:
    return isinstance(record.vector, dict) and record.vector.get(name) is not None


def check_index_logic(core: Core, collection: str, info: VectorInfo, nz: BankNormalizer) -> Logic:
    """Logic: refuse (before anything is written) what cannot have a correct index vector;
    returns the index vector's name."""
    index_form(nz.params, info.distance)
    names = yield from names_logic(core, collection)
    _, name = core.index_status(collection, info, nz)
    if name in names and names[name] != (info.size + 1, "Dot"):
        raise InputError(
            f"collection {collection!r} has a vector named {name!r} that is not a dbnorm index vector (size "
            f"{names[name][0]}, {names[name][1]}); nothing was written. Rename that vector."
        )
    if info.distance == "Cosine":
        bad: list[Any] = []

        def page(recs: list[Any]) -> None:
            for r in recs:
                v = record_vector(r, info.using)
                if v is not None and not bad and not np.any(np.asarray(v)):
                    bad.append(r.id)

        sel = True if info.using is None else [info.using]
        yield from scroll_pages(collection, page, page_size=1024, with_vectors=sel)
        if bad:
            raise InputError(
                f"point {bad[0]!r} of collection {collection!r} has a zero vector: it has no direction under "
                "Cosine, so no index vector can be written; nothing was written. Remove or replace that point."
            )
    return name


def create_logic(collection: str, info: VectorInfo, name: str, names: dict[str, Any]) -> Logic:
    """Logic: add the named vector ``name`` (d + 1, Dot) unless the collection has it."""
    if name in names:
        return
    cfg = models.DenseVectorNameConfig(dense=models.DenseVectorConfig(size=info.size + 1, distance=models.Distance.DOT))
    try:
        yield Call("create_vector_name", dict(collection_name=collection, vector_name=name, vector_name_config=cfg))
    except AttributeError:
        raise InputError(
            "this client cannot add a named vector to an existing collection (create_vector_name), so index mode "
            "is not supported on it; use mode='client' or 'server'."
        ) from None


def write_index_logic(core: Core, collection: str, info: VectorInfo, nz: BankNormalizer, name: str, *,
                      page_size: int = 256, progress: bool = False) -> Logic:
    """Logic: write the index row of every point that lacks one; returns ``(written, skipped)``.

    The statistics come from the points' vectors (the kernels, as :mod:`.store` computes them)."""
    from tqdm.auto import tqdm

    counts = [0, 0]
    unit = info.distance == "Cosine"
    total = (yield Call("count", dict(collection_name=collection, exact=True))).count
    bar = tqdm(total=total, desc=f"dbnorm index {collection}", unit="pt", disable=not progress)

    def page(recs: list[Any]) -> Logic | None:
        bar.update(len(recs))
        todo = [r for r in recs if not _has(r, name) and record_vector(r, info.using) is not None]
        counts[1] += len(recs) - len(todo)
        return _write(todo) if todo else None

    def _write(todo: list[Any]) -> Logic:
        keys = np.fromiter((point_key(r.id) for r in todo), dtype=np.int64, count=len(todo))
        G = np.asarray([record_vector(r, info.using) for r in todo], dtype=np.float32)
        st = nz.gallery_stats(G, gallery_keys=keys, activation=False, nonzero=False)
        R = index_rows(G, st, nz.params, unit=unit)
        pts = [models.PointVectors(id=r.id, vector={name: R[i].tolist()}) for i, r in enumerate(todo)]
        yield Call("update_vectors", dict(collection_name=collection, points=pts, wait=True))
        counts[0] += len(todo)

    try:
        yield from scroll_pages(collection, page, page_size=page_size, with_vectors=True)
    finally:
        bar.close()
    return counts[0], counts[1]


def drop_index_logic(core: Core, collection: str, name: str | None) -> Logic:
    """Logic: delete the index vector ``name`` (``None``: every index vector) of a collection;
    returns the names deleted. Only names starting with ``_dbnorm_`` are ever deleted."""
    names = yield from names_logic(core, collection)
    gone = [k for k in names if k.startswith(INDEX_PREFIX) and (name is None or k == name)]
    for k in gone:
        yield Call("delete_vector_name", dict(collection_name=collection, vector_name=k))
    yield from names_logic(core, collection)
    return gone
