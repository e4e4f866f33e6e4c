"""Drop-in wrappers of the Qdrant clients that rerank every search with bank normalisation.

``DBNormClient(QdrantClient(...), normalizer)`` behaves like the wrapped client:
``query_points`` and ``query_batch_points`` keep their signatures and return types,
``search`` offers the pre-1.16 signature, and every other attribute passes through.

What a reranked query does
--------------------------
1. Fetches the raw top-N candidates (N = ``max(4 * (limit + offset), 100)`` unless set
   per client, per collection or per call with ``candidates=``), honouring
   ``query_filter``, ``using``, ``search_params`` and ``shard_key_selector``.
2. Looks up each candidate's statistics: the in-memory cache (about LRU), then the payload
   (under the reserved key, when its fingerprint is current), then computes them from
   the candidate's vector (fetched in the same query while the cache is cold, otherwise
   retrieved by id) with the kernels, and caches them.
3. Scores them: an additive method as ``s - bias(g)``, the bias computed by
   :func:`~dbnorm_qdrant.methods.bias` once, when the point's statistics enter the cache;
   gated methods (which gate on the raw top-1) and centring with
   :meth:`BankNormalizer.rerank`. Sorts, then applies ``offset``, ``limit`` and
   ``score_threshold``.

Scores and thresholds
---------------------
The returned points are :class:`RerankedPoint` (a ``ScoredPoint`` subclass): ``score``
is the normalised score (higher is better, also for Euclid), ``raw_score`` is what
Qdrant returned. ``score_threshold`` applies to the normalised score, after the rerank.
The payload and vectors come back exactly as ``with_payload`` / ``with_vectors`` asked,
even though the layer may fetch more.

Server-side rescoring
---------------------
Once the payload holds statistics with the current fingerprint (:meth:`precompute`),
``mode="auto"`` runs the rerank inside Qdrant: one ``query_points`` with a ``prefetch``
of N and a ``FormulaQuery`` (plus a raw top-1 query for ``dis``/``dualdis``, whose
gates are decided on the client). A candidate without current statistics makes that
query fall back to the client path. Centring always runs on the client.

Per-call options (keyword arguments of ``query_points`` / ``query_batch_points`` /
``search``): ``rerank=False``; ``candidates=N``; ``method=``, ``beta_q=``, ``beta_g=``
or ``params=`` (a Params or dict); ``mode=`` (``auto``/``client``/``server``).

Queries that cannot be reranked raise :class:`~dbnorm_qdrant.InputError` naming the
form: sparse vectors, multivectors, recommend/discover/context/order-by/fusion/RRF/
formula/sample/relevance-feedback queries, text/document/image inference, user
``prefetch`` and ``lookup_from``. Run those with ``rerank=False``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from qdrant_client import models
from qdrant_client.http.models import QueryResponse

from ..core.methods import Params
from ..core.normalizer import BankNormalizer
from ._core import CollectionConfig, Core, Overrides, RerankedPoint, Spec
from ._io import adrive, drive
from ..banks import BankSet
from .sources import query_bank_from_collection, sample_gallery_bank
from .store import PrecomputeReport, precompute_logic, refresh_logic

__all__ = ["DBNormClient", "AsyncDBNormClient", "CollectionConfig", "RerankedPoint"]

_QP_KEYS = ("consistency", "timeout")


def _spec_from_kwargs(query: Any, kw: dict[str, Any]) -> Spec:
    return Spec(
        query=query,
        using=kw.pop("using", None),
        filter=kw.pop("query_filter", None),
        params=kw.pop("search_params", None),
        limit=kw.pop("limit", 10),
        offset=kw.pop("offset", None),
        with_payload=kw.pop("with_payload", True),
        with_vector=kw.pop("with_vectors", False),
        score_threshold=kw.pop("score_threshold", None),
        shard_key=kw.pop("shard_key_selector", None),
        prefetch=kw.pop("prefetch", None),
        lookup_from=kw.pop("lookup_from", None),
    )


def _extra(kw: dict[str, Any]) -> dict[str, Any]:
    """The client-level keyword arguments passed through (``consistency``, ``timeout``);
    anything else left in ``kw`` is an error."""
    if not kw:
        return {}
    extra = {k: kw.pop(k) for k in _QP_KEYS if k in kw and kw[k] is not None}
    for k in _QP_KEYS:
        kw.pop(k, None)
    if kw:
        from ..core.validation import InputError

        raise InputError(f"unexpected keyword argument(s) {sorted(kw)} for a reranked query.")
    return extra


class _Base:
    """What both wrappers share: the configuration surface and the :class:`Core`."""

    def __init__(
        self,
        client: Any,
        normalizer: BankNormalizer | None = None,
        *,
        banks: BankSet | None = None,
        params: Params | Mapping[str, Any] | None = None,
        collections: Mapping[str, CollectionConfig] | None = None,
        candidates: int | None = None,
        mode: str = "auto",
        payload_key: str = "_dbnorm",
        cache_size: int = 1_000_000,
        backend: str = "auto",
        exact_activation_max: int = 50_000,
    ) -> None:
        self.client = client
        self.core = Core(
            normalizer, banks=banks, params=params, collections=collections, candidates=candidates, mode=mode,
            payload_key=payload_key, cache_size=cache_size, backend=backend,
            exact_activation_max=exact_activation_max,
        )

    @property
    def payload_key(self) -> str:
        return self.core.payload_key

    @property
    def cache(self):  # noqa: ANN201
        """The statistics cache (:class:`~dbnorm_qdrant.qdrant.cache.StatsCache`)."""
        return self.core.cache

    def configure(self, collection: str, config: CollectionConfig | None = None, **changes: Any) -> None:
        """Set per-collection configuration (see :class:`CollectionConfig`)."""
        self.core.configure(collection, config, **changes)

    def forget(self, collection: str) -> None:
        """Drop cached statistics, activation sets and metadata of a collection."""
        self.core.forget(collection)

    def __getattr__(self, name: str) -> Any:  # everything else: the wrapped client's
        return getattr(self.__dict__["client"], name)

    # plan builders shared by sync and async
    def _qp(self, collection_name: str, query: Any, kwargs: dict[str, Any]):
        ov = Overrides.pop(kwargs)
        spec = _spec_from_kwargs(query, kwargs)
        return self.core.query_logic(collection_name, [spec], ov, _extra(kwargs))

    def _qbp(self, collection_name: str, requests: Sequence[models.QueryRequest], kwargs: dict[str, Any]):
        ov = Overrides.pop(kwargs)
        specs = [Spec.from_request(r) for r in requests]
        return self.core.query_logic(collection_name, specs, ov, _extra(kwargs))

    def _search(self, collection_name: str, query_vector: Any, kwargs: dict[str, Any]):
        if isinstance(query_vector, tuple) and len(query_vector) == 2:  # (name, vector)
            kwargs["using"], query_vector = query_vector
        elif hasattr(query_vector, "name") and hasattr(query_vector, "vector"):  # a NamedVector
            kwargs["using"], query_vector = query_vector.name, query_vector.vector
        if "with_vectors" not in kwargs and "with_vector" in kwargs:
            kwargs["with_vectors"] = kwargs.pop("with_vector")
        kwargs.setdefault("with_payload", True)
        return self._qp(collection_name, np.asarray(query_vector, dtype=np.float32).tolist(), kwargs)


class DBNormClient(_Base):
    """Wraps a :class:`~qdrant_client.QdrantClient`; reranks ``query_points``,
    ``query_batch_points`` and ``search`` with bank normalisation.

    Parameters
    ----------
    client:
        The Qdrant client (local mode or server).
    normalizer:
        A :class:`BankNormalizer` (banks + method), or give ``banks`` and ``params``.
        For a Cosine collection the banks are scaled to unit norm (as Qdrant does with
        stored vectors); the fingerprint is then that of the unit banks.
    collections:
        Per-collection :class:`CollectionConfig` (banks, params, N, mode, enabled).
    candidates:
        Default N (raw candidates per query); ``None``: ``max(4 * limit, 100)``.
    mode:
        ``"auto"``, ``"client"`` or ``"server"`` (see the module docs).
    payload_key:
        The reserved payload key for stored statistics (the only key ever written).
    cache_size:
        Capacity (points) of the statistics cache (CLOCK eviction, an approximate LRU).
    exact_activation_max:
        ``dis``/``dualdis``: a collection of at most this many points has its activation
        sets computed exactly from its scrolled vectors with the kernels; a larger one
        with Qdrant (one query per bank vector, limit k). ``0``: always Qdrant.
    """

    def query_points(self, collection_name: str, query: Any = None, **kwargs: Any) -> QueryResponse:
        """``QdrantClient.query_points``, reranked (same arguments, plus the per-call options)."""
        return drive(self._qp(collection_name, query, kwargs), self.client)[0]

    def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[QueryResponse]:
        """``QdrantClient.query_batch_points``, each request reranked."""
        return drive(self._qbp(collection_name, requests, kwargs), self.client)

    def search(self, collection_name: str, query_vector: Any, **kwargs: Any) -> list[models.ScoredPoint]:
        """The pre-1.16 ``search``: ``query_vector`` is a vector, ``(name, vector)`` or a
        ``NamedVector``; ``query_filter``, ``search_params``, ``limit``, ``offset``,
        ``with_payload``, ``with_vectors``, ``score_threshold`` as before."""
        return drive(self._search(collection_name, query_vector, kwargs), self.client)[0].points

    # ------------------------------------------------------------------ banks / store
    def sample_gallery_bank(self, collection_name: str, n: int, *, seed: int = 0, using: str | None = None,
                            scroll_filter: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """A seeded sample of ``n`` points' vectors and their int64 keys (for :class:`BankSet`)."""
        return drive(sample_gallery_bank(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    def query_bank_from_collection(self, collection_name: str, n: int | None = None, *, seed: int = 0,
                                   using: str | None = None, scroll_filter: Any = None) -> np.ndarray:
        """The vectors of a collection of logged queries (all, or a seeded sample of ``n``)."""
        return drive(query_bank_from_collection(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    def precompute(self, collection_name: str, *, using: str | None = None, params: Any = None,
                   page_size: int = 256, force: bool = False, progress: bool = True) -> PrecomputeReport:
        """Store every point's statistics in its payload under the reserved key (resumable)."""
        return drive(precompute_logic(self.core, collection_name, using=using, params=params, page_size=page_size,
                                      force=force, progress=progress), self.client)

    def refresh(self, collection_name: str, *, using: str | None = None, params: Any = None) -> PrecomputeReport:
        """Recompute the activation sets (dis/dualdis) and rewrite the stored flags that changed."""
        return drive(refresh_logic(self.core, collection_name, using=using, params=params), self.client)


class AsyncDBNormClient(_Base):
    """The :class:`DBNormClient` twin for :class:`~qdrant_client.AsyncQdrantClient` (same logic)."""

    async def query_points(self, collection_name: str, query: Any = None, **kwargs: Any) -> QueryResponse:
        return (await adrive(self._qp(collection_name, query, kwargs), self.client))[0]

    async def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[QueryResponse]:
        return await adrive(self._qbp(collection_name, requests, kwargs), self.client)

    async def search(self, collection_name: str, query_vector: Any, **kwargs: Any) -> list[models.ScoredPoint]:
        return (await adrive(self._search(collection_name, query_vector, kwargs), self.client))[0].points

    async def sample_gallery_bank(self, collection_name: str, n: int, *, seed: int = 0, using: str | None = None,
                                  scroll_filter: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return await adrive(sample_gallery_bank(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    async def query_bank_from_collection(self, collection_name: str, n: int | None = None, *, seed: int = 0,
                                         using: str | None = None, scroll_filter: Any = None) -> np.ndarray:
        return await adrive(query_bank_from_collection(collection_name, n, seed=seed, using=using, scroll_filter=scroll_filter), self.client)

    async def precompute(self, collection_name: str, *, using: str | None = None, params: Any = None,
                         page_size: int = 256, force: bool = False, progress: bool = True) -> PrecomputeReport:
        return await adrive(precompute_logic(self.core, collection_name, using=using, params=params, page_size=page_size,
                                             force=force, progress=progress), self.client)

    async def refresh(self, collection_name: str, *, using: str | None = None, params: Any = None) -> PrecomputeReport:
        return await adrive(refresh_logic(self.core, collection_name, using=using, params=params), self.client)
