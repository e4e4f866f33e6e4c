"""``DBNormEdgeShard``: an ``EdgeShard`` whose nearest-neighbour queries are reranked.

``DBNormEdgeShard(shard, normalizer)`` takes the engine's own requests:
``.query(QueryRequest)`` and ``.query_batch(QueryBatchRequest)`` accept what
``EdgeShard.query`` / ``query_batch`` accept and return the same shape (a list of
points with ``id``, ``version``, ``score``, ``vector``, ``payload``, ``order_value``;
a list of such lists), with ``score`` the normalised score. Each request is read into the
layer's request (the dense vector, ``using``, filter, search parameters, limit, offset,
score threshold, payload and vector selectors) and run by the same
:class:`~dbnorm_qdrant.qdrant.DBNormClient` machinery as every other driver, over an
:class:`~.client.EdgeClient` that wraps the shard: the same candidates, statistics cache,
payload statistics, fingerprints, staleness rules and both rerank paths
(``mode="client"``: the rerank in this process with the kernels; ``mode="server"``: a
prefetch and a formula inside the engine; ``mode="index"``: one engine query on the index
vector that ``precompute(index=True)`` adds, docs/index.md; ``"auto"``: the index when it
is current, else the server path once :meth:`precompute` has stored current statistics).

A plain single request (a dense ``Query.Nearest`` of an additive method, no prefetch,
payload selector or returned vectors) that the core would send down the client path with
a warm cache or down the server path runs on the engine's own objects instead
(:mod:`.fast`: same decisions, same answer, about half the layer's cost).

The engine's ``ScoredPoint`` cannot be built (nor changed) from Python, so the results are
:class:`~.points.ScoredPoint` objects with the same attributes. Everything else
(``count``, ``scroll``, ``update``, ``close``, ...) passes through to the shard.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import models

from ..core.normalizer import BankNormalizer
from ..errors import InputError
from ..qdrant import DBNormClient
from ..qdrant._io import drive
from ..qdrant.planning import Overrides
from ..qdrant.quarantine import ours
from ..qdrant.server_path import bias_field
from ..qdrant.sources import iter_pages
from ..qdrant.store import PrecomputeReport
from . import _convert as cv
from .client import EdgeClient, engine_errors
from .fast import FastLane
from .points import ScoredPoint, edge_id

__all__ = ["DBNormEdgeShard", "ScoredPoint"]

if TYPE_CHECKING:  # static type checkers see the shard's API on the wrapper
    _ShardAPI = qe.EdgeShard
else:  # at run time it is forwarded by __getattr__
    _ShardAPI = object


class DBNormEdgeShard(_ShardAPI):
    """An ``EdgeShard`` whose dense nearest-neighbour queries are reranked with bank normalisation.

    Parameters
    ----------
    shard:
        An open ``qdrant_edge.EdgeShard`` (the caller keeps it: ``close()`` it when done).
    normalizer:
        A :class:`BankNormalizer`, or give ``banks=`` and ``params=`` (as to ``DBNormClient``).
    candidates:
        N, the raw candidates reranked per query (at least ``limit + offset``).
    mode:
        ``"auto"`` (default), ``"client"``, ``"server"`` or ``"index"`` (needs
        ``precompute(index=True)``; docs/index.md).
    using:
        The vector queries target when the request names none (``None``: the unnamed one).
    config, path, distance:
        The shard's vector configuration, which the engine does not report: the
        ``EdgeConfig`` it was created with, or its directory (``edge_config.json`` is
        read), or the distance name (the size is then probed). One is required.
    payload_key:
        The reserved payload key for stored statistics (the only key ever written).
    **options:
        The other :class:`~dbnorm_qdrant.qdrant.Settings` fields (``banks``, ``params``,
        ``cache_size``, ``backend``, ``exact_activation_max``).

    Bad input (a missing vector name, banks of another dimension, a closed shard) fails
    here with an :class:`InputError`, before anything is written.
    """

    def __init__(self, shard: Any, normalizer: BankNormalizer | None = None, *, candidates: int | None = 100,
                 mode: str = "auto", using: str | None = None, config: Any = None,
                 path: str | os.PathLike | None = None, distance: str | None = None, payload_key: str = "_dbnorm",
                 **options: Any) -> None:
        self.shard = shard
        self.collection = "edge"
        self.using = using or None
        self.client = EdgeClient.from_shard(shard, self.collection, config, path=path, distance=distance, using=using)
        self.db = DBNormClient(self.client, normalizer, candidates=candidates, mode=mode, payload_key=payload_key,
                               **options)
        core = self.db.core
        info = drive(core.info_logic(self.collection, self.using), self.client)  # a missing vector name fails here
        with engine_errors("reading the shard"):
            shard.info()  # a closed shard fails here
        if normalizer is not None or options.get("banks") is not None:
            core.normalizer(self.collection, info)  # banks of another dimension fail here
        #: the engine-native lane for plain requests (:mod:`.fast`); ``fast.served`` counts them
        self.fast = FastLane(self)

    @property
    def payload_key(self) -> str:
        """The reserved payload key (statistics; ``raw_score`` with ``with_raw_score=True``)."""
        return self.db.payload_key

    @property
    def cache(self):  # noqa: ANN201
        """The statistics cache (:class:`~dbnorm_qdrant.qdrant.cache.StatsCache`)."""
        return self.db.cache

    def __getattr__(self, name: str) -> Any:  # everything else: the shard's
        try:
            shard = self.__dict__["shard"]
        except KeyError:  # not initialised
            raise AttributeError(name) from None
        return getattr(shard, name)

    # ------------------------------------------------------------------ queries
    def _layer_request(self, r: Any) -> tuple[models.QueryRequest, Any]:
        """The layer's request for an edge ``QueryRequest``, and the request's payload
        selector when the engine hides its content (an Include/Exclude selector)."""
        if not isinstance(r, qe.QueryRequest):
            raise InputError(f"expected a qdrant_edge.QueryRequest, got {type(r).__name__}.")
        if r.prefetches:
            raise InputError("queries with prefetches cannot be reranked; pass rerank=False to run them as they are.")
        got = cv.nearest_of(r.query)
        if got is None:
            form = repr(r.query).split("(", 1)[0] if r.query is not None else "a query without a vector"
            raise InputError(f"cannot rerank {form}: only Query.Nearest with one dense vector can be; pass "
                             "rerank=False to run it as it is.")
        vec, using = got
        wp = r.with_payload
        hidden = wp if isinstance(wp, qe.PayloadSelector) else None
        req = cv.query_request(
            query=vec.tolist(), using=using or self.using, filter=cv.from_filter(r.filter),
            params=cv.from_search_params(r.params), limit=r.limit, offset=r.offset or None,
            with_payload=False if hidden is not None else wp, with_vector=r.with_vector,
            score_threshold=r.score_threshold)
        return req, hidden

    def _points(self, res: models.QueryResponse, hidden: Any) -> list[ScoredPoint]:
        pts = res.points
        payloads: dict[Any, Any] = {}
        if hidden is not None and pts:  # the selector's keys are not readable: the engine applies it
            with engine_errors("retrieving the payloads"):
                recs = self.shard.retrieve([edge_id(p.id) for p in pts], hidden, False)
            payloads = {cv.point_id(r.id): r.payload for r in recs}
        return [ScoredPoint(edge_id(p.id), p.version, p.score, p.vector,
                            payloads.get(p.id) if hidden is not None else p.payload, p.order_value) for p in pts]

    def query(self, request: Any, **overrides: Any) -> list[Any]:
        """``EdgeShard.query``, reranked (``overrides``: ``DBNormClient``'s per-call
        options, e.g. ``candidates=``, ``mode=``, ``method=``, ``with_raw_score=True``;
        ``rerank=False`` runs the request on the shard as it is)."""
        if overrides.get("rerank") is False:
            with engine_errors("a query"):
                return self.shard.query(request)
        out = self.fast.query(request, overrides)  # the common request, on the engine's own objects
        return out if out is not None else self._whole_way(request, overrides)

    def _whole_way(self, request: Any, overrides: dict[str, Any]) -> list[Any]:
        req, hidden = self._layer_request(request)
        res = self.db.query_batch_points(self.collection, [req], **overrides)[0]
        return self._points(res, hidden)

    def search(self, vector: Any, *, limit: int = 10, using: str | None = None, filter: Any = None,
               params: Any = None, offset: int | None = None, score_threshold: float | None = None,
               with_payload: Any = False, with_vector: Any = False, **overrides: Any) -> list[Any]:
        """A reranked nearest-neighbour query by ``vector`` (a sequence of floats or a 1-d array):
        ``query(QueryRequest(query=Query.Nearest(vector, using=using or self.using), ...))``
        with the request's other fields as keywords, plus the per-call options of :meth:`query`.

        The quickest way in: the engine's ``QueryRequest`` gives its query back only as text,
        which :meth:`query` must print and read (about 50 us for 384 floats, a sixth of a plain
        query on 5,000 points); here the vector is checked as given and the request built
        from it (docs/edge.md)."""
        name = using or self.using
        v = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)  # (the engine keeps float32)
        try:
            query = qe.Query.Nearest(v, using=name)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"search() takes one dense vector, a sequence of floats; got {str(vector)[:80]!r}. "
                             "Pass the embedding as a list or a 1-d array.") from None
        try:
            req = qe.QueryRequest(limit=limit, query=query, filter=filter, params=params, offset=offset,
                                  score_threshold=score_threshold, with_payload=with_payload, with_vector=with_vector)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"search(): {exc} (limit={limit!r}, offset={offset!r}); limit must be a positive "
                             "integer, offset a non-negative one, filter and params the engine's own "
                             "objects.") from None
        if overrides.get("rerank") is False:
            with engine_errors("a query"):
                return self.shard.query(req)
        # plain floats that stay finite and not all zeros as the engine's float32; anything else
        # (another shape, NaN, inf, zeros, out of float32 range) goes the whole way, which refuses it
        # in its words (it reads the engine's float32 text)
        ok = bool(v) and type(v[0]) is float and _finite_nonzero_f32(v)
        out = self.fast.query(req, overrides, built=(name,)) if ok else None
        return out if out is not None else self._whole_way(req, overrides)

    def query_batch(self, batch: Any, **overrides: Any) -> list[list[Any]]:
        """``EdgeShard.query_batch`` (a ``QueryBatchRequest``, or a list of requests), each reranked."""
        reqs = batch.queries if isinstance(batch, qe.QueryBatchRequest) else list(batch)
        if overrides.get("rerank") is False:
            with engine_errors("a batch query"):
                return self.shard.query_batch(qe.QueryBatchRequest(reqs))
        conv = [self._layer_request(r) for r in reqs]
        res = self.db.query_batch_points(self.collection, [c[0] for c in conv], **overrides)
        return [self._points(r, c[1]) for r, c in zip(res, conv)]

    # ------------------------------------------------------------------ statistics
    def _check_own_key(self) -> None:
        """Refuse, before anything is written, a shard holding foreign data under our key."""
        key = self.payload_key
        for recs in iter_pages(self.client, self.collection, page_size=2048, with_payload=[key]):
            for r in recs:
                cur = (r.payload or {}).get(key)
                if cur is not None and not ours(cur):
                    raise InputError(
                        f"point {r.id!r} already holds data under the payload key {key!r} that is not dbnorm "
                        "statistics; nothing was written. Pick another key with DBNormEdgeShard(..., "
                        "payload_key='...').")

    def _index_statistics(self, params: Any) -> None:
        """Payload indexes on the statistics fields and the bias field (Float) and the
        fingerprint (Keyword): the server formula reads them from the index (about half the
        cost), and a stray non-numeric value falls back to the formula's default instead of
        failing the query. Only fields under the plugin's own key are indexed."""
        key = self.payload_key
        core = self.db.core
        info = drive(core.info_logic(self.collection, self.using), self.client)
        nz = core.normalizer(self.collection, info, None if params is None else Overrides(params=params))
        with engine_errors("reading the payload indexes"):
            have = set(self.shard.info().payload_schema)
        want = {f"{key}.{f}": "float" for f in core.stat_fields(nz)}
        want[f"{key}.fp"] = "keyword"
        field = bias_field(nz.params, nz.fingerprint)
        if field is not None:  # what the server formula of an additive method reads (docs/edge.md)
            want[f"{key}.{field}"] = "float"
        for field, kind in want.items():
            if field not in have:
                self.client.create_payload_index(self.collection, field, kind)

    def precompute(self, *, params: Any = None, page_size: int = 256, force: bool = False,
                   progress: bool = True, index: bool = False) -> PrecomputeReport:
        """Store every point's statistics under :attr:`payload_key` (resumable; no other key
        changes) and index the statistics fields (see docs/edge.md). ``index=True``: also
        the index vector of ``mode="index"`` (a named ``d + 1`` Dot vector added to the
        shard; docs/index.md)."""
        self._check_own_key()
        rep = self.db.precompute(self.collection, using=self.using, params=params, page_size=page_size, force=force,
                                 progress=progress, index=index)
        self._index_statistics(params)
        return rep

    def drop_index(self, *, params: Any = None, every: bool = False) -> list[str]:
        """Delete this normaliser's index vector (``every=True``: every ``_dbnorm_*`` one);
        returns the names deleted. The shard's own vectors are untouched."""
        return self.db.drop_index(self.collection, using=self.using, params=params, every=every)

    def refresh(self, *, params: Any = None) -> PrecomputeReport:
        """Recompute the activation sets (dis/dualdis) and rewrite the stored flags that
        changed; points added since ``precompute(index=True)`` get their index vector."""
        return self.db.refresh(self.collection, using=self.using, params=params)

    def audit(self, budget: float = 0.005, *, k: int = 10, params: Any = None, page_size: int = 512,
              progress: bool = True, quarantine: bool = False) -> Any:
        """The hub audit of the shard (:meth:`DBNormClient.audit <dbnorm_qdrant.qdrant.DBNormClient.audit>`,
        docs/audit.md); ``quarantine=True`` marks the flagged points under :attr:`payload_key`
        and this wrapper's reranked queries leave them out (``rerank=False`` runs a request on
        the shard as it is, quarantined points included)."""
        return self.db.audit(self.collection, budget, k=k, using=self.using, params=params, page_size=page_size,
                             progress=progress, quarantine=quarantine)

    def unquarantine(self, ids: Any = None) -> int:
        """Remove the quarantine mark of ``ids`` (default: every quarantined point)."""
        return self.db.unquarantine(self.collection, ids)


#: the largest float32, and half the smallest positive one (below it a value rounds to zero)
_F32_MAX, _F32_TINY = 3.4028234663852886e38, 7.006492321624086e-46


def _finite_nonzero_f32(v: list[Any]) -> bool:
    """A list of numbers none of which is NaN or infinite (either makes the sum's difference NaN)
    nor beyond float32's range, and not all of which round to float32 zero."""
    try:
        t = sum(v)
    except TypeError:  # not all numbers
        return False
    if t - t != 0.0:
        return False
    m = max(map(abs, v))
    return _F32_TINY < m < _F32_MAX
