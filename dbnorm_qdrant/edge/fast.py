"""The engine-native lane of :class:`~.shard.DBNormEdgeShard`: one plain request, no detour.

A reranked request normally takes the layer's whole way: it is read into qdrant-client's
request model (its vector parsed back out of the engine's text form), planned, run through
:class:`~.client.EdgeClient` (converted back into an engine request), and its candidates
are converted to qdrant-client points and back. On Qdrant Edge, where a plain query of
5,000 points takes ~350 us, that way costs about as much again (docs/edge.md).

For the common request (one dense ``Query.Nearest`` scored by an additive method such as
``dualis``, ``is`` or ``csls``, without prefetches, payload selectors or returned
vectors) every decision of that way is known before the engine is called, so this lane
runs it on the engine's own objects:

- client path, every candidate's bias cached: the user's request with ``limit = N`` (its
  query object reused, its vector never parsed), then the cache's compiled top-k
  (:meth:`~dbnorm_qdrant.qdrant.cache.StatsCache.additive_topk`);
- server path: a prefetch of N with the user's query, filter and search parameters, and the
  normaliser's formula (:func:`~dbnorm_qdrant.qdrant.server_path.formula_query`, converted
  to the engine's form once per normaliser).

Every decision comes from the shared core, none is made here: the path
(:meth:`~dbnorm_qdrant.qdrant.core.Core.route`), N, the normaliser, the cache, the
quarantine filter, the formula and the score threshold (:func:`~dbnorm_qdrant.qdrant.results.cut_at`).
Whatever the lane is not sure of (a first query, a check that is due, an override it does
not take, a NaN, infinite or zero vector, an engine error, a candidate not cached, a point
with stale statistics under the formula) makes it return ``None``, and the request takes the
layer's whole way, which gives the answer or the error.
"""

from __future__ import annotations

import re
from typing import Any

import qdrant_edge as qe
from qdrant_client import models

from ..errors import InputError
from ..qdrant.client_path import keys_of
from ..qdrant.planning import Overrides
from ..qdrant.quarantine import Quarantine
from ..qdrant.results import cut_at
from ..qdrant.server_path import MISSING, formula_query
from . import _convert as cv
from .points import ScoredPoint

__all__ = ["FastLane"]

#: the per-call options the lane takes (any other sends the request the layer's whole way)
_OPTIONS = frozenset(("candidates", "mode"))
_NO_OVERRIDES = Overrides()
#: a finite vector printed without exponent that is not all zeros has a digit 1-9
_NONZERO = re.compile(r"[1-9]")
_HEAD = len(cv._NEAREST_HEAD)
#: a formula score at or above this is a point without current statistics (the bias-field formula
#: adds ``MISSING`` to those); a Cosine collection's normalised scores stay far below it
_STALE = MISSING / 2


class FastLane:
    """Serve the plain requests of one :class:`~.shard.DBNormEdgeShard` on the engine's objects.

    ``served`` counts the requests answered here (the others took the layer's whole way).
    """

    def __init__(self, es: Any) -> None:  # its DBNormEdgeShard (not imported: the shard imports this module)
        self.es = es
        self.served = 0
        self._formulas: dict[tuple, Any] = {}
        self._unmarked: Any = None  # the engine filter "not quarantined", built on first use

    def query(self, r: Any, overrides: dict[str, Any], built: tuple[str | None] | None = None) -> list[Any] | None:
        """The reranked points of request ``r``, or ``None`` when the layer's whole way must answer.

        ``built``: ``(using,)`` when ``r`` was built by :meth:`~.shard.DBNormEdgeShard.search`
        from a checked vector (finite, not all zeros) with ``Query.Nearest(..., using=using)``:
        its query is then not read back from its text form (~50 us for 384 floats)."""
        if type(r) is not qe.QueryRequest or r.prefetches or r.with_vector is not False:
            return None
        wp = r.with_payload
        if wp is not False and wp is not True:  # a selector: the layer applies it
            return None
        if overrides:
            if not overrides.keys() <= _OPTIONS:
                return None
            ov = Overrides(candidates=overrides.get("candidates"), mode=overrides.get("mode"))
        else:
            ov = _NO_OVERRIDES
        es = self.es
        db, coll = es.db, es.collection
        core = db.core
        if db.lifecycles or not core.enabled(coll, ov) or core.names_due(coll):
            return None
        hidden = core.quarantine.known(coll)
        if hidden is None:  # a check is due
            return None
        if built is None:
            got = cv.nearest_text(r.query)
            if got is None:
                return None
            text, end, name = got
        else:
            name = built[0]
        info = core.known_info(coll, name or es.using)
        if info is None or (info.using or None) != (name or None):  # the query object must name the vector searched
            return None
        if built is None:
            if text.find("N", _HEAD, end) >= 0 or text.find("inf", _HEAD, end) >= 0:  # NaN, inf: the layer refuses
                return None
            if info.distance != "Euclid" and _NONZERO.search(text, _HEAD, end) is None:  # a zero vector: refused too
                return None
        try:
            nz = core.normalizer(coll, info, ov)
            p = nz.params
            if not p.additive or p.center:
                return None
            n = core.candidates(coll, r.limit, r.offset, ov)
            mode, pinned = core.route(coll, info, nz, ov)
        except InputError:  # the layer raises it, with its context
            return None
        flt = self._exclude(r.filter) if hidden else r.filter
        if mode == "client":
            out = self._client(r, info, nz, n, flt, pinned, as_asked=not hidden)
        elif mode == "server" and info.distance == "Cosine":
            out = self._server(r, info, nz, n, flt)
        else:
            return None
        if out is not None:
            self.served += 1
        return out

    def _client(self, r: Any, info: Any, nz: Any, n: int, flt: Any, pinned: bool, as_asked: bool) -> list[Any] | None:
        """The client path from the cached biases (as :func:`~dbnorm_qdrant.qdrant.client_path.client_logic`
        with a warm cache); ``as_asked``: ``flt`` is the request's own filter."""
        es = self.es
        core, coll = es.db.core, es.collection
        fp = nz.fingerprint
        if not core.is_warm((coll, info.using, fp)):  # candidates' vectors wanted: the layer fetches them
            return None
        key = core.payload_key
        wp = r.with_payload
        # "auto" chose the client path: the best candidate's payload tells of a precompute, as on the layer's way
        look = not pinned
        if n == r.limit and not r.offset and r.score_threshold is None and as_asked and (wp or not look):
            req = r  # the user's request is the candidate query (no copy of its vector)
        else:
            req = qe.QueryRequest(limit=n, query=r.query, filter=flt, params=r.params,
                                  with_payload=True if wp else ([key] if look else False), with_vector=False)
        try:
            pts = es.shard.query(req)
        except Exception:  # the layer's way raises it as an InputError, with its context
            return None
        if not pts:
            return []
        if look:
            pr = (pts[0].payload or {}).get(key)
            if isinstance(pr, dict) and pr.get("fp") == fp:  # stored statistics: the layer switches to the server path
                return None
        ids = [pt.id for pt in pts]
        top = core.cache.additive_topk(coll, ids if type(ids[0]) is int else keys_of(pts), [pt.score for pt in pts],
                                       fp, info.sign, r.offset or 0, r.limit)
        if top is None:  # a candidate not cached (or a NaN score)
            return None
        order, scores = cut_at(*top, r.score_threshold)
        return self._points(pts, order, scores, wp)

    def _server(self, r: Any, info: Any, nz: Any, n: int, flt: Any) -> list[Any] | None:
        """The server path: a prefetch of N and the formula
        (as :func:`~dbnorm_qdrant.qdrant.server_path.server_logic`)."""
        es = self.es
        core = es.db.core
        key = core.payload_key
        sk = (es.collection, info.using, nz.fingerprint)
        # only the bias-field formula, which adds exactly MISSING to a point without current statistics
        # (the legacy one adds c_f * MISSING); and only once statistics are known stored (a pinned
        # mode="server" on a collection without them goes the whole way to the client path at once)
        if not (core.payload_ready(sk) and core.bias_stored(sk)):
            return None
        fk = (nz.params, key, info.sign, nz.fingerprint)
        formula = self._formulas.get(fk)
        if formula is None:
            formula = cv.to_query(formula_query(nz.params, key, info.sign, fingerprint=nz.fingerprint, bias=True),
                                  None)
            self._formulas[fk] = formula
        off = r.offset or 0
        # offset and threshold are applied here, once every point up to offset + limit is known to
        # have current statistics (a point without them is pushed to the very top by the formula)
        req = qe.QueryRequest(limit=off + r.limit, query=formula, with_payload=r.with_payload, with_vector=False,
                              prefetches=[qe.Prefetch(query=r.query, filter=flt, params=r.params, limit=n)])
        try:
            pts = es.shard.query(req)
        except Exception:
            return None
        scores = [pt.score for pt in pts]
        if any(s >= _STALE for s in scores) or any(s != s for s in scores):  # stale statistics, or a NaN
            return None
        order = list(range(min(off, len(pts)), len(pts)))
        order, kept = cut_at(order, scores[off:], r.score_threshold)
        return self._points(pts, order, kept, r.with_payload)

    def _exclude(self, flt: Any) -> Any:
        """``flt`` AND not quarantined (:class:`~dbnorm_qdrant.qdrant.quarantine.Quarantine`'s condition)."""
        if self._unmarked is None:
            self._unmarked = cv.to_filter(models.Filter(must=[Quarantine.field(self.es.db.core.payload_key)]))
        return self._unmarked if flt is None else qe.Filter(must=[flt, self._unmarked])

    @staticmethod
    def _points(pts: list[Any], order: list[int], scores: list[float], with_payload: bool) -> list[ScoredPoint]:
        return [ScoredPoint(pts[j].id, pts[j].version, s, None, pts[j].payload if with_payload else None,
                            pts[j].order_value) for j, s in zip(order, scores)]
