"""The wrappers' administration methods: banks from collections, the statistics precompute,
the index vector, refresh (and the hub audit). A mixin per wrapper, sharing one set of logic
generators (:mod:`._io`): :class:`SyncAdmin` for :class:`~.client.DBNormClient`,
:class:`AsyncAdmin` for :class:`~.client.AsyncDBNormClient`. They read ``self.core`` and
``self.client``, which the wrappers set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..banks import BankSet
from ..core.normalizer import BankNormalizer
from ._io import Logic, adrive, drive
from .core import Core
from .index_store import drop_index_logic
from .planning import Overrides
from .sources import build_banks, query_bank_from_collection, sample_gallery_bank
from .store import PrecomputeReport, precompute_logic, refresh_logic

__all__ = ["SyncAdmin", "AsyncAdmin"]


class _Admin:
    """What both mixins share."""

    core: Core
    client: Any

    def _drop(self, collection: str, using: str | None, params: Any, every: bool) -> Logic:
        if every:
            return (yield from drop_index_logic(self.core, collection, None))
        info = yield from self.core.info_logic(collection, using)
        nz = self.core.normalizer(collection, info, Overrides(params=params))
        _, name = self.core.index_status(collection, info, nz)
        return (yield from drop_index_logic(self.core, collection, name))



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
                   index: bool = False) -> PrecomputeReport:
        """Store every point's statistics in its payload under the reserved key (resumable);
        ``index=True``: also the index vector of ``mode="index"`` (docs/index.md)."""
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
