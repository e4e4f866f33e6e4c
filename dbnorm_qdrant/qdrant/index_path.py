"""The index path: the normalised search as one Qdrant query on the index vector.

``precompute(..., index=True)`` (:mod:`.index_store`) gives every point a named vector
``[g, -bias(g)]`` (:mod:`dbnorm_qdrant.core.index`; docs/index.md). A query ``[q, 1]`` on
it (``Distance.DOT``) returns the normalised ranking of the whole collection with the
normalised score: filters, ``limit``, ``offset``, ``score_threshold``, ``search_params``
and the payload selector go to Qdrant as they are (:func:`index_logic`).

``dis`` / ``dualdis`` switch their correction on per query, so the index (gates open: the
``is`` / ``dualis`` ordering) only generates candidates: :func:`candidates_logic` asks it
for N of them plus the raw top-1 (which decides the gates), and restricts the plan to those
ids, for the client-side path to rerank exactly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from qdrant_client import models

from ..core.index import bias_of_row, index_query
from ._io import Logic
from .planning import Plan, merge_vectors
from .results import build_result, empty_result, shape_points

if TYPE_CHECKING:
    from .core import Core

__all__ = ["index_logic", "candidates_logic"]


def _request(core: Core, collection: str, p: Plan, **over: Any) -> dict[str, Any]:
    s = p.spec
    _, name = core.index_status(collection, p.info, p.nz)
    req = dict(query=index_query(p.qvec, unit=p.info.distance == "Cosine"), using=name, query_filter=s.filter,
               search_params=s.params, limit=s.limit, offset=s.offset, score_threshold=s.score_threshold,
               with_payload=s.with_payload, with_vectors=s.with_vector, shard_key_selector=s.shard_key)
    req.update(over)
    return req


def index_logic(core: Core, collection: str, plans: list[Plan], extra: dict[str, Any]) -> Logic:
    """Logic: run the plans of per-item-bias methods on the index vector; sets their results.

    The score Qdrant returns is the normalised score. With ``with_raw_score=True`` the
    index vector comes back too, and the raw similarity is ``score + bias``, the bias
    being minus the row's last component (exact, nothing else is read)."""
    reqs = []
    for p in plans:
        wv = merge_vectors(p.spec.with_vector, core.index_status(collection, p.info, p.nz)[1]) if p.raw_score \
            else p.spec.with_vector
        reqs.append(_request(core, collection, p, with_vectors=wv))
    res = yield from core.batch_call(collection, reqs, extra)
    key = core.payload_key
    for p, r in zip(plans, res):
        pts = r.points
        if not p.raw_score:  # Qdrant's scores, order, offset and threshold are the normalised ones
            p.result = shape_points(pts, p.spec, key)
            continue
        name = core.index_status(collection, p.info, p.nz)[1]
        raws = [pt.score + bias_of_row(pt.vector[name]) for pt in pts]
        build_result(p, pts, list(range(len(pts))), [pt.score for pt in pts], key, raws)


def candidates_logic(core: Core, collection: str, plans: list[Plan], extra: dict[str, Any]) -> Logic:
    """Logic: for gated plans, N candidates from the index (open gates) and the raw top-1;
    each plan is then restricted to those ids and handed to the client-side path
    (``mode="client"``, N = their number), which reranks them exactly."""
    reqs = []
    for p in plans:
        s = p.spec
        reqs.append(_request(core, collection, p, limit=p.n, offset=None, score_threshold=None,
                             with_payload=False, with_vectors=False))
        reqs.append(dict(query=s.query, using=s.using, query_filter=s.filter, search_params=s.params, limit=1,
                         with_payload=False, with_vectors=False, shard_key_selector=s.shard_key))
    res = yield from core.batch_call(collection, reqs, extra)
    for i, p in enumerate(plans):
        ids = list(dict.fromkeys([pt.id for pt in res[2 * i].points] + [pt.id for pt in res[2 * i + 1].points]))
        if not ids:
            p.result = empty_result()
            continue
        cond: list[Any] = [models.HasIdCondition(has_id=ids)]
        if p.spec.filter is not None:
            cond.append(p.spec.filter)
        p.spec = replace(p.spec, filter=models.Filter(must=cond))
        p.n = len(ids)
        p.mode = "client"
