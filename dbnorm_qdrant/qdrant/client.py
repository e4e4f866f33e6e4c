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
   gated methods (which gate on the raw top-1) and centering with
   :meth:`BankNormalizer.rerank`. Sorts, then applies ``offset``, ``limit`` and
   ``score_threshold``.

Scores and thresholds
---------------------
The returned points are qdrant-client's own ``ScoredPoint`` in a ``QueryResponse``:
``score`` is the normalised score (higher is better, also for Euclid). With
``with_raw_score=True`` the raw score (what Qdrant returned for the plain query) is in
the returned payload, ``point.payload[payload_key]["raw_score"]``; read it with
:func:`~dbnorm_qdrant.qdrant.raw_score` (nothing is written to Qdrant).
``score_threshold`` applies to the normalised score, after the rerank. The payload and
vectors come back exactly as ``with_payload`` / ``with_vectors`` asked, even though the
layer may fetch more.

Server-side rescoring
---------------------
Once the payload holds statistics with the current fingerprint (:meth:`precompute`),
``mode="auto"`` runs the rerank inside Qdrant: one ``query_points`` with a ``prefetch``
of N and a ``FormulaQuery`` (plus a raw top-1 query for ``dis``/``dualdis``, whose
gates are decided on the client). A candidate without current statistics makes that
query fall back to the client path. Centering always runs on the client.

Index vector
------------
``precompute(collection, index=True)`` also writes a named vector ``[g, -bias(g)]`` per
point; ``mode="index"`` then searches it with ``[q, 1]`` (one Qdrant query over the whole
collection, no rerank: docs/index.md), and ``mode="auto"`` uses it when it is current
(else the paths above; a stale one is logged). ``dis``/``dualdis`` take their candidates
from it and are reranked on the client. ``drop_index`` removes it.

Per-call options (keyword arguments of ``query_points`` / ``query_batch_points`` /
``search``): ``rerank=False``; ``candidates=N``; ``method=``, ``beta_q=``, ``beta_g=``
or ``params=`` (a Params or dict); ``mode=`` (``auto``/``client``/``server``/``index``);
``with_raw_score=True``.

Requests with prefetch, fusion (RRF with its ``k`` and weights, DBSF), MMR, an
``average_vector`` recommend query or ``lookup_from`` go through the query planner
(:mod:`.tree`): every dense nearest-neighbour branch on a vector with statistics is
normalised and the rest of the request runs as Qdrant runs it (one engine query when the
statistics or the index vector are stored, else the fusion is done here with Qdrant's own
formulas). :meth:`DBNormClient.explain` tells which path a request takes. Sparse,
order-by and sample queries run as they are. Refused with an
:class:`~dbnorm_qdrant.InputError` naming the form (run them with ``rerank=False``):
discover / context / relevance-feedback queries, ``best_score`` / ``sum_scores``
recommend, server-side inference objects; so are query vectors with NaN, inf, only zeros
or the wrong dimension, and multivector queries.

``query_points_groups`` is normalised (groups and hits in the normalised order, see
:mod:`.grouped`); ``search_matrix_pairs`` / ``search_matrix_offsets`` are refused unless
``rerank=False``. :data:`RANKING` lists every method of ``QdrantClient`` that ranks
points and what the wrappers do with it; everything else (scroll, retrieve, count,
upsert, ...) passes through to the wrapped client, typed as its own API for static type
checkers (``wrapper.client`` is the wrapped client itself).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from os import PathLike
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.models import QueryResponse

from ..core.normalizer import BankNormalizer
from ..errors import InputError
from ._io import Call, Logic, adrive, drive
from .config import CollectionConfig, Settings
from .core import Core
from .grouped import groups_logic
from .query import query_logic
from .tree import explain_logic
from .planning import Overrides, Spec, extra_kwargs, spec_from_kwargs
from .admin import AsyncAdmin, SyncAdmin
from .lifecycle import (GALLERY_SAMPLE, REBUILD_METHODS, Lifecycle, Lifecycles, LifecycleStatus, RebuildReport,
                        Worker, export_logic, flush_all_logic, import_logic, rebuild_logic)

__all__ = ["DBNormClient", "AsyncDBNormClient", "CollectionConfig", "Settings"]

logger = logging.getLogger(__name__)

#: every public method of ``QdrantClient`` that ranks points, and what the wrappers do with it
#: (docs/qdrant.md has the table; a test fails on a new ranking method of qdrant-client without an entry)
RANKING: dict[str, str] = {
    "query_points": "normalised (dense queries; prefetch trees, fusion, MMR, recommend through the planner)",
    "query_batch_points": "normalised, each request as query_points",
    "query_points_groups": "normalised: Qdrant's grouping over the normalised ranking",
    "search_matrix_pairs": "refused unless rerank=False (a raw similarity graph of sampled points)",
    "search_matrix_offsets": "refused unless rerank=False (a raw similarity graph of sampled points)",
    "scroll": "passes through: orders by id or by a payload field (order_by), not by similarity",
    "facet": "passes through: counts payload values",
}

if TYPE_CHECKING:  # static type checkers see the wrapped client's API on the wrappers
    _SyncAPI = QdrantClient
    _AsyncAPI = AsyncQdrantClient
else:  # at run time that API is forwarded by _Base.__getattr__
    _SyncAPI = _AsyncAPI = object


class _Base:
    """What both wrappers share: the configuration surface and the :class:`Core`.

    ``options`` are the fields of :class:`~.config.Settings` (``banks``, ``params``,
    ``collections``, ``candidates``, ``mode``, ``payload_key``, ``cache_size``,
    ``backend``, ``exact_activation_max``), checked at construction; or pass a ready
    ``settings=``.
    """

    client: Any

    def __init__(self, client: Any, normalizer: BankNormalizer | None = None, *, settings: Settings | None = None,
                 **options: Any) -> None:
        if settings is not None and (normalizer is not None or options):
            raise InputError("pass settings= alone, or the options (normalizer=, banks=, params=, ...) without it.")
        self.client = client
        self.core = Core(settings if settings is not None else Settings.of(normalizer, **options))
        self.lifecycles = Lifecycles(self.core.settings, self.core)
        self._wlock = threading.Lock()

    @property
    def settings(self) -> Settings:
        """What this wrapper was built with."""
        return self.core.settings

    @property
    def payload_key(self) -> str:
        """The reserved payload key (statistics; ``raw_score`` with ``with_raw_score=True``)."""
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
        try:
            client = self.__dict__["client"]
        except KeyError:  # not initialised (e.g. while unpickling)
            raise AttributeError(name) from None
        return getattr(client, name)

    # plan builders shared by sync and async
    def _prepare(self, collection: str, ov: Overrides, usings: Sequence[Any] = ()) -> Logic:
        """Logic: a logged collection's lifecycle, made current (its banks: a version, the given
        ones or the cold start) for queries on ``usings``; ``None`` for a collection without a log."""
        lc = self.lifecycles.get(collection) if self.lifecycles else None
        if lc is not None and ov.rerank is not False:
            yield from lc.prepare_logic(self.core, usings=usings)
        elif lc is not None and lc.info is None:  # rerank=False is logged too, once the log is bound
            yield from lc.bind_logic(self.core, usings)
        return lc

    def _logged(self, lc: Lifecycle | None, specs: Sequence[Spec]) -> None:
        """Offer a served request's query vectors to its log (written off the query's path)."""
        if lc is not None:
            self._kick(self.lifecycles.offer(lc, specs))

    def _kick(self, ready: bool) -> None:  # the sync and async wrappers write the log their way
        raise NotImplementedError

    def _qp(self, collection_name: str, query: Any, kwargs: dict[str, Any]) -> Logic:
        ov = Overrides.pop(kwargs)
        lc = yield from self._prepare(collection_name, ov, [kwargs.get("using")])
        spec, = yield from self.core.quarantine.guard_logic(collection_name, [spec_from_kwargs(query, kwargs)])
        res = yield from query_logic(self.core, collection_name, [spec], ov, extra_kwargs(kwargs))
        self._logged(lc, [spec])
        return res

    def _qbp(self, collection_name: str, requests: Sequence[models.QueryRequest], kwargs: dict[str, Any]) -> Logic:
        ov = Overrides.pop(kwargs)
        lc = yield from self._prepare(collection_name, ov, [getattr(r, "using", None) for r in requests])
        specs = yield from self.core.quarantine.guard_logic(collection_name, [Spec.from_request(r) for r in requests])
        res = yield from query_logic(self.core, collection_name, specs, ov, extra_kwargs(kwargs), batch=True)
        self._logged(lc, specs)
        return res

    def _qpg(self, collection_name: str, group_by: Any, query: Any, kwargs: dict[str, Any]) -> Logic:
        ov = Overrides.pop(kwargs)
        lc = yield from self._prepare(collection_name, ov, [kwargs.get("using")])
        group_size = kwargs.pop("group_size", 3)
        with_lookup = kwargs.pop("with_lookup", None)
        guarded, = yield from self.core.quarantine.guard_logic(collection_name, [Spec(
            query=query, filter=kwargs.get("query_filter"), prefetch=kwargs.get("prefetch"))])
        kwargs.update(query_filter=guarded.filter, prefetch=guarded.prefetch)
        if not self.core.enabled(collection_name, ov):
            res = yield Call("query_points_groups", dict(collection_name=collection_name, group_by=group_by,
                                                         query=query, group_size=group_size,
                                                         with_lookup=with_lookup, **kwargs))
            self._logged(lc, [Spec(query=query, using=kwargs.get("using"), prefetch=kwargs.get("prefetch"))])
            return res
        spec = spec_from_kwargs(query, kwargs)
        res = yield from groups_logic(self.core, collection_name, spec, group_by, group_size, with_lookup, ov,
                                      extra_kwargs(kwargs))
        self._logged(lc, [spec])
        return res

    def _explain(self, collection_name: str, query: Any, kwargs: dict[str, Any]) -> Logic:
        ov = Overrides.pop(kwargs)
        yield from self._prepare(collection_name, ov, [kwargs.get("using")])
        spec = spec_from_kwargs(query, kwargs)
        extra_kwargs(kwargs)
        if not self.core.enabled(collection_name, ov):
            return {"path": "not reranked", "nodes": []}
        return (yield from explain_logic(self.core, collection_name, spec, ov))

    def _matrix(self, name: str, collection_name: str, kwargs: dict[str, Any]) -> Logic:
        ov = Overrides.pop(kwargs)
        if self.core.enabled(collection_name, ov):
            raise InputError(f"{name} returns a raw similarity graph that bank normalisation does not rerank; pass "
                             "rerank=False to get Qdrant's raw graph.")
        return (yield Call(name, dict(collection_name=collection_name, **kwargs)))

    def _search(self, collection_name: str, query_vector: Any, kwargs: dict[str, Any]) -> Logic:
        if isinstance(query_vector, tuple) and len(query_vector) == 2:  # (name, vector)
            kwargs["using"], query_vector = query_vector
        elif hasattr(query_vector, "name") and hasattr(query_vector, "vector"):  # a NamedVector
            kwargs["using"], query_vector = query_vector.name, query_vector.vector
        if "with_vectors" not in kwargs and "with_vector" in kwargs:
            kwargs["with_vectors"] = kwargs.pop("with_vector")
        kwargs.setdefault("with_payload", True)
        return self._qp(collection_name, np.asarray(query_vector, dtype=np.float32).tolist(), kwargs)

    # lifecycle (query_log=): plan builders shared by sync and async (docs/lifecycle.md)
    def _lc(self, collection: str) -> Lifecycle:
        lc = self.lifecycles.get(collection) if self.lifecycles else None
        if lc is None:
            raise InputError(f"collection {collection!r} has no query log; build the wrapper with "
                             f"query_log='{collection}_log' (or a mapping naming {collection!r}).")
        return lc

    def _rebuild(self, collection: str, kw: dict[str, Any]) -> Logic:
        return rebuild_logic(self.core, self._lc(collection), **kw)

    def _status(self, collection: str) -> Logic:
        return self._lc(collection).status_logic(self.core)


class DBNormClient(_Base, SyncAdmin, _SyncAPI):
    """Wraps a :class:`~qdrant_client.QdrantClient`; reranks ``query_points``,
    ``query_batch_points`` and ``search`` with bank normalisation.

    Parameters
    ----------
    client:
        The Qdrant client (local mode or server); ``.client`` afterwards.
    normalizer:
        A :class:`BankNormalizer` (banks + method), or give ``banks`` and ``params``.
    **options:
        The other fields of :class:`~.config.Settings`: ``banks``, ``params``,
        ``collections`` (per-collection :class:`CollectionConfig`), ``candidates`` (N),
        ``mode``, ``payload_key``, ``cache_size``, ``backend``, ``exact_activation_max``.
        Checked here: an unknown option, method or mode fails at construction.
    settings:
        Or a ready :class:`~.config.Settings` (then nothing else).
    """

    client: QdrantClient
    _worker: Worker | None = None

    def _run(self, collection: str, make: Callable[[], Logic]) -> Any:
        """Drive one request; when it fails on a logged collection whose active version another
        process switched meanwhile, or whose index vector is gone (the collection was recreated),
        run it once more on what the state and the collection say now."""
        try:
            return drive(make(), self.client)
        except Exception:  # InputError too: Qdrant Edge reports a dropped vector name as one
            lc = self.lifecycles.by_collection.get(collection) if self.lifecycles else None
            if lc is None or lc.version is None or not (drive(lc.changed_logic(self.core), self.client)):
                raise  # only a version's index vector is ever dropped; nothing changed: a real error
            return drive(make(), self.client)

    def query_points(self, collection_name: str, query: Any = None, **kwargs: Any) -> QueryResponse:
        """``QdrantClient.query_points``, reranked (same arguments, plus the per-call options)."""
        return self._run(collection_name, lambda: self._qp(collection_name, query, dict(kwargs)))[0]

    def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[QueryResponse]:
        """``QdrantClient.query_batch_points``, each request reranked."""
        return self._run(collection_name, lambda: self._qbp(collection_name, requests, dict(kwargs)))

    def query_points_groups(self, collection_name: str, group_by: str, query: Any = None,
                            **kwargs: Any) -> models.GroupsResult:
        """``QdrantClient.query_points_groups``, normalised: the groups and their hits follow the
        normalised ranking (a group's head is its first point in ``query_points`` order)."""
        return self._run(collection_name, lambda: self._qpg(collection_name, group_by, query, dict(kwargs)))

    def explain(self, collection_name: str, query: Any = None, **kwargs: Any) -> dict[str, Any]:
        """How ``query_points(collection_name, query, **kwargs)`` would run, without running it:
        ``{"path": "single" | "engine" | "client" | "as-is", "nodes": [...]}``, one entry per
        level of the request (normalised or not, on which path, why not)."""
        return drive(self._explain(collection_name, query, kwargs), self.client)

    def search_matrix_pairs(self, collection_name: str, **kwargs: Any) -> Any:
        """Refused unless ``rerank=False`` (Qdrant's raw similarity graph)."""
        return drive(self._matrix("search_matrix_pairs", collection_name, kwargs), self.client)

    def search_matrix_offsets(self, collection_name: str, **kwargs: Any) -> Any:
        """Refused unless ``rerank=False`` (Qdrant's raw similarity graph)."""
        return drive(self._matrix("search_matrix_offsets", collection_name, kwargs), self.client)

    def search(self, collection_name: str, query_vector: Any, **kwargs: Any) -> list[models.ScoredPoint]:
        """The pre-1.16 ``search``: ``query_vector`` is a vector, ``(name, vector)`` or a
        ``NamedVector``; ``query_filter``, ``search_params``, ``limit``, ``offset``,
        ``with_payload``, ``with_vectors``, ``score_threshold`` as before."""
        return self._run(collection_name, lambda: self._search(collection_name, query_vector, dict(kwargs)))[0].points

    # ------------------------------------------------------------------ query log / lifecycle
    def _the_worker(self, start: bool) -> Worker:
        """The one background writer of this wrapper (created once, under a lock; started on use)."""
        with self._wlock:
            w = self._worker
            if w is None or (w.ident is not None and not w.is_alive()):
                w = self._worker = Worker(self.lifecycles, self.client, lambda c: self.rebuild(c, progress=False))
            if start and w.ident is None:
                w.start()
            return w

    def _kick(self, ready: bool) -> None:
        w = self._the_worker(start=True)
        if ready:
            w.wake.set()

    def flush(self) -> int:
        """Write the buffered query vectors of every query log now; returns how many."""
        return self._the_worker(start=False).flush()

    def rebuild(self, collection_name: str, *, progress: bool = True, methods: Sequence[str] = REBUILD_METHODS,
                gallery_sample: int = GALLERY_SAMPLE, seed: int = 0) -> RebuildReport:
        """Turn the query log into banks: the log as the query bank, a seeded sample of the
        collection (``gallery_sample`` points) as the gallery bank, the method and parameters
        tuned without labels on held-out parts of both, written as a new version (statistics,
        index vector where the method has one), then switched to atomically; the old version
        serves until then and is removed after (docs/lifecycle.md)."""
        lc = self._lc(collection_name)
        self.flush()
        with self._worker.io:
            return drive(rebuild_logic(self.core, lc, progress=progress, methods=methods,
                                       gallery_sample=gallery_sample, seed=seed), self.client)

    def status(self, collection_name: str) -> LifecycleStatus:
        """What serves a logged collection now: the active version (or the cold start), its
        banks' sizes and age, the tuned method and its validation gain, the log's size."""
        self.flush()
        return drive(self._status(collection_name), self.client)

    def export_banks(self, collection_name: str, path: str | PathLike[str]) -> Any:
        """Write the banks and parameters serving a logged collection to a bank file
        (:func:`~dbnorm_qdrant.banks.save_banks`); returns the path."""
        return drive(export_logic(self.core, self._lc(collection_name), path), self.client)

    def import_banks(self, collection_name: str, path: str | PathLike[str], *, params: Any = None,
                     progress: bool = True) -> RebuildReport:
        """Publish the banks of a bank file as a new version of a logged collection and switch
        to it (the file's parameters, or ``params=``); the same steps as :meth:`rebuild`."""
        self.flush()
        with self._worker.io:
            return drive(import_logic(self.core, self._lc(collection_name), path, params, progress), self.client)

    def close(self, **kwargs: Any) -> None:
        """Write the buffered query vectors, stop the background writer, close the wrapped client."""
        try:
            if self._worker is not None:
                try:
                    self.flush()
                finally:
                    self._worker.stop()
        finally:
            self.client.close(**kwargs)

    def __enter__(self) -> "DBNormClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

class AsyncDBNormClient(_Base, AsyncAdmin, _AsyncAPI):
    """The :class:`DBNormClient` twin for :class:`~qdrant_client.AsyncQdrantClient` (same logic;
    ``rebuild_every`` is the sync wrapper's: await :meth:`rebuild` on your own schedule)."""

    def __init__(self, client: Any, normalizer: BankNormalizer | None = None, *, settings: Settings | None = None,
                 **options: Any) -> None:
        super().__init__(client, normalizer, settings=settings, **options)
        if self.settings.rebuild_every is not None:
            raise InputError("rebuild_every runs rebuilds on a background thread of the sync DBNormClient; with "
                             "AsyncDBNormClient drop it and await db.rebuild(collection) on your own schedule.")

    client: AsyncQdrantClient
    _tasks: set[Any] | None = None
    _io: asyncio.Lock | None = None

    async def _run(self, collection: str, make: Callable[[], Logic]) -> Any:
        """:meth:`DBNormClient._run`, async."""
        try:
            return await adrive(make(), self.client)
        except Exception:  # InputError too: Qdrant Edge reports a dropped vector name as one
            lc = self.lifecycles.by_collection.get(collection) if self.lifecycles else None
            if lc is None or lc.version is None or not (await adrive(lc.changed_logic(self.core), self.client)):
                raise  # only a version's index vector is ever dropped; nothing changed: a real error
            return await adrive(make(), self.client)

    async def query_points(self, collection_name: str, query: Any = None, **kwargs: Any) -> QueryResponse:
        return (await self._run(collection_name, lambda: self._qp(collection_name, query, dict(kwargs))))[0]

    async def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest], **kwargs: Any
    ) -> list[QueryResponse]:
        return await self._run(collection_name, lambda: self._qbp(collection_name, requests, dict(kwargs)))

    async def query_points_groups(self, collection_name: str, group_by: str, query: Any = None,
                                  **kwargs: Any) -> models.GroupsResult:
        return await self._run(collection_name, lambda: self._qpg(collection_name, group_by, query, dict(kwargs)))

    async def explain(self, collection_name: str, query: Any = None, **kwargs: Any) -> dict[str, Any]:
        return await adrive(self._explain(collection_name, query, kwargs), self.client)

    async def search_matrix_pairs(self, collection_name: str, **kwargs: Any) -> Any:
        return await adrive(self._matrix("search_matrix_pairs", collection_name, kwargs), self.client)

    async def search_matrix_offsets(self, collection_name: str, **kwargs: Any) -> Any:
        return await adrive(self._matrix("search_matrix_offsets", collection_name, kwargs), self.client)

    async def search(self, collection_name: str, query_vector: Any, **kwargs: Any) -> list[models.ScoredPoint]:
        return (await self._run(collection_name,
                                lambda: self._search(collection_name, query_vector, dict(kwargs))))[0].points

    # query log / lifecycle: batches are written by tasks on the running loop
    def _kick(self, ready: bool) -> None:
        if ready:
            if self._tasks is None:
                self._tasks = set()
            t = asyncio.get_running_loop().create_task(self._flush_all(raise_errors=False))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _flush_all(self, raise_errors: bool) -> int:
        if self._io is None:
            self._io = asyncio.Lock()
        async with self._io:
            return await adrive(flush_all_logic(self.lifecycles, raise_errors), self.client)

    async def flush(self) -> int:
        if self._tasks:
            await asyncio.gather(*list(self._tasks))
        return await self._flush_all(raise_errors=True)

    async def rebuild(self, collection_name: str, *, progress: bool = True, methods: Sequence[str] = REBUILD_METHODS,
                      gallery_sample: int = GALLERY_SAMPLE, seed: int = 0) -> RebuildReport:
        lc = self._lc(collection_name)
        await self.flush()
        async with self._io:
            return await adrive(rebuild_logic(self.core, lc, progress=progress, methods=methods,
                                              gallery_sample=gallery_sample, seed=seed), self.client)

    async def status(self, collection_name: str) -> LifecycleStatus:
        await self.flush()
        return await adrive(self._status(collection_name), self.client)

    async def export_banks(self, collection_name: str, path: str | PathLike[str]) -> Any:
        return await adrive(export_logic(self.core, self._lc(collection_name), path), self.client)

    async def import_banks(self, collection_name: str, path: str | PathLike[str], *, params: Any = None,
                           progress: bool = True) -> RebuildReport:
        await self.flush()
        async with self._io:
            return await adrive(import_logic(self.core, self._lc(collection_name), path, params, progress), self.client)

    async def close(self, **kwargs: Any) -> None:
        try:
            if self.lifecycles:
                await self.flush()
        finally:
            await self.client.close(**kwargs)

    async def __aenter__(self) -> "AsyncDBNormClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
