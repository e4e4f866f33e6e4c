"""Writing adapted vectors into Qdrant, never over anything that is already there.

:func:`write_adapted_vectors` writes only where it is asked to -- the named vector
``target_vector`` of the source collection (declared in its config, never the source
vector itself), or a separate ``target_collection`` -- and only to points that do not
hold an adapted vector yet: an existing one is skipped, never overwritten, so a rerun
resumes an interrupted run and no vector or payload of the user changes.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...errors import InputError
from ...qdrant.sources import iter_pages, vector_selector
from .model import Adapter
from .train import progress_bar

__all__ = ["write_adapted_vectors"]


def write_adapted_vectors(
    client: Any,
    collection: str,
    adapter: Adapter,
    *,
    target_vector: str = "adapted",
    target_collection: str | None = None,
    using: str | None = None,
    side: str = "gallery",
    batch_size: int = 256,
    progress: bool = True,
) -> int:
    """Write adapted vectors of a collection's points, leaving the original vectors untouched.

    - ``target_collection=None``: into the named vector ``target_vector`` of the same
      collection, which must already be declared in its config (Qdrant cannot add a named
      vector to an existing collection) and differ from ``using``; only that vector is
      written (``update_vectors``).
    - ``target_collection="name"``: into a new collection (created when missing, same
      distance, the single named vector ``target_vector``) with the points' ids and
      payloads. An existing collection is used only if shaped exactly like that.

    Resumable: points that already hold ``target_vector`` (resp. already exist in the
    target collection) are skipped -- never overwritten -- so an interrupted run continues
    where it stopped. ``side="gallery"`` (default) uses the gallery adapter, ``"query"``
    the query one. Returns the number of points written. Uses only qdrant_client's public API.
    """
    if side not in ("gallery", "query"):
        raise InputError(f"side must be 'gallery' or 'query', got {side!r}.")
    fn = adapter.adapt_gallery if side == "gallery" else adapter.adapt_queries
    distance = _check_source(client, collection, using, adapter.dim)
    if target_collection is None:
        _check_target_vector(client, collection, target_vector, using)
    else:
        _prepare_target_collection(client, target_collection, target_vector, adapter.dim, distance)
    bar = progress_bar(client.count(collection, exact=True).count, progress, f"adapt {collection}")
    written = 0
    pages = iter_pages(client, collection, page_size=batch_size, with_payload=target_collection is not None,
                       with_vectors=vector_selector(using))
    for pts in pages:
        done = _already_written(client, collection, target_collection, target_vector, [p.id for p in pts])
        todo = [p for p in pts if p.id not in done]
        if todo:
            _write(client, collection, target_collection, target_vector, todo, using, fn)
            written += len(todo)
        bar.update(len(pts))
    bar.close()
    return written


def _check_source(client: Any, collection: str, using: str | None, dim: int) -> Any:
    """The distance (a ``models.Distance``) of the source vector, whose size must be the adapter's."""
    from qdrant_client import models

    from ...qdrant.config import vector_info

    info = vector_info(client.get_collection(collection), collection, using, supported=False)
    if info.size != dim:
        raise InputError(f"vector size {info.size} of {collection!r} does not match the adapter's dimension {dim}; "
                         "train the adapter on vectors of this collection's model.")
    return models.Distance(info.distance)


def _check_target_vector(client: Any, collection: str, target_vector: str, using: str | None) -> None:
    vecs_cfg = client.get_collection(collection).config.params.vectors
    if not isinstance(vecs_cfg, dict) or target_vector not in vecs_cfg or target_vector == (using or ""):
        raise InputError(
            f"collection {collection!r} does not declare a named vector {target_vector!r} other than the source "
            "vector (Qdrant cannot add one to an existing collection): create the collection with it, or pass "
            "target_collection= to write a new collection."
        )


def _prepare_target_collection(client: Any, target: str, target_vector: str, dim: int, distance: Any) -> None:
    """Create ``target``, or accept it only if shaped like a previous output of this function."""
    from qdrant_client import models

    if not client.collection_exists(target):
        client.create_collection(target, vectors_config={target_vector: models.VectorParams(size=dim, distance=distance)})
        return
    tcfg = client.get_collection(target).config.params.vectors
    if not (isinstance(tcfg, dict) and set(tcfg) == {target_vector} and tcfg[target_vector].size == dim
            and tcfg[target_vector].distance == distance):
        raise InputError(
            f"collection {target!r} already exists and is not a previous output of this function "
            f"(it must hold exactly the named vector {target_vector!r} of size {dim}, {distance}); "
            "choose a new target_collection so nothing of yours is overwritten."
        )


def _already_written(client: Any, collection: str, target: str | None, target_vector: str, ids: list) -> set:
    """The ids among ``ids`` that already hold an adapted vector (they are skipped, never overwritten)."""
    if target is None:
        have = client.retrieve(collection, ids=ids, with_payload=False, with_vectors=[target_vector])
        return {r.id for r in have if isinstance(r.vector, dict) and target_vector in r.vector}
    return {r.id for r in client.retrieve(target, ids=ids, with_payload=False, with_vectors=False)}


def _write(client: Any, collection: str, target: str | None, target_vector: str, todo: list, using: str | None,
           fn: Callable[[np.ndarray], np.ndarray]) -> None:
    from qdrant_client import models

    from ...qdrant.sources import record_vector

    X = np.asarray([record_vector(p, using, required=True) for p in todo], dtype=np.float32)
    A = fn(X)
    if target is None:
        client.update_vectors(
            collection,
            points=[models.PointVectors(id=p.id, vector={target_vector: a.tolist()}) for p, a in zip(todo, A)],
        )
    else:
        client.upsert(
            target,
            points=[models.PointStruct(id=p.id, vector={target_vector: a.tolist()}, payload=p.payload)
                    for p, a in zip(todo, A)],
        )
