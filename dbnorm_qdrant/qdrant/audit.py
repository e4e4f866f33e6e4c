"""The hub audit of a collection, and the quarantine of what it flags (docs/audit.md).

:func:`audit_logic` scrolls the collection once with its vectors and the reserved payload
key, and feeds every page to :class:`~dbnorm_qdrant.core.audit.HubAudit` (the maths,
docs/methods.md §8) with the page's stored statistics when they are current (else they
are computed, as the precompute would). It returns an :class:`AuditReport`: the flagged
points (most suspicious first, at most ``ceil(budget * n)``), every point's score and
signals, and the settings of the run.

With ``quarantine=True`` the flagged points get ``{"quarantined": true, "audit": {...}}``
inside the reserved payload key (one ``batch_update_points``; nothing else of the point is
touched), and the wrappers leave quarantined points out of every query they serve
(``DBNormClient(..., quarantine="exclude")``, the default; ``"ignore"`` serves them).
:func:`unquarantine_logic` removes the mark. :class:`Quarantine` is the wrappers' side:
whether a collection has quarantined points (learned from their own audits, and checked
with one ``scroll`` per collection every ``check_s`` seconds for other processes' ones) and
the filter that leaves them out.
"""

from __future__ import annotations

import logging
import os
import warnings
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import models

from ..core.audit import HubAudit, check_budget, flag_count
from ..core.stats import GalleryStats
from ..errors import InputError
from ._io import Call, Logic
from .planning import Overrides
from .quarantine import MARK_FIELDS, Quarantine, ours
from .sources import point_key, record_vector, scroll_pages, vector_selector

if TYPE_CHECKING:
    from .core import Core

__all__ = ["AuditReport", "audit_logic", "storage_problem", "unquarantine_logic"]

logger = logging.getLogger(__name__)

@dataclass
class AuditReport:
    """What :meth:`DBNormClient.audit <dbnorm_qdrant.qdrant.DBNormClient.audit>` found.

    ``flagged`` holds the point ids to look at, most suspicious first; ``rows`` the same
    points with their signals and payload (without the reserved key). ``ids`` and the arrays
    ``score`` (robust z of log(1 + k-occurrence): what the audit ranks by), ``kocc``
    (k-occurrence against the query bank), ``kocc_normalized`` (the same under the method's
    normalisation), ``bias`` and ``bias_z`` cover every point with the audited vector, in
    scan order.
    """

    collection: str
    n_points: int
    budget: float
    k: int
    method: str
    fingerprint: str
    bank_size: int
    seconds: float
    ids: list[Any]
    score: np.ndarray
    kocc: np.ndarray
    kocc_normalized: np.ndarray | None
    bias: np.ndarray
    bias_z: np.ndarray
    flagged: list[Any]
    rows: list[dict[str, Any]]
    reused_stats: int = 0
    quarantined: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, points: bool = False) -> dict[str, Any]:
        """A JSON-ready summary (``points=True``: every point's signals too)."""
        out: dict[str, Any] = {f: getattr(self, f) for f in (
            "collection", "n_points", "budget", "k", "method", "fingerprint", "bank_size", "seconds",
            "reused_stats", "quarantined", "settings")}
        out["flagged"] = [_jsonable_id(i) for i in self.flagged]
        out["rows"] = [{**r, "id": _jsonable_id(r["id"])} for r in self.rows]
        if points:
            out["points"] = {"ids": [_jsonable_id(i) for i in self.ids], "score": self.score.tolist(),
                             "kocc": self.kocc.tolist(), "bias_z": self.bias_z.tolist(),
                             "kocc_normalized": None if self.kocc_normalized is None else self.kocc_normalized.tolist()}
        return out


def _jsonable_id(i: Any) -> Any:
    return i if isinstance(i, (int, str)) else str(i)


def audit_logic(core: Core, collection: str, *, budget: float = 0.005, k: int = 10, using: str | None = None,
                params: Any = None, page_size: int = 512, progress: bool = True,
                quarantine: bool = False) -> Logic:
    """Logic: the hub audit of a collection (module docs); with ``quarantine=True`` the flagged
    points are marked in the same run (after the scan; a failed scan marks nothing)."""
    from tqdm.auto import tqdm

    budget = check_budget(budget)
    t0 = time.perf_counter()
    key = core.payload_key
    info = yield from core.info_logic(collection, using)
    try:
        nz = core.normalizer(collection, info, Overrides(params=params))
    except InputError as exc:
        raise InputError(f"the audit of collection {collection!r} ranks its points against a query bank, and this "
                         f"wrapper has none for it: {exc} A wrapper with a query log builds one with "
                         "db.rebuild(collection); or build banks first (dbnorm-qdrant bank build).") from None
    total = (yield Call("count", dict(collection_name=collection, exact=True))).count
    if total == 0:
        raise InputError(f"collection {collection!r} is empty: there is nothing to audit; upsert points first.")
    audit = HubAudit(nz, k)
    ids: list[Any] = []
    reused = 0
    bar = tqdm(total=total, desc=f"dbnorm audit {collection}", unit="pt", disable=not progress)

    def page(recs: list[Any]) -> None:
        nonlocal reused
        recs = [r for r in recs if record_vector(r, info.using) is not None]
        if recs:
            G = np.asarray([record_vector(r, info.using) for r in recs], dtype=np.float32)
            stored = [(r.payload or {}).get(key) for r in recs]
            keys = np.fromiter((point_key(r.id) for r in recs), dtype=np.int64, count=len(recs))
            if all(isinstance(s, dict) and s.get("fp") == nz.fingerprint for s in stored):
                audit.add(G, GalleryStats.from_records(stored, nz.fingerprint), keys)
                reused += len(recs)
            else:
                audit.add(G, None, keys)
            ids.extend(r.id for r in recs)
        bar.update(len(recs))

    try:
        yield from scroll_pages(collection, page, page_size=page_size, with_payload=[key],
                                with_vectors=vector_selector(info.using))
    finally:
        bar.close()
    sig = audit.finish()
    order = sig.order()[: flag_count(budget, len(ids))]
    flagged = [ids[i] for i in order]
    got = yield Call("retrieve", dict(collection_name=collection, ids=flagged, with_payload=True, with_vectors=False))
    payloads = {r.id: {k_: v for k_, v in (r.payload or {}).items() if k_ != key} for r in got}
    current = {r.id: (r.payload or {}).get(key) for r in got}
    rows = [dict(id=ids[i], rank=j + 1, score=float(sig.score[i]), kocc=int(sig.kocc[i]),
                 kocc_normalized=None if sig.kocc_normalized is None else int(sig.kocc_normalized[i]),
                 bias=float(sig.bias[i]), bias_z=float(sig.bias_z[i]), spread=audit.spread(int(i)),
                 payload=payloads.get(ids[i], {}))
            for j, i in enumerate(order)]
    rep = AuditReport(collection=collection, n_points=len(ids), budget=budget, k=audit.k, method=nz.params.method,
                      fingerprint=nz.fingerprint, bank_size=int(nz.query_bank.shape[0]), seconds=0.0, ids=ids,
                      score=sig.score, kocc=sig.kocc, kocc_normalized=sig.kocc_normalized, bias=sig.bias,
                      bias_z=sig.bias_z, flagged=flagged, rows=rows, reused_stats=reused,
                      settings=dict(budget=budget, k=audit.k, using=info.using, page_size=page_size,
                                    params=nz.params.to_dict(), score="robust z of log(1 + k-occurrence)"))
    if quarantine and flagged:
        rep.quarantined = yield from _mark_logic(core, collection, rep, current)
    rep.seconds = time.perf_counter() - t0
    return rep


def _mark_logic(core: Core, collection: str, rep: AuditReport, current: dict[Any, Any]) -> Logic:
    """Logic: mark the flagged points as quarantined, inside the reserved key only (one call);
    ``current`` holds their reserved-key values (foreign data there is refused: nothing marked).
    A payload index on the mark keeps the wrappers' filter cheap (engines without payload
    indexes, e.g. local mode, ignore it)."""
    key = core.payload_key
    foreign = [pid for pid, v in current.items() if v is not None and not ours(v)]
    if foreign:
        raise InputError(f"point {foreign[0]!r} of collection {collection!r} holds data under the payload key {key!r} "
                         "that is not dbnorm's; nothing was marked. Pick another key with "
                         "DBNormClient(..., payload_key='...').")
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ops = [models.SetPayloadOperation(set_payload=models.SetPayload(
        payload={"quarantined": True, "audit": {"score": r["score"], "kocc": r["kocc"], "rank": r["rank"],
                                                "budget": rep.budget, "at": at}},
        points=[r["id"]], key=key)) for r in rep.rows]
    try:
        yield Call("batch_update_points", dict(collection_name=collection, update_operations=ops, wait=True))
    except InputError:
        raise
    except Exception as exc:  # the engine refused the write (e.g. a server whose storage is locked)
        raise InputError(f"collection {collection!r} refused the quarantine write ({type(exc).__name__}: {exc}); "
                         "nothing was marked. Run the audit without quarantine=True, or on writable storage.") from exc
    try:
        with warnings.catch_warnings():  # local mode warns that payload indexes have no effect there
            warnings.simplefilter("ignore")
            yield Call("create_payload_index", dict(collection_name=collection, field_name=f"{key}.quarantined",
                                                    field_schema=models.PayloadSchemaType.BOOL, wait=True))
    except Exception as exc:  # an engine without payload indexes: the filter still works, by a scan
        logger.info("no payload index on %s.quarantined in %r (%s); the quarantine filter scans", key, collection, exc)
    core.quarantine.learned(collection, True)
    return len(ops)


def unquarantine_logic(core: Core, collection: str, ids: Any = None) -> Logic:
    """Logic: remove the quarantine mark of ``ids`` (``None``: of every quarantined point);
    returns how many points were marked. Only ``quarantined`` / ``audit`` inside the reserved
    key are deleted."""
    key = core.payload_key
    flt = Quarantine.marked(key)
    todo: list[Any] = []

    def page(recs: list[Any]) -> None:
        todo.extend(r.id for r in recs)

    if ids is None:
        yield from scroll_pages(collection, page, scroll_filter=flt)
    else:
        ids = list(ids)
        got = yield Call("retrieve", dict(collection_name=collection, ids=ids, with_payload=[key], with_vectors=False))
        todo = [r.id for r in got if isinstance((r.payload or {}).get(key), dict) and r.payload[key].get("quarantined")]
    if todo:
        yield Call("delete_payload", dict(collection_name=collection, keys=[f"{key}.{f}" for f in MARK_FIELDS],
                                          points=todo, wait=True))
    core.quarantine.forget(collection)  # re-checked on the next query
    return len(todo)


def storage_problem(client: Any) -> str | None:
    """Why a client's storage cannot take a write, when that can be told without writing:
    a local-mode or Qdrant Edge folder that is not writable. ``None``: no known problem."""
    inner = getattr(client, "_client", None)
    path = getattr(inner, "location", None) if getattr(inner, "persistent", False) else None
    path = path or getattr(client, "root", None)
    if path is not None and not os.access(Path(path), os.W_OK):
        return f"the storage folder {str(path)!r} is read-only"
    return None
