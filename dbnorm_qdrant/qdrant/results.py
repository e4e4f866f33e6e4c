"""The returned results: qdrant-client's own ``ScoredPoint`` / ``QueryResponse``.

A reranked query returns the points Qdrant returned for the candidate query (fresh
objects of that response, referenced nowhere else), reordered, with ``score`` set to
the normalised score (by plain field assignment, pydantic's supported way to change a
model) and the payload and vector cut back to what the user asked for (the layer may
have fetched more). The raw score (what Qdrant returned for the plain query) is kept
only when asked with ``with_raw_score=True``: in the returned point's payload, under the
layer's own key, ``payload[payload_key]["raw_score"]``; read it with :func:`raw_score`.
Nothing is written to Qdrant.
"""

from __future__ import annotations

from typing import Any, Sequence

from qdrant_client import models
from qdrant_client.http.models import QueryResponse

from ..core.index import INDEX_PREFIX
from .planning import Plan, Spec

__all__ = ["raw_score", "build_result", "cut_at", "empty_result", "shape_points", "strip_index_vectors", "RAW_SCORE"]

#: the field of ``payload[payload_key]`` that holds the raw score (``with_raw_score=True``)
RAW_SCORE = "raw_score"


def raw_score(point: models.ScoredPoint, payload_key: str = "_dbnorm") -> float | None:
    """The raw score of a point a reranked query returned with ``with_raw_score=True``
    (the score Qdrant gave it for the plain query; for Euclid, the distance), else ``None``
    (not asked for, or a query run with ``rerank=False``, whose ``score`` is the raw score).

    ``payload_key`` is the wrapper's (``DBNormClient(..., payload_key=)``; default ``"_dbnorm"``).
    """
    rec = (point.payload or {}).get(payload_key)
    if isinstance(rec, dict):
        v = rec.get(RAW_SCORE)
        return None if v is None else float(v)
    return None


def _wants_key(user: Any, key: str) -> bool:
    if user is True:
        return True
    if user is False or user is None:
        return False
    if isinstance(user, models.PayloadSelectorInclude):
        return key in user.include
    if isinstance(user, models.PayloadSelectorExclude):
        return key not in user.exclude
    return key in list(user)


def _payload(payload: dict | None, user: Any, key: str, raw: float | None) -> dict | None:
    """The payload as the user asked for it (``key`` stripped unless asked for), plus the
    raw score under ``key`` when ``raw`` is given (a new dict: the stored statistics, if
    returned, are copied, never changed)."""
    if user is False or user is None:
        payload = None
    elif payload is not None and key in payload and not _wants_key(user, key):
        payload = {k: v for k, v in payload.items() if k != key}
    if raw is None:
        return payload
    out = dict(payload or {})
    cur = out.get(key)
    out[key] = {**cur, RAW_SCORE: raw} if isinstance(cur, dict) else {RAW_SCORE: raw}
    return out


def strip_index_vectors(vector: Any) -> Any:
    """A returned point's vectors without the layer's index vectors (docs/index.md); a lone
    unnamed vector comes back bare, as Qdrant returns it when it is the only one."""
    if not isinstance(vector, dict) or not any(k.startswith(INDEX_PREFIX) for k in vector):
        return vector
    out = {k: v for k, v in vector.items() if not k.startswith(INDEX_PREFIX)}
    return out[""] if set(out) == {""} else out


def _vector(vector: Any, user: Any) -> Any:
    if user is False or user is None:
        return None
    if not isinstance(vector, dict):
        return vector
    if user is True:
        return strip_index_vectors(vector)
    return {k: v for k, v in vector.items() if k in user}


def empty_result() -> QueryResponse:
    return QueryResponse(points=[])


def cut_at(order: list[int], scores: list[float], threshold: float | None) -> tuple[list[int], list[float]]:
    """The ranking ``order`` / ``scores`` (best first) cut before the first normalised score
    under ``threshold`` (Qdrant's ``score_threshold``, applied to the normalised scores)."""
    if threshold is not None:
        for i, v in enumerate(scores):
            if v < threshold:
                return order[:i], scores[:i]
    return order, scores


def build_result(
    p: Plan, pts: list[Any], order: list[int], scores: list[float], key: str, raws: Sequence[float] | None = None
) -> None:
    """Set ``p.result``: candidates ``pts[order]`` (best first, offset applied) with their
    normalised ``scores``, cut at the score threshold. The raw scores (``raws``, aligned
    with ``pts``; default the candidates' Qdrant scores) go into the payload when the plan
    asks for them. (A new ``QueryResponse``: the candidate response is left to be freed
    with the client's call, as a plain query's is.)"""
    order, scores = cut_at(order, scores, p.spec.score_threshold)
    out = [pts[j] for j in order]
    if p.raw_score:
        rs = [float(pt.score) for pt in out] if raws is None else [float(raws[j]) for j in order]
    else:
        rs = None
    _finish_points(out, scores, p.spec, key, rs)
    p.result = QueryResponse(points=out)


def shape_points(pts: list[Any], s: Spec, key: str) -> QueryResponse:
    """A ``QueryResponse`` of ``pts`` as ranked, scores kept, with the payload and vectors cut
    back to what ``s`` asked for (the reserved key and index vectors out)."""
    wp, wv = s.with_payload, s.with_vector
    no_v = wv is False or wv is None
    for pt in pts:
        if pt.payload is not None and wp is not True:
            new = _payload(pt.payload, wp, key, None)
            if new is not pt.payload:
                pt.payload = new
        if pt.vector is not None:
            new = None if no_v else _vector(pt.vector, wv)
            if new is not pt.vector:
                pt.vector = new
    return QueryResponse(points=pts)


def _finish_points(pts: list[Any], scores: list[float], s: Spec, key: str, raws: list[float] | None) -> None:
    """Give each point its normalised score, and its payload and vector as ``s`` asked."""
    wp, wv = s.with_payload, s.with_vector
    keep_p = wp is True and raws is None  # as Qdrant returned it, the reserved key included
    no_v = wv is False or wv is None
    strip_v = not no_v  # a list: what it names; True: all but the index vectors
    for i, pt in enumerate(pts):
        pt.score = scores[i]
        if not keep_p:
            new = _payload(pt.payload, wp, key, None if raws is None else raws[i])
            if new is not pt.payload:
                pt.payload = new
        if no_v:
            if pt.vector is not None:
                pt.vector = None
        elif strip_v:
            pt.vector = _vector(pt.vector, wv)
