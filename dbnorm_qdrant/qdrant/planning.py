"""From a call's arguments to a plan: what to ask Qdrant for, and how to rerank it.

:class:`Spec` is one query's request, read from ``query_points`` keyword arguments
(:func:`spec_from_kwargs`) or a ``QueryRequest``; :class:`Overrides` are the per-call
options the layer adds (``rerank``, ``candidates``, ``method``, ``with_raw_score``, ...);
:func:`query_vector` checks that a query can be reranked and returns its vector;
:class:`Plan` is what the client-side or server-side path executes. The payload and
vector selectors of a candidate query are the user's plus what the layer needs
(:func:`merge_payload`, :func:`merge_vectors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np
from qdrant_client import models

from ..core.methods import Params
from ..core.normalizer import BankNormalizer
from ..validation import check_vectors
from ..errors import InputError
from .config import VectorInfo

__all__ = ["Spec", "Plan", "Overrides", "spec_from_kwargs", "extra_kwargs", "query_vector", "merge_payload",
           "merge_vectors", "REQUEST_FIELD"]

#: ``query_points`` keyword argument -> ``QueryRequest`` field, where they differ
REQUEST_FIELD = {"query_filter": "filter", "search_params": "params", "with_vectors": "with_vector",
                 "shard_key_selector": "shard_key"}
#: client-level keyword arguments passed through to the wrapped client
_CLIENT_KEYS = ("consistency", "timeout")
@dataclass
class Spec:
    """One query's request, normalised from ``query_points`` kwargs or a ``QueryRequest``."""

    query: Any
    using: str | None = None
    filter: Any = None
    params: Any = None
    limit: int = 10
    offset: int | None = None
    with_payload: Any = False
    with_vector: Any = False
    score_threshold: float | None = None
    shard_key: Any = None
    prefetch: Any = None
    lookup_from: Any = None

    @classmethod
    def from_request(cls, r: models.QueryRequest) -> "Spec":
        return cls(
            query=r.query, using=r.using, filter=r.filter, params=r.params,
            limit=10 if r.limit is None else r.limit, offset=r.offset,
            with_payload=False if r.with_payload is None else r.with_payload,
            with_vector=False if r.with_vector is None else r.with_vector,
            score_threshold=r.score_threshold, shard_key=r.shard_key, prefetch=r.prefetch,
            lookup_from=r.lookup_from,
        )

    def to_request(self) -> models.QueryRequest:
        return models.QueryRequest(
            query=self.query, using=self.using, filter=self.filter, params=self.params, limit=self.limit,
            offset=self.offset, with_payload=self.with_payload, with_vector=self.with_vector,
            score_threshold=self.score_threshold, shard_key=self.shard_key, prefetch=self.prefetch,
            lookup_from=self.lookup_from,
        )


def spec_from_kwargs(query: Any, kw: dict[str, Any]) -> Spec:
    """A :class:`Spec` from ``query_points`` keyword arguments (taken out of ``kw``)."""
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


def extra_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """The client-level keyword arguments passed through (``consistency``, ``timeout``);
    anything else left in ``kw`` is an error."""
    if not kw:
        return {}
    extra = {k: kw.pop(k) for k in _CLIENT_KEYS if k in kw and kw[k] is not None}
    for k in _CLIENT_KEYS:
        kw.pop(k, None)
    if kw:
        raise InputError(
            f"unexpected keyword argument(s) {sorted(kw)} for a reranked query; the per-call options are "
            f"{', '.join(sorted(_OVERRIDE_KEYS))} (plus query_points' own arguments)."
        )
    return extra


_OVERRIDE_KEYS = frozenset(("rerank", "candidates", "params", "mode", "method", "beta_q", "beta_g", "with_raw_score"))


class Overrides(NamedTuple):
    """Per-call settings (``None``: use the collection's).

    ``with_raw_score=True`` puts each returned point's raw score (what Qdrant returned
    for the plain query) in the returned payload, ``payload[payload_key]["raw_score"]``
    (see :func:`~.results.raw_score`); nothing is written to Qdrant.
    """

    rerank: bool | None = None
    candidates: int | None = None
    params: Params | Mapping[str, Any] | None = None
    mode: str | None = None
    with_raw_score: bool = False

    @classmethod
    def pop(cls, kwargs: dict[str, Any]) -> "Overrides":
        """Take the per-call options out of a call's keyword arguments."""
        if kwargs.keys().isdisjoint(_OVERRIDE_KEYS):
            return _NO_OVERRIDES
        params = kwargs.pop("params", None)
        method = kwargs.pop("method", None)
        betas = {k: kwargs.pop(k) for k in ("beta_q", "beta_g") if k in kwargs}
        if method is not None or betas:
            params = dict(params.to_dict() if isinstance(params, Params) else (params or {}))
            if method is not None:
                params["method"] = method
            params.update(betas)
        return cls(
            rerank=kwargs.pop("rerank", None), candidates=kwargs.pop("candidates", None), params=params,
            mode=kwargs.pop("mode", None), with_raw_score=bool(kwargs.pop("with_raw_score", False)),
        )


_NO_OVERRIDES = Overrides()


@dataclass
class Plan:
    """One query as the layer runs it: its spec, target vector, normalizer, query vector
    (``None`` for a query by point id), N, path (``"client"``/``"server"``/``"index"``), the statistics
    fields it reads, and (once done) its result."""

    spec: Spec
    info: VectorInfo
    nz: BankNormalizer
    qvec: np.ndarray | list[float] | None  # a plain list as given (converted only for centering)
    n: int
    mode: str
    fields: tuple[str, ...]
    raw_score: bool = False
    result: models.QueryResponse | None = None
    #: the client path was asked for (not chosen by "auto"): a warm cache then skips the payload
    pinned: bool = False


def _check_plain(q: list[float], what: str, nonzero: bool) -> None:
    """A plain list of floats: refused when it holds NaN/inf or (with ``nonzero``) only zeros.
    Cheap on the hot path (a sum and an ``any``); the exact message comes from
    :func:`check_vectors`. A list holding a non-number (a str, ``None``) is refused too."""
    try:
        s = sum(q)
    except TypeError:
        bad = next((i for i, x in enumerate(q) if not isinstance(x, (int, float, np.number))), 0)
        raise InputError(
            f"{what} must be a list of numbers, but element {bad} is {q[bad]!r}; pass the embedding as floats."
        ) from None
    if s - s != 0.0 or (nonzero and not any(q)):
        check_vectors(np.asarray(q, dtype=np.float64), what, nonzero=nonzero)


def _nonzero(info: VectorInfo) -> bool:
    """A zero query vector has no direction under Cosine/Dot; a Euclid distance is defined for it."""
    return info.distance != "Euclid"


def query_vector(spec: Spec, info: VectorInfo, what: str = "query") -> Any:
    """The query vector of one dense nearest-neighbour query: a plain list of floats as given,
    a numpy array, or ``None`` for a query by point id (Qdrant uses that point's vector).

    Every other form (prefetch, fusion, sparse, MMR, recommend, ...) is the query planner's
    (:mod:`.tree`), which refuses or unwraps it before a plan is made. Refused here with an
    :class:`InputError`: a multivector, and a vector with NaN, inf, only zeros or the wrong
    dimension.
    """
    q = spec.query
    if type(q) is list and len(q) == info.size and type(q[0]) is float:  # a plain vector (the common case)
        _check_plain(q, what, _nonzero(info))
        return q
    if isinstance(q, models.NearestQuery):
        q = q.nearest
    if isinstance(q, (int, str)) or hasattr(q, "hex"):
        return None  # a point id: Qdrant uses that point's vector
    if type(q) is list and not any(isinstance(x, (list, tuple, np.ndarray)) for x in q):
        _check_plain(q, what, False)  # a flat list not of floats: a str or None in it -> InputError
    arr = np.asarray(q, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"cannot rerank a query of shape {arr.shape} (a multivector?): pass one dense vector.")
    check_vectors(arr, what, dim=info.size, nonzero=_nonzero(info),
                  dim_of=f"vector {info.using or '(unnamed)'} of collection {info.collection!r}")
    return q if type(q) is list else arr


def merge_payload(user: Any, key: str) -> Any:
    """A payload selector that returns what the user asked for plus ``key``."""
    if user is True:
        return True
    if user is False or user is None:
        return [key]
    if isinstance(user, models.PayloadSelectorInclude):
        return models.PayloadSelectorInclude(include=list(user.include) + [key])
    if isinstance(user, models.PayloadSelectorExclude):
        return models.PayloadSelectorExclude(exclude=[k for k in user.exclude if k != key])
    return list(user) + [key]


def merge_vectors(user: Any, using: str | None) -> Any:
    """A vector selector that returns what the user asked for plus the vector ``using``."""
    if user is True or using is None:
        return True
    if user is False or user is None:
        return [using]
    return list(dict.fromkeys(list(user) + [using]))
