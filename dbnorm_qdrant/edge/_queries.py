"""Fusion, MMR, recommend, discover and context queries: qdrant-client models to Qdrant Edge.

The engine has each of them (``Fusion.Rrf`` / ``Dbsf``, ``Mmr``, ``Query.RecommendBestScore`` /
``RecommendSumScores`` / ``Discover`` / ``Context``) but takes them at the shard level, below
where a Qdrant server fills in defaults and checks the request. This module does that part as
Qdrant does (each checked against qdrant-client's local mode in tests/edge/test_edge_hybrid.py):
the RRF constant when none is given, MMR's ``lambda_ = 1 - diversity`` and its defaults, the
``average_vector`` recommendation (the engine has none: its nearest query to the average),
and Qdrant's refusals, as :class:`~dbnorm_qdrant.InputError`. Point ids among the examples are
resolved to vectors by the caller (:meth:`EdgeClient._by_ids`), which also leaves those points
out of the results, as Qdrant does.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import numpy as np
import qdrant_edge as qe
from qdrant_client import models

from ..errors import InputError
from ._convert import _unsupported, to_vector

__all__ = ["RRF_K", "MMR_CANDIDATES_MAX", "FUSIONS", "SCORING_QUERIES", "scoring_query", "to_fusion", "to_mmr",
           "example_ids", "to_example_query"]

#: the RRF constant when none is given: Qdrant's ``DEFAULT_RRF_K`` (qdrant-client's local mode and
#: ``qdrant_client.hybrid.fusion.DEFAULT_RANKING_CONSTANT_K`` use the same 2)
RRF_K = 2
#: the largest ``Mmr.candidates_limit`` Qdrant accepts
MMR_CANDIDATES_MAX = 16_384
#: the query models of :func:`to_fusion` (the others of ``SCORING_QUERIES``: :func:`to_example_query`)
FUSIONS = (models.FusionQuery, models.RrfQuery)
#: a set of exact types: ``type(q) in SCORING_QUERIES`` costs ~30 ns on the plain vector query, an
#: ``isinstance`` against these six pydantic classes ~550 ns
SCORING_QUERIES = frozenset((*FUSIONS, models.NearestQuery, models.RecommendQuery, models.DiscoverQuery,
                             models.ContextQuery))


def _is_id(x: Any) -> bool:
    return isinstance(x, (int, str, uuid.UUID)) and not isinstance(x, bool)


def to_fusion(q: Any, n_prefetch: int, using: str | None) -> Any:
    """A ``FusionQuery`` (``RRF`` with Qdrant's default k, :data:`RRF_K`; ``DBSF``) or an
    ``RrfQuery`` (``k``, ``weights``) as the engine's ``Fusion``, refused where Qdrant refuses it."""
    what = type(q).__name__
    if using is not None:
        raise InputError(f"a {what} fuses the results of its prefetches and takes no using= (got {using!r}); drop using=.")
    if n_prefetch == 0:
        raise InputError(f"a {what} fuses the results of prefetches and the request has none; give "
                         "prefetch=[Prefetch(...), ...] (one per branch), or query a vector instead.")
    if isinstance(q, models.FusionQuery):
        if q.fusion == models.Fusion.RRF:
            return qe.Fusion.Rrf(k=RRF_K)
        if q.fusion == models.Fusion.DBSF:
            return qe.Fusion.Dbsf()
        raise _unsupported(f"the fusion {q.fusion!r}")
    k, w = (RRF_K if q.rrf.k is None else q.rrf.k), q.rrf.weights
    if k < 1:
        raise InputError(f"RrfQuery k={k} is invalid; give k >= 1 (Qdrant's default is {RRF_K}).")
    if w is not None and len(w) != n_prefetch:
        raise InputError(f"RrfQuery has {len(w)} weight(s) for {n_prefetch} prefetch(es); give one weight per "
                         "prefetch, in the order of the prefetches.")
    return qe.Fusion.Rrf(k=int(k), weights=None if w is None else [float(x) for x in w])


def to_mmr(vector: Any, mmr: models.Mmr, using: str | None, limit: int, sparse: bool) -> Any:
    """``NearestQuery(nearest=vector, mmr=Mmr(diversity, candidates_limit))`` as the engine's
    ``Mmr``: ``lambda_ = 1 - diversity`` (relevance weight), ``diversity`` 0.5 and
    ``candidates_limit`` the query's ``limit`` when not given, as Qdrant does."""
    if sparse or isinstance(vector, (qe.SparseVector, models.SparseVector)):
        raise InputError(f"MMR on the sparse vector {using!r} is not supported by the Qdrant Edge engine; run MMR "
                         "on a dense vector, or drop mmr= (docs/edge.md).")
    d = 0.5 if mmr.diversity is None else mmr.diversity
    if not 0.0 <= d <= 1.0:
        raise InputError(f"Mmr diversity={d} is invalid; give a value in [0, 1] (0: relevance only, 1: most "
                         "diverse; Qdrant's default 0.5).")
    n = limit if mmr.candidates_limit is None else mmr.candidates_limit
    if not 0 <= n <= MMR_CANDIDATES_MAX:
        raise InputError(f"Mmr candidates_limit={n} is invalid; give 0 to {MMR_CANDIDATES_MAX} (default: the limit).")
    return qe.Mmr(vector=to_vector(vector), lambda_=1.0 - d, candidates_limit=int(n), using=using)


def _pairs(ctx: Any) -> list[Any]:
    return [] if ctx is None else ctx if isinstance(ctx, list) else [ctx]


def example_ids(q: Any) -> list[Any]:
    """The point ids among the examples of an MMR, recommend, discover or context query
    (Qdrant replaces each by that point's vector and leaves those points out of the results)."""
    if isinstance(q, models.NearestQuery):
        xs = [q.nearest]
    elif isinstance(q, models.RecommendQuery):
        xs = [*(q.recommend.positive or ()), *(q.recommend.negative or ())]
    else:
        d = q.discover if isinstance(q, models.DiscoverQuery) else None
        xs = [] if d is None else [d.target]
        xs += [x for p in _pairs(q.context if d is None else d.context) for x in (p.positive, p.negative)]
    return [x for x in xs if _is_id(x)]


def _average(pos: list[Any], neg: list[Any]) -> list[float]:
    """Qdrant's ``average_vector`` recommendation: ``mean(pos) + (mean(pos) - mean(neg))``."""
    if any(isinstance(v, qe.SparseVector) or (len(v) and isinstance(v[0], list)) for v in pos + neg):
        raise InputError("the average_vector recommend strategy (the default) on a sparse or multi-vector is not "
                         "supported by the Qdrant Edge driver; pass strategy='best_score' or 'sum_scores'.")
    try:
        m = np.mean(np.asarray(pos, dtype=np.float64), axis=0)
        if neg:
            m = 2.0 * m - np.mean(np.asarray(neg, dtype=np.float64), axis=0)
    except ValueError:
        raise InputError("the examples of a RecommendQuery have different sizes; give vectors of the size of the "
                         "vector searched.") from None
    return m.astype(np.float32).tolist()


def to_example_query(q: Any, using: str | None, vectors: dict[Any, Any], limit: int, sparse: bool,
                     in_prefetch: bool = False) -> Any:
    """An MMR, recommend, discover or context query as the engine's; ``vectors``: the vector of
    each point id among its examples (:func:`example_ids`). The ``average_vector`` strategy
    (the engine has none) is the engine's nearest query to the average Qdrant computes. MMR
    ``in_prefetch`` is refused: the engine runs it there unlike qdrant-client's local mode (a
    leaf prefetch as a plain nearest search; one with inner prefetches as MMR over all their
    points, without the ``candidates_limit`` cut)."""
    vec = lambda x: vectors[x] if _is_id(x) else to_vector(x)  # noqa: E731
    if isinstance(q, models.NearestQuery):
        if in_prefetch:
            raise InputError("MMR inside a prefetch runs differently on the Qdrant Edge engine than in "
                             "qdrant-client's local mode (a leaf prefetch as a plain nearest search); put the "
                             "NearestQuery(mmr=...) at the top level of the request (it then picks among the "
                             "prefetches' points), or drop mmr= in the prefetch.")
        return to_mmr(vec(q.nearest), q.mmr, using, limit, sparse)
    if isinstance(q, models.RecommendQuery):
        r = q.recommend
        pos, neg = [vec(x) for x in r.positive or ()], [vec(x) for x in r.negative or ()]
        strategy = r.strategy or models.RecommendStrategy.AVERAGE_VECTOR
        if strategy == models.RecommendStrategy.AVERAGE_VECTOR:
            if not pos:
                raise InputError("a RecommendQuery with the average_vector strategy (the default) needs positive "
                                 "examples; give positive=[...], or strategy='best_score' / 'sum_scores'.")
            return qe.Query.Nearest(_average(pos, neg), using=using)
        if not pos and not neg:
            raise InputError("a RecommendQuery needs examples; give positive=[...] and/or negative=[...].")
        best = strategy == models.RecommendStrategy.BEST_SCORE
        return (qe.Query.RecommendBestScore if best else qe.Query.RecommendSumScores)(
            qe.RecommendQuery(pos, neg), using=using)
    d = q.discover if isinstance(q, models.DiscoverQuery) else None
    pairs = [qe.ContextPair(vec(p.positive), vec(p.negative)) for p in _pairs(q.context if d is None else d.context)]
    if d is not None:
        return qe.Query.Discover(qe.DiscoverQuery(vec(d.target), pairs), using=using)
    if not pairs:
        raise InputError("a ContextQuery needs context pairs; give context=[ContextPair(positive=..., negative=...)].")
    return qe.Query.Context(qe.ContextQuery(pairs), using=using)


def scoring_query(r: Any, q: Any, by_ids: Callable[[list[Any]], dict[Any, Any]], sparse: bool) -> tuple[Any, list]:
    """The query ``q`` of request (or ``Prefetch``) ``r``, one of :data:`SCORING_QUERIES`, as the
    engine's, and the point ids among its examples (Qdrant leaves those points out of the
    results); ``by_ids(ids)``: their vectors of ``r.using``; ``sparse``: ``r.using`` is sparse."""
    if isinstance(q, FUSIONS):
        pf = r.prefetch
        return to_fusion(q, 0 if pf is None else len(pf) if isinstance(pf, list) else 1, r.using), []
    ids = example_ids(q)
    limit = 10 if r.limit is None else r.limit
    return to_example_query(q, r.using, by_ids(ids) if ids else {}, limit, sparse, isinstance(r, models.Prefetch)), ids
