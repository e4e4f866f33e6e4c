"""The wrappers' administration methods: banks from collections, the statistics precompute,
the index vector, refresh (and the hub audit). A mixin per wrapper, sharing one set of logic
generators (:mod:`._io`): :class:`SyncAdmin` for :class:`~.client.DBNormClient`,
:class:`AsyncAdmin` for :class:`~.client.AsyncDBNormClient`. They read ``self.core`` and
``self.client``, which the wrappers set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..banks import BankSet
from ..core.audit import check_budget
from ..core.normalizer import BankNormalizer
from ..errors import InputError
from ._io import Logic, adrive, drive
from .core import Core
from .audit import AuditReport, audit_logic, storage_problem, unquarantine_logic
from .index_store import drop_index_logic
from .quarantine import marked_logic
from .planning import Overrides
from .sources import build_banks, query_bank_from_collection, sample_gallery_bank
from .store import PrecomputeReport, precompute_logic, refresh_logic

__all__ = ["SyncAdmin", "AsyncAdmin"]


def _engine(engine: Any) -> Any:
    """A compute engine object (it has ``precompute``), or an :class:`InputError` naming one."""
    if hasattr(engine, "precompute") and not isinstance(engine, str):
        return engine
    raise InputError(f"engine must be 'local' or a compute engine object, got {engine!r}; for Ray: "
                     "from dbnorm_qdrant.scale import RayEngine; db.precompute(name, engine=RayEngine(address=...)) "
                     "(pip install 'dbnorm-qdrant[ray]').")


class _Admin:
    """What both mixins share."""

    core: Core
    client: Any
    payload_key: str
    _prepare: Callable[..., Logic]  # the wrappers' (client.py): a logged collection made current

    def _drop(self, collection: str, using: str | None, params: Any, every: bool) -> Logic:
        if every:
            return (yield from drop_index_logic(self.core, collection, None))
        info = yield from self.core.info_logic(collection, using)
        nz = self.core.normalizer(collection, info, Overrides(params=params))
        _, name = self.core.index_status(collection, info, nz)
        return (yield from drop_index_logic(self.core, collection, name))

    def _audit(self, collection: str, budget: float, kw: dict[str, Any]) -> Logic:
        check_budget(budget)  # before anything else
        if kw.get("quarantine") and (why := storage_problem(self.client)) is not None:
            raise InputError(f"cannot quarantine points of collection {collection!r}: {why}; nothing was changed. "
                             "Run the audit without quarantine=True, or open the storage writable.")
        yield from self._prepare(collection, Overrides(), [kw.get("using")])  # a logged collection's banks, current
        return (yield from audit_logic(self.core, collection, budget=budget, **kw))



class SyncAdmin(_Admin):
    """The administration methods of :class:`~.client.DBNormClient`."""

    def sample_gallery_bank(self, collection_name: str, n: int, *, seed: int = 0, using: str | None = None,
                            scroll_filter: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """A seeded sample of ``n`` points' vectors and their int64 keys (for :class:`BankSet`)."""
        return drive(sample_gallery_bank(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    def query_bank_from_collection(self, collection_name: str, n: int | None = None, *, seed: int = 0,
                                   using: str | None = None, scroll_filter: Any = None) -> np.ndarray:
        """The vectors of a collection of logged queries (all, or a seeded sample of ``n``)."""
        return drive(query_bank_from_collection(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    def build_banks(self, collection_name: str, *, banks: BankSet | None = None,
                    normalizer: BankNormalizer | None = None, query_bank: Any = None,
                    query_collection: str | None = None, gallery_sample: int | None = None,
                    using: str | None = None, seed: int = 0) -> BankSet | None:
        """A bank set with parts from arrays or collections (:func:`~.sources.build_banks`):
        ``query_bank`` / ``query_collection`` replace the query bank of ``banks`` (or of
        ``normalizer``), ``gallery_sample=n`` samples the gallery bank from ``collection_name``."""
        return drive(build_banks(collection_name, banks=banks, normalizer=normalizer, query_bank=query_bank,
                                 query_collection=query_collection, gallery_sample=gallery_sample, using=using,
                                 seed=seed), self.client)

    def precompute(self, collection_name: str, *, using: str | None = None, params: Any = None,
                   page_size: int = 256, force: bool = False, progress: bool = True,
                   index: bool = False, engine: Any = "local") -> PrecomputeReport:
        """Store every point's statistics in its payload under the reserved key (resumable);
        ``index=True``: also the index vector of ``mode="index"`` (docs/index.md).

        ``engine``: ``"local"`` (this process), or a compute engine object such as
        ``dbnorm_qdrant.scale.RayEngine(address=...)``, whose ``precompute(db, collection, ...)``
        runs the same precompute elsewhere (docs/scale.md; this layer does not import Ray)."""
        if engine != "local":
            return _engine(engine).precompute(self, collection_name, using=using, params=params, force=force,
                                              progress=progress, index=index)
        return drive(precompute_logic(self.core, collection_name, using=using, params=params, page_size=page_size,
                                      force=force, progress=progress, index=index), self.client)

    def drop_index(self, collection_name: str, *, using: str | None = None, params: Any = None,
                   every: bool = False) -> list[str]:
        """Delete this normaliser's index vector (``every=True``: every ``_dbnorm_*`` index
        vector) from the collection; returns the names deleted. User vectors are untouched."""
        return drive(self._drop(collection_name, using, params, every), self.client)

    def refresh(self, collection_name: str, *, using: str | None = None, params: Any = None) -> PrecomputeReport:
        """Recompute the activation sets (dis/dualdis) and rewrite the stored flags that changed."""
        return drive(refresh_logic(self.core, collection_name, using=using, params=params), self.client)

    def audit(self, collection_name: str, budget: float = 0.005, *, k: int = 10, using: str | None = None,
              params: Any = None, page_size: int = 512, progress: bool = True,
              quarantine: bool = False) -> AuditReport:
        """Audit a collection for hubs (docs/audit.md): every point scored by how many query-bank
        queries retrieve it in their top ``k`` (robust z-score), the ``ceil(budget * n)`` most
        suspicious flagged. Streams the collection once; reuses stored statistics. With
        ``quarantine=True`` the flagged points are marked under the reserved payload key and
        this wrapper (``quarantine="exclude"``) leaves them out of results; :meth:`unquarantine`
        reverses it."""
        return drive(self._audit(collection_name, budget, dict(k=k, using=using, params=params, page_size=page_size,
                                                               progress=progress, quarantine=quarantine)), self.client)

    def unquarantine(self, collection_name: str, ids: Any = None) -> int:
        """Remove the quarantine mark of ``ids`` (default: every quarantined point); returns how many."""
        return drive(unquarantine_logic(self.core, collection_name, ids), self.client)

    def quarantined(self, collection_name: str, ids: Any) -> set[Any]:
        """Which of the points ``ids`` an audit quarantined (the ids as Qdrant returns them)."""
        return drive(marked_logic(self.payload_key, collection_name, ids), self.client)


class AsyncAdmin(_Admin):
    """The administration methods of :class:`~.client.AsyncDBNormClient` (awaited)."""

    async def sample_gallery_bank(self, collection_name: str, n: int, *, seed: int = 0, using: str | None = None,
                                  scroll_filter: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return await adrive(sample_gallery_bank(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    async def query_bank_from_collection(self, collection_name: str, n: int | None = None, *, seed: int = 0,
                                         using: str | None = None, scroll_filter: Any = None) -> np.ndarray:
        return await adrive(query_bank_from_collection(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    async def build_banks(self, collection_name: str, *, banks: BankSet | None = None,
                          normalizer: BankNormalizer | None = None, query_bank: Any = None,
                          query_collection: str | None = None, gallery_sample: int | None = None,
                          using: str | None = None, seed: int = 0) -> BankSet | None:
        return await adrive(build_banks(collection_name, banks=banks, normalizer=normalizer, query_bank=query_bank,
                                        query_collection=query_collection, gallery_sample=gallery_sample,
                                        using=using, seed=seed), self.client)

    async def precompute(self, collection_name: str, *, using: str | None = None, params: Any = None,
                         page_size: int = 256, force: bool = False, progress: bool = True,
                         index: bool = False) -> PrecomputeReport:
        return await adrive(precompute_logic(self.core, collection_name, using=using, params=params, page_size=page_size,
                                             force=force, progress=progress, index=index), self.client)

    async def drop_index(self, collection_name: str, *, using: str | None = None, params: Any = None,
                         every: bool = False) -> list[str]:
        return await adrive(self._drop(collection_name, using, params, every), self.client)

    async def refresh(self, collection_name: str, *, using: str | None = None, params: Any = None) -> PrecomputeReport:
        return await adrive(refresh_logic(self.core, collection_name, using=using, params=params), self.client)

    async def audit(self, collection_name: str, budget: float = 0.005, *, k: int = 10, using: str | None = None,
                    params: Any = None, page_size: int = 512, progress: bool = True,
                    quarantine: bool = False) -> AuditReport:
        return await adrive(self._audit(collection_name, budget, dict(
            k=k, using=using, params=params, page_size=page_size, progress=progress, quarantine=quarantine)),
            self.client)

    async def unquarantine(self, collection_name: str, ids: Any = None) -> int:
        return await adrive(unquarantine_logic(self.core, collection_name, ids), self.client)

    async def quarantined(self, collection_name: str, ids: Any) -> set[Any]:
        return await adrive(marked_logic(self.payload_key, collection_name, ids), self.client)
