"""Batch precompute of statistics into the payload, and keeping activation flags fresh.

:func:`precompute_logic` scrolls a collection in pages with the vectors, computes the
statistics of each page with the kernels, and writes them with one
``batch_update_points`` of ``SetPayload`` operations per page, each touching **only**
the reserved key (default ``"_dbnorm"``): no other payload key changes, no point is
deleted. Points whose payload already holds statistics with the current fingerprint are
skipped, so an interrupted run resumes where it stopped.

Activation flags (``dis``/``dualdis``) depend on the whole collection: the top-k of each
bank vector. They are computed with Qdrant (one query per bank vector, limit k) and
stored with the statistics. Adding points can make them stale (a new point may enter a
bank item's top-k, pushing an old one out); the per-item softmax statistics never go
stale. :func:`refresh_logic` recomputes the sets and rewrites the flags that changed.

With ``index=True`` the precompute also writes the index vector (:mod:`.index_store`,
docs/index.md), and :func:`refresh_logic` writes it for points that lack it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import models

from ..core.normalizer import BankNormalizer
from ..core.params import Params
from ..core.stats import GalleryStats
from ..errors import InputError
from ._io import Call, Logic
from .cache import BIAS
from .index_store import check_index_logic, create_logic, names_logic, write_index_logic
from .planning import Overrides
from .quarantine import kept, ours
from .server_path import bias_field
from .sources import point_key, record_vector, scroll_pages, vector_selector

if TYPE_CHECKING:
    from .core import Core

__all__ = ["PrecomputeReport", "precompute_logic", "refresh_logic", "select_todo", "page_stats",
           "write_stats_logic"]


def _gates_gallery(p: Params) -> bool:
    """The method has a gallery-bank gate (DualDIS): its payload carries ``act_g`` too."""
    return p.gated and p.uses_gallery_bank


@dataclass
class PrecomputeReport:
    """What a precompute did: points written, points skipped (already current), points without
    the vector (nothing to compute; e.g. sparse-only points of a hybrid collection); with the
    index, its vector's name and the index rows written and skipped."""

    fingerprint: str
    written: int = 0
    skipped: int = 0
    without_vector: int = 0
    flags_changed: int = 0
    index_name: str | None = None
    index_written: int = 0
    index_skipped: int = 0


def precompute_logic(
    core: Core,
    collection: str,
    *,
    using: str | None = None,
    params: Any = None,
    page_size: int = 256,
    force: bool = False,
    progress: bool = True,
    index: bool = False,
) -> Logic:
    """Logic: store every point's statistics in its payload (see the module docs); resumable.
    ``index=True``: the index vector too (checked, and its name added, before any write)."""
    from tqdm.auto import tqdm

    key = core.payload_key
    info = yield from core.info_logic(collection, using)
    using = info.using  # using=None on a hybrid collection: its one dense vector
    nz = core.normalizer(collection, info, Overrides(params=params))
    fp = nz.fingerprint
    name = None
    if index:
        name = yield from check_index_logic(core, collection, info, nz)  # refused before anything is written
    sets = None
    if nz.params.gated:
        sets = yield from core.activation_logic(collection, info, nz, refresh=force)
    total = (yield Call("count", dict(collection_name=collection, exact=True))).count
    rep = PrecomputeReport(fp)
    bar = tqdm(total=total, desc=f"dbnorm stats {collection}", unit="pt", disable=not progress)

    need = bias_field(nz.params, fp)

    def page(recs: list[Any]) -> Logic | None:
        todo = select_todo(recs, key, fp, using, collection, force, rep, need=need)
        bar.update(len(recs))
        return _write_page(core, collection, using, nz, todo, sets, rep) if todo else None

    try:
        yield from scroll_pages(collection, page, page_size=page_size, with_payload=[key],
                                with_vectors=vector_selector(using))
    finally:
        bar.close()
    core.stored((collection, info.using, fp))
    if name is not None:
        # the vector's name is added only now: once it exists, mode="auto" searches it, so a run that
        # failed before this point must not leave an empty one behind
        yield from create_logic(collection, info, name, core.names(collection))
        rep.index_name = name
        rep.index_written, rep.index_skipped = yield from write_index_logic(
            core, collection, info, nz, name, page_size=page_size, progress=progress)
        yield from names_logic(core, collection)
    return rep


def select_todo(recs: list[Any], key: str, fp: str, using: str | None, collection: str, force: bool,
                rep: PrecomputeReport, *, vectors: bool = True, need: str | None = None) -> list[Any]:
    """The records of a scrolled page whose statistics must be (re)computed; counts the
    skipped (current under ``fp``, with the field ``need`` when given: the bias field of
    :func:`~.server_path.bias_field`, absent from statistics stored before it existed) and
    vector-less ones in ``rep`` (``vectors=False``: the page was scrolled without vectors,
    which are then not checked here). Refuses a point whose payload key holds something that
    is not dbnorm statistics (nothing is overwritten)."""
    todo = []
    for r in recs:
        cur = (r.payload or {}).get(key)
        if cur is not None and not ours(cur):
            raise InputError(
                f"point {r.id!r} of collection {collection!r} already holds data under the payload key "
                f"{key!r} that is not dbnorm statistics; nothing was overwritten. Pick another key with "
                "DBNormClient(..., payload_key='...')."
            )
        if not force and isinstance(cur, dict) and cur.get("fp") == fp and (need is None or need in cur):
            rep.skipped += 1
        elif vectors and record_vector(r, using) is None:  # no such vector (a sparse-only point of a hybrid collection)
            rep.without_vector += 1
        else:
            todo.append(r)
    return todo


def page_stats(nz: BankNormalizer, G: np.ndarray, keys: np.ndarray) -> GalleryStats:
    """The statistics of one page (or chunk) of stored vectors: the one place of the per-page
    maths, shared by this precompute and the Ray one (:mod:`dbnorm_qdrant.scale`). Activation
    flags are set aside (they need the whole collection); stored zero vectors are accepted."""
    return nz.gallery_stats(G, gallery_keys=keys, activation=False, nonzero=False)


def _write_page(core: Core, collection: str, using: str | None, nz: BankNormalizer, todo: list[Any],
                sets: tuple[frozenset[int], frozenset[int]] | None, rep: PrecomputeReport) -> Logic:
    """Logic: compute the statistics of one page's points and write them (:func:`write_stats_logic`)."""
    keys = np.fromiter((point_key(r.id) for r in todo), dtype=np.int64, count=len(todo))
    G = np.asarray([record_vector(r, using) for r in todo], dtype=np.float32)
    keep = {r.id: kept((r.payload or {}).get(core.payload_key)) for r in todo}
    yield from write_stats_logic(core, collection, nz, [r.id for r in todo], keys, page_stats(nz, G, keys), sets, rep,
                                 keep=keep)


def write_stats_logic(core: Core, collection: str, nz: BankNormalizer, ids: list[Any], keys: np.ndarray,
                      st: GalleryStats, sets: tuple[frozenset[int], frozenset[int]] | None,
                      rep: PrecomputeReport, *, keep: dict[Any, dict[str, Any]] | None = None) -> Logic:
    """Logic: write the statistics ``st`` of points ``ids`` (int64 ``keys``) under the reserved
    key only (one ``SetPayload`` per point, one ``batch_update_points``), with the activation
    flags from ``sets``; cache them; count them in ``rep``. An audit's quarantine mark under
    the key is kept: ``keep`` maps a point id to it (:func:`~.quarantine.kept`), else it is read
    with one ``retrieve``."""
    key = core.payload_key
    if keep is None:
        got = yield Call("retrieve", dict(collection_name=collection, ids=list(ids), with_payload=[key],
                                          with_vectors=False))
        keep = {r.id: kept((r.payload or {}).get(key)) for r in got}
    rows = core.put_stats(collection, nz, keys.tolist(), st)  # cached, with each point's bias
    field = bias_field(nz.params, nz.fingerprint)
    ops = []
    for i, pid in enumerate(ids):
        rec = {**st.record(i), **keep.get(pid, {})}
        if field is not None:
            rec[field] = float(rows[i, BIAS])
        if sets is not None:
            rec["act_q"] = int(keys[i]) in sets[0]
            if _gates_gallery(nz.params):
                rec["act_g"] = int(keys[i]) in sets[1]
        ops.append(models.SetPayloadOperation(set_payload=models.SetPayload(payload={key: rec}, points=[pid])))
    yield Call("batch_update_points", dict(collection_name=collection, update_operations=ops, wait=True))
    rep.written += len(ids)


def refresh_logic(core: Core, collection: str, *, using: str | None = None, params: Any = None, page_size: int = 1024) -> Logic:
    """Recompute the activation sets with Qdrant and rewrite the stored flags that changed;
    when the collection has this normaliser's index vector, write it for the points that
    lack it (points upserted after the precompute).

    Only the ``act_q``/``act_g`` fields inside the reserved key change (``SetPayload``
    with ``key=``); points without stored statistics are left alone.
    """
    key = core.payload_key
    info = yield from core.info_logic(collection, using)
    nz = core.normalizer(collection, info, Overrides(params=params))
    rep = PrecomputeReport(nz.fingerprint)
    yield from names_logic(core, collection)
    status, name = core.index_status(collection, info, nz)
    if status == "current":
        rep.index_name = name
        rep.index_written, rep.index_skipped = yield from write_index_logic(
            core, collection, info, nz, name, page_size=page_size)
    if not nz.params.gated:
        return rep
    sets = yield from core.activation_logic(collection, info, nz, refresh=True)
    groups: dict[tuple[bool, bool], list[Any]] = {}

    def page(recs: list[Any]) -> None:
        for r in recs:
            cur = (r.payload or {}).get(key)
            if not (isinstance(cur, dict) and cur.get("fp") == nz.fingerprint):
                continue
            k = point_key(r.id)
            new = {"act_q": k in sets[0]}
            if _gates_gallery(nz.params):
                new["act_g"] = k in sets[1]
            if any(cur.get(f) != v for f, v in new.items()):
                groups.setdefault((new["act_q"], new.get("act_g", False)), []).append(r.id)

    yield from scroll_pages(collection, page, page_size=page_size, with_payload=[key])
    for (aq, ag), ids in groups.items():
        flags = {"act_q": aq, **({"act_g": ag} if _gates_gallery(nz.params) else {})}
        yield Call("set_payload", dict(collection_name=collection, payload=flags, points=ids, key=key, wait=True))
        rep.flags_changed += len(ids)
    core.cache.clear(collection)  # cached records may carry the old flags
    return rep
