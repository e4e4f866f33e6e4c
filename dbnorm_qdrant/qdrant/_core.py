"""The Qdrant layer's logic, free of I/O: configuration, planning, statistics, reranking.

:class:`Core` holds the state shared by :class:`~.client.DBNormClient` and
:class:`~.client.AsyncDBNormClient` (settings, the statistics cache, collection
metadata, activation sets). Its ``*_logic`` methods are generators driven by
:func:`._io.drive` / :func:`._io.adrive`.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, replace
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from qdrant_client import models
from qdrant_client.http.models import QueryResponse

from ..core.validation import InputError
from ..core.methods import Params, bias
from ..core.normalizer import BankNormalizer
from ..core.stats import GalleryStats
from . import server as _server
from ._io import Call, Logic
from ..banks import BankSet
from .sources import point_key, record_vector
from .cache import BIAS, COLUMN, FIELDS, StatsCache, record_to_row

__all__ = ["Core", "CollectionConfig", "RerankedPoint", "VectorInfo", "MODES"]

MODES = ("auto", "client", "server")
_UNSUPPORTED = (
    (models.SparseVector, "a sparse vector"),
    (models.RecommendQuery, "a recommend query"),
    (models.DiscoverQuery, "a discover query"),
    (models.ContextQuery, "a context query"),
    (models.OrderByQuery, "an order-by query"),
    (models.FusionQuery, "a fusion query"),
    (models.RrfQuery, "an RRF fusion query"),
    (models.FormulaQuery, "a formula query"),
    (models.SampleQuery, "a sample query"),
    (models.RelevanceFeedbackQuery, "a relevance-feedback query"),
    (models.TextQuery, "a text query"),
    (models.Document, "a Document (server-side inference)"),
    (models.Image, "an Image (server-side inference)"),
    (models.InferenceObject, "an inference object"),
)


class RerankedPoint(models.ScoredPoint):
    """A :class:`~qdrant_client.models.ScoredPoint` whose ``score`` is the normalised score.

    ``raw_score`` is the score Qdrant returned for the plain query (for Euclid: the
    distance). It lives only on the returned object; nothing is written anywhere.
    """

    raw_score: float


_ACT_Q, _ACT_G = COLUMN["act_q"], COLUMN["act_g"]
_new, _set = object.__new__, object.__setattr__
#: ``query_points`` keyword argument -> ``QueryRequest`` field, where they differ
_REQUEST_FIELD = {"query_filter": "filter", "search_params": "params", "with_vectors": "with_vector",
                  "shard_key_selector": "shard_key"}


def _response(points: list) -> QueryResponse:
    """``QueryResponse.model_construct(points=points)``, without its per-call overhead."""
    o = _new(QueryResponse)
    _set(o, "__dict__", {"points": points})
    _set(o, "__pydantic_fields_set__", {"points"})
    _set(o, "__pydantic_extra__", None)
    _set(o, "__pydantic_private__", None)
    return o


@dataclass(frozen=True)
class CollectionConfig:
    """Per-collection settings of :class:`~.client.DBNormClient` (``None``: the client's default).

    Attributes
    ----------
    normalizer:
        A :class:`BankNormalizer` (its banks and parameters), or
    banks, params:
        a :class:`BankSet` and :class:`Params` (or a dict of Params fields).
    candidates:
        N, the raw candidates reranked per query (default ``max(4 * limit, 100)``).
    mode:
        ``"auto"`` (server-side rescoring once the payload holds current statistics,
        else client-side), ``"client"`` or ``"server"`` (server-side whenever possible).
    enabled:
        False: queries on this collection pass straight through.
    """

    normalizer: BankNormalizer | None = None
    banks: BankSet | None = None
    params: Params | Mapping[str, Any] | None = None
    candidates: int | None = None
    mode: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class VectorInfo:
    collection: str
    using: str | None
    distance: str
    size: int

    @property
    def sign(self) -> float:
        """Raw score -> similarity: Euclid scores are distances (smaller is better)."""
        return -1.0 if self.distance == "Euclid" else 1.0


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


@dataclass
class Plan:
    spec: Spec
    info: VectorInfo
    nz: BankNormalizer
    qvec: np.ndarray | list[float] | None  # a plain list as given (converted only for centring)
    n: int
    mode: str
    fields: tuple[str, ...]
    result: models.QueryResponse | None = None


_OVERRIDE_KEYS = frozenset(("rerank", "candidates", "params", "mode", "method", "beta_q", "beta_g"))


class Overrides(NamedTuple):
    """Per-call settings (``None``: use the collection's)."""

    rerank: bool | None = None
    candidates: int | None = None
    params: Params | Mapping[str, Any] | None = None
    mode: str | None = None

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
            mode=kwargs.pop("mode", None),
        )


_NO_OVERRIDES = Overrides()


# ----------------------------------------------------------------- payload helpers
def _merge_payload(user: Any, key: str) -> Any:
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


def _user_wants_key(user: Any, key: str) -> bool:
    if user is True:
        return True
    if user is False or user is None:
        return False
    if isinstance(user, models.PayloadSelectorInclude):
        return key in user.include
    if isinstance(user, models.PayloadSelectorExclude):
        return key not in user.exclude
    return key in list(user)


def _strip_payload(payload: dict | None, user: Any, key: str) -> dict | None:
    if user is False or user is None:
        return None
    if payload is not None and key in payload and not _user_wants_key(user, key):
        payload = {k: v for k, v in payload.items() if k != key}
    return payload


def _merge_vectors(user: Any, using: str | None) -> Any:
    if user is True or using is None:
        return True
    if user is False or user is None:
        return [using]
    return list(dict.fromkeys(list(user) + [using]))


def _strip_vector(vector: Any, user: Any, using: str | None) -> Any:
    if user is False or user is None:
        return None
    if user is True or not isinstance(vector, dict):
        return vector
    return {k: v for k, v in vector.items() if k in user}


def _keys_of(pts: Sequence[Any]) -> list[int]:
    """The point keys (:func:`~.banks.point_key`) of the points: their ids when all are
    non-negative int64 integers (checked in one numpy conversion), else one by one."""
    ids = [pt.id for pt in pts]
    if ids and type(ids[0]) is int:  # (no array of UUID strings built just to be refused)
        a = np.array(ids)
        if a.dtype == np.int64 and a.min() >= 0:
            return ids
    return [point_key(i) for i in ids]


# ------------------------------------------------------------------------- core
class Core:
    def __init__(
        self,
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
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}.")
        if not isinstance(payload_key, str) or not payload_key or "." in payload_key:
            raise InputError(f"payload_key must be a non-empty string without dots, got {payload_key!r}.")
        self.default = CollectionConfig(normalizer=normalizer, banks=banks, params=params, candidates=candidates, mode=mode)
        self.collections: dict[str, CollectionConfig] = dict(collections or {})
        self.payload_key = payload_key
        self.backend = backend
        self.exact_activation_max = int(exact_activation_max)
        self.cache = StatsCache(cache_size)
        self._lock = threading.RLock()
        self._info: dict[tuple[str, str | None], VectorInfo] = {}
        self._nz: dict[tuple, BankNormalizer] = {}
        self._fields: dict[str, tuple[str, ...]] = {}
        self._act: dict[tuple[str, str | None, str], tuple[frozenset[int], frozenset[int]]] = {}
        self._payload_ready: set[tuple[str, str | None, str]] = set()
        self._warm: dict[tuple[str, str | None, str], bool] = {}

    # ------------------------------------------------------------- configuration
    def configure(self, collection: str, config: CollectionConfig | None = None, **changes: Any) -> None:
        """Set (or update with ``changes``) the configuration of one collection."""
        with self._lock:
            base = config or self.collections.get(collection) or CollectionConfig()
            self.collections[collection] = replace(base, **changes) if changes else base
            self._nz = {k: v for k, v in self._nz.items() if k[0] != collection}

    def _setting(self, collection: str, name: str) -> Any:
        c = self.collections.get(collection)
        v = getattr(c, name) if c is not None else None
        return getattr(self.default, name) if v is None else v

    def enabled(self, collection: str, ov: Overrides) -> bool:
        if ov.rerank is not None:
            return bool(ov.rerank)
        c = self.collections.get(collection)
        return c.enabled if c is not None else True

    def candidates(self, collection: str, limit: int, offset: int | None, ov: Overrides) -> int:
        for name, v in (("limit", limit), ("offset", offset or 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise InputError(f"{name} must be a non-negative integer, got {v!r}.")
        n = ov.candidates if ov.candidates is not None else self._setting(collection, "candidates")
        need = limit + (offset or 0)
        if n is None:
            n = max(4 * need, 100)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"candidates (N) must be a positive integer, got {n!r}.")
        return max(int(n), need)

    def mode(self, collection: str, ov: Overrides) -> str:
        m = ov.mode if ov.mode is not None else self._setting(collection, "mode")
        if m not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {m!r}.")
        return m

    # --------------------------------------------------------------- collections
    def info_logic(self, collection: str, using: str | None) -> Logic:
        ck = (collection, using)
        if ck in self._info:
            return self._info[ck]
        exists = yield Call("collection_exists", dict(collection_name=collection))
        if not exists:
            raise InputError(f"collection {collection!r} does not exist; check the name or create it first.")
        desc = yield Call("get_collection", dict(collection_name=collection))
        vectors = desc.config.params.vectors
        if isinstance(vectors, dict):
            if using is None and "" in vectors:
                vp = vectors[""]
            elif using is None:
                raise InputError(
                    f"collection {collection!r} has named vectors {sorted(vectors)}; pass using= one of them."
                )
            elif using not in vectors:
                raise InputError(
                    f"collection {collection!r} has no dense vector named {using!r} (sparse vectors cannot be "
                    f"reranked); choose one of {sorted(vectors)}."
                )
            else:
                vp = vectors[using]
        else:
            if using not in (None, ""):
                raise InputError(f"collection {collection!r} has a single unnamed vector; drop using={using!r}.")
            vp = vectors
        if vp.multivector_config is not None:
            raise InputError(
                f"vector {using!r} of {collection!r} is a multivector; bank normalisation needs one vector per point."
            )
        dist = vp.distance.value if hasattr(vp.distance, "value") else str(vp.distance)
        if dist not in ("Cosine", "Dot", "Euclid"):
            raise InputError(
                f"collection {collection!r} uses the {dist} distance, which bank normalisation does not support; "
                "use Cosine, Dot or Euclid."
            )
        info = VectorInfo(collection, using, dist, int(vp.size))
        with self._lock:
            self._info[ck] = info
        return info

    # ---------------------------------------------------------------- normalizers
    def normalizer(self, collection: str, info: VectorInfo, ov: Overrides | None = None) -> BankNormalizer:
        """The normalizer for a collection's vector (banks made unit-norm for Cosine)."""
        p_over = None if ov is None else ov.params
        key = (collection, info.using, repr(p_over) if p_over is not None else None)
        nz = self._nz.get(key)
        if nz is not None:
            return nz
        base_nz = self._setting(collection, "normalizer")
        banks = self._setting(collection, "banks")
        params = self._setting(collection, "params")
        if base_nz is not None:
            banks = BankSet(base_nz.query_bank, base_nz.gallery_bank, base_nz.gallery_bank_keys)
            params = base_nz.params if params is None else params
        if banks is None:
            raise InputError(
                f"no banks configured for collection {collection!r}; pass normalizer= or banks= to DBNormClient "
                "or configure(collection, ...)."
            )
        params = _as_params(params)
        if p_over is not None:
            over = p_over.to_dict() if isinstance(p_over, Params) else dict(p_over)
            params = params.with_(**over)
        if banks.dim != info.size:
            raise InputError(
                f"the banks have dimension {banks.dim} but vector {info.using or '(default)'} of collection "
                f"{collection!r} has size {info.size}; use banks embedded with the same model."
            )
        unit = info.distance == "Cosine"
        # Euclid: Qdrant returns distances; similarity = -distance, for the banks too
        sim = "neg_euclid" if info.distance == "Euclid" else "dot"
        if params.center and sim != "dot":
            raise InputError(
                f"collection {collection!r} uses the Euclid distance: centring (center=True) is defined for "
                "dot/cosine similarities only; use center=False."
            )
        backend = self.backend if base_nz is None else base_nz.backend.name
        if (
            base_nz is not None
            and base_nz.params == params
            and base_nz.similarity == sim
            and not (unit and not _is_unit(base_nz.query_bank, base_nz.gallery_bank))
        ):
            nz = base_nz
        else:
            nz = banks.normalizer(params, unit=unit, backend=backend, similarity=sim)
        with self._lock:
            self._nz[key] = nz
        return nz

    def stat_fields(self, nz: BankNormalizer) -> tuple[str, ...]:
        """The float statistics ``nz`` produces per item (activation flags excluded)."""
        f = self._fields.get(nz.fingerprint)
        if f is None:
            st = nz.gallery_stats(np.zeros((1, nz.dim), dtype=nz.query_bank.dtype), activation=False)
            f = tuple(x for x in st.present() if x not in ("act_q", "act_g"))
            self._fields[nz.fingerprint] = f
        return f

    def fill_bias(self, nz: BankNormalizer, rows: np.ndarray) -> np.ndarray:
        """Fill the ``bias`` column of cache rows (:func:`methods.bias`, computed once per
        point at insertion) for an additive method without centring; returns ``rows``."""
        p = nz.params
        if p.additive and not p.center and len(rows):
            st = GalleryStats(
                n=len(rows), fingerprint=nz.fingerprint, **{f: rows[:, COLUMN[f]] for f in self.stat_fields(nz)}
            )
            rows[:, BIAS] = bias(st, p)
        return rows

    def put_stats(self, collection: str, nz: BankNormalizer, keys: Sequence[int], st: GalleryStats) -> np.ndarray:
        """Cache the statistics ``st`` of points ``keys`` (with their bias); returns their rows."""
        rows = np.full((len(keys), len(FIELDS)), np.nan)
        for f in st.present():
            rows[:, COLUMN[f]] = getattr(st, f)
        self.fill_bias(nz, rows)
        self.cache.put_rows(collection, keys, rows, nz.fingerprint)
        return rows

    # ------------------------------------------------------------------- planning
    def plan(self, collection: str, spec: Spec, info: VectorInfo, ov: Overrides) -> Plan:
        q = spec.query
        if (
            type(q) is list and spec.prefetch is None and spec.lookup_from is None
            and len(q) == info.size and type(q[0]) is float
        ):  # a plain vector of the right size (the common case): none of the checks below apply
            return self._plan_vector(collection, spec, info, ov, q)
        if spec.prefetch is not None:
            raise InputError("queries with prefetch cannot be reranked; pass rerank=False to run them as they are.")
        if spec.lookup_from is not None:
            raise InputError("queries with lookup_from cannot be reranked; pass rerank=False.")
        if q is None:
            raise InputError("a query is required to rerank (query=None only scrolls); pass rerank=False.")
        for typ, what in _UNSUPPORTED:
            if isinstance(q, typ):
                raise InputError(
                    f"cannot rerank {what}: only dense nearest-neighbour queries (a vector, a NearestQuery or a "
                    "point id) can be; pass rerank=False to run it as it is."
                )
        qvec = None
        if isinstance(q, models.NearestQuery):
            if q.mmr is not None:
                raise InputError("cannot rerank an MMR query; pass rerank=False.")
            q = q.nearest
            if isinstance(q, models.SparseVector):
                raise InputError("cannot rerank a sparse vector query; pass rerank=False.")
        if isinstance(q, (int, str)) or hasattr(q, "hex"):
            qvec = None  # a point id: Qdrant uses that point's vector
        elif type(q) is list and len(q) == info.size and type(q[0]) is float:
            qvec = q  # a plain vector: converted only where centring needs it
        else:
            arr = np.asarray(q, dtype=np.float64)
            if arr.ndim != 1:
                raise InputError(
                    f"cannot rerank a query of shape {arr.shape} (a multivector?): pass one dense vector."
                )
            if arr.shape[0] != info.size:
                raise InputError(
                    f"the query has dimension {arr.shape[0]} but vector {info.using or '(default)'} of collection "
                    f"{info.collection!r} has size {info.size}."
                )
            qvec = arr
        return self._plan_vector(collection, spec, info, ov, qvec)

    def _plan_vector(self, collection: str, spec: Spec, info: VectorInfo, ov: Overrides, q: Any) -> Plan:
        nz = self.normalizer(collection, info, ov)
        if nz.params.center and q is None:
            raise InputError("centring needs the query vector: query by vector, not by point id.")
        n = self.candidates(collection, spec.limit, spec.offset, ov)
        mode = self.mode(collection, ov)
        if nz.params.center:
            mode = "client"
        elif mode == "auto":
            mode = "server" if (collection, info.using, nz.fingerprint) in self._payload_ready else "client"
        return Plan(spec, info, nz, q, n, mode, self.stat_fields(nz))

    # ---------------------------------------------------------------- activation
    def activation_logic(self, collection: str, info: VectorInfo, nz: BankNormalizer, refresh: bool = False) -> Logic:
        """Activation sets (point keys) of a gated method over the whole collection.

        A collection of at most ``exact_activation_max`` points is scrolled once with its
        vectors and the sets come from the kernels (:meth:`BankNormalizer.activation`:
        exact top-k, the same similarity as the statistics; one scroll instead of one
        query per bank vector). A larger one uses Qdrant itself: one query per bank
        vector (limit k), in batches. A sampled gallery-bank item is skipped in its own list.
        """
        ck = (collection, info.using, nz.fingerprint)
        if not refresh and ck in self._act:
            return self._act[ck]
        p = nz.params
        k = int(p.k)
        total = (yield Call("count", dict(collection_name=collection, exact=True))).count
        if total <= self.exact_activation_max:
            act_q, act_g = yield from self._exact_activation(collection, info, nz)
        else:
            act_q = yield from self._topk_union(collection, info, nz.query_bank, k, None)
            act_g: frozenset[int] = frozenset()
            if p.method == "dualdis":
                act_g = yield from self._topk_union(collection, info, nz.gallery_bank, k, nz.gallery_bank_keys)
        with self._lock:
            self._act[ck] = (act_q, act_g)
        return act_q, act_g

    def _exact_activation(self, collection: str, info: VectorInfo, nz: BankNormalizer, page: int = 2048) -> Logic:
        keys: list[int] = []
        vecs: list[Any] = []
        offset = None
        while True:
            recs, offset = yield Call(
                "scroll",
                dict(collection_name=collection, limit=page, offset=offset, with_payload=False,
                     with_vectors=True if info.using is None else [info.using]),
            )
            for r in recs:
                v = record_vector(r, info.using)
                if v is not None:
                    keys.append(point_key(r.id))
                    vecs.append(v)
            if offset is None:
                break
        if not vecs:
            return frozenset(), frozenset()
        ks = np.asarray(keys, dtype=np.int64)
        a_q, a_g = nz.activation(np.asarray(vecs, dtype=np.float32), keys=ks)
        return frozenset(ks[a_q].tolist()), frozenset(ks[a_g].tolist())

    def _topk_union(self, collection: str, info: VectorInfo, bank: np.ndarray, k: int, keys: Any, chunk: int = 256) -> Logic:
        out: set[int] = set()
        extra = 1 if keys is not None else 0
        for i0 in range(0, len(bank), chunk):
            reqs = [
                models.QueryRequest(query=row.tolist(), using=info.using, limit=k + extra, with_payload=False)
                for row in bank[i0 : i0 + chunk]
            ]
            res = yield Call("query_batch_points", dict(collection_name=collection, requests=reqs))
            for j, r in enumerate(res):
                ks = [point_key(pt.id) for pt in r.points]
                if keys is not None:
                    ks = [x for x in ks if x != keys[i0 + j]]
                out.update(ks[:k])
        return frozenset(out)

    def forget(self, collection: str) -> None:
        """Drop everything known about a collection (cache, activation sets, payload state)."""
        with self._lock:
            self.cache.clear(collection)
            self._info = {k: v for k, v in self._info.items() if k[0] != collection}
            self._nz = {k: v for k, v in self._nz.items() if k[0] != collection}
            self._act = {k: v for k, v in self._act.items() if k[0] != collection}
            self._payload_ready = {k for k in self._payload_ready if k[0] != collection}
            self._warm = {k: v for k, v in self._warm.items() if k[0] != collection}

    # ------------------------------------------------------------ the query path
    def query_logic(
        self, collection: str, specs: Sequence[Spec], ov: Overrides, extra: dict[str, Any]
    ) -> Logic:
        """Rerank a batch of queries on one collection; returns a list of QueryResponse."""
        if not self.enabled(collection, ov):
            res = yield Call(
                "query_batch_points", dict(collection_name=collection, requests=[s.to_request() for s in specs], **extra)
            )
            return res
        plans = []
        for s in specs:
            info = self._info.get((collection, s.using))
            if info is None:
                info = yield from self.info_logic(collection, s.using)
            plans.append(self.plan(collection, s, info, ov))
        server_plans = [p for p in plans if p.mode == "server"]
        if server_plans:
            yield from self._server_logic(collection, server_plans, extra)
        client_plans = [p for p in plans if p.result is None]
        if client_plans:
            yield from self._client_logic(collection, client_plans, extra)
        return [p.result for p in plans]

    def _batch_call(self, collection: str, reqs: list[dict[str, Any]], extra: dict[str, Any]) -> Logic:
        """One candidate query per request (a dict of ``query_points`` keyword arguments):
        ``query_points`` for a single one (no request models, no deep copy), else one
        ``query_batch_points``."""
        if len(reqs) == 1:
            resp = yield Call("query_points", dict(reqs[0], collection_name=collection, **extra))
            return [resp]
        requests = [models.QueryRequest(**{_REQUEST_FIELD.get(k, k): v for k, v in r.items()}) for r in reqs]
        res = yield Call("query_batch_points", dict(collection_name=collection, requests=requests, **extra))
        return res

    def _client_logic(self, collection: str, plans: list[Plan], extra: dict[str, Any]) -> Logic:
        key = self.payload_key
        reqs = []
        for p in plans:
            s = p.spec
            warm = self._warm.get((collection, p.info.using, p.nz.fingerprint), False)
            reqs.append(
                dict(
                    query=s.query, using=s.using, query_filter=s.filter, search_params=s.params, limit=p.n,
                    with_payload=_merge_payload(s.with_payload, key),
                    with_vectors=_merge_vectors(s.with_vector, p.info.using) if not warm else s.with_vector,
                    shard_key_selector=s.shard_key,
                )
            )
        responses = yield from self._batch_call(collection, reqs, extra)
        # statistics of every candidate: cache, then payload, then vectors (fetched or retrieved);
        # held as one row per candidate (columns cache.FIELDS), gathered from the cache at once
        state: list[tuple[np.ndarray, set[int], list[int]]] = []  # (rows, positions still missing, keys)
        todo: dict[str, dict[int, tuple[Any, Any]]] = {}  # fp -> key -> (id, vector or None)
        nzs: dict[str, BankNormalizer] = {}
        cache = self.cache
        for p, resp in zip(plans, responses):
            fp = p.nz.fingerprint
            nzs[fp] = p.nz
            pts = resp.points
            # a hit by the raw ids is exact: an int id in [0, 2**63) is its own key, and the
            # keys of other ids (UUID strings) are ints, never equal to them
            keys = [pt.id for pt in pts]
            if pts:
                # the payload is scanned only when a candidate is missing from the cache, or
                # (to notice a precompute and switch "auto" to the server path) when the
                # best candidate carries current statistics
                pr0 = (pts[0].payload or {}).get(key)
                scan0 = isinstance(pr0, dict) and pr0.get("fp") == fp
                params = p.nz.params
                if not scan0 and params.additive and not params.center:
                    # the common case: every candidate cached (under an integer id) with its
                    # bias; the cache reranks them in one compiled call
                    if self._cached_top(collection, p, pts, keys):
                        state.append(None)
                        continue
            else:
                scan0 = False
            rows, missing = cache.get_rows(collection, keys, fp)
            if missing:
                keys = _keys_of(pts)
                rows, missing = cache.get_rows(collection, keys, fp)
            if rows is None:
                rows = np.full((len(pts), len(FIELDS)), np.nan)
            miss = set(missing)
            if miss or scan0:
                pk: list[int] = []
                pj: list[int] = []
                n_payload = 0
                for j, pt in enumerate(pts):
                    pr = (pt.payload or {}).get(key)
                    if isinstance(pr, dict) and pr.get("fp") == fp:
                        n_payload += 1
                        if j in miss and all(f in pr for f in p.fields):
                            rows[j] = record_to_row(pr)
                            miss.discard(j)
                            pk.append(keys[j])
                            pj.append(j)
                    if j in miss:
                        todo.setdefault(fp, {})[keys[j]] = (
                            pt.id, record_vector(pt, p.info.using) if pt.vector is not None else None
                        )
                if pk:
                    sub = self.fill_bias(p.nz, rows[pj])
                    rows[pj] = sub
                    cache.put_rows(collection, pk, sub, fp)
                if n_payload == len(pts) and not p.nz.params.center:
                    with self._lock:
                        self._payload_ready.add((collection, p.info.using, fp))
                self._warm[(collection, p.info.using, fp)] = not miss
            elif pts:
                self._warm[(collection, p.info.using, fp)] = True
            state.append((rows, miss, keys))
        computed: dict[str, tuple[dict[int, int], np.ndarray]] = {}  # fp -> (key -> row, rows)
        for fp, items in todo.items():
            nz = nzs[fp]
            using = next(p.info.using for p in plans if p.nz.fingerprint == fp)
            need = [(k, pid) for k, (pid, v) in items.items() if v is None]
            vecs = {k: v for k, (pid, v) in items.items() if v is not None}
            if need:
                got = yield Call(
                    "retrieve",
                    dict(collection_name=collection, ids=[pid for _, pid in need], with_payload=False,
                         with_vectors=True if using is None else [using]),
                )
                for r in got:
                    v = record_vector(r, using)
                    if v is not None:
                        vecs[point_key(r.id)] = v
            if not vecs:
                continue
            kl = list(vecs)
            ks = np.asarray(kl, dtype=np.int64)
            st = nz.gallery_stats(np.asarray(list(vecs.values()), dtype=np.float32), keys=ks, activation=False)
            new = self.put_stats(collection, nz, kl, st)
            computed[fp] = ({k: i for i, k in enumerate(kl)}, new)
        for p, resp, st_ in zip(plans, responses, state):
            if st_ is None:  # reranked from the cache already
                continue
            rows, miss, keys = st_
            fp = p.nz.fingerprint
            if miss and fp in computed:
                pos, new = computed[fp]
                for j in sorted(miss):
                    i = pos.get(keys[j])
                    if i is not None:
                        rows[j] = new[i]
                        miss.discard(j)
            yield from self._finish_client(p, resp, rows, miss)

    def _cached_top(self, collection: str, p: Plan, pts: list[Any], keys: list[Any]) -> bool:
        """Rerank ``pts`` (``keys``: their ids) from the cached biases
        (:meth:`StatsCache.additive_topk`) and set ``p.result``; False (nothing done)
        unless every candidate is cached with its bias."""
        if type(keys[0]) is not int:  # UUIDs: their point keys
            keys = _keys_of(pts)
        s = p.spec
        top = self.cache.additive_topk(
            collection, keys, [pt.score for pt in pts], p.nz.fingerprint, p.info.sign, s.offset or 0, s.limit
        )
        if top is None:
            return False
        wk = (collection, p.info.using, p.nz.fingerprint)
        if not self._warm.get(wk):
            self._warm[wk] = True
        self._result(p, pts, *top)
        return True

    def _finish_client(self, p: Plan, resp: models.QueryResponse, rows: np.ndarray, miss: set[int]) -> Logic:
        """Score the candidates from their statistics ``rows`` (``miss``: positions without
        any, dropped), sort and build the result."""
        s = p.spec
        pts = resp.points
        if miss:  # a point deleted meanwhile drops out
            keep = [j for j in range(len(pts)) if j not in miss]
            pts = [pts[j] for j in keep]
            rows = rows[keep]
        if not pts:
            p.result = QueryResponse(points=[])
            return
        n = len(pts)
        raw = np.array([pt.score for pt in pts], dtype=np.float64)
        sim = raw if p.info.sign > 0 else -raw
        params = p.nz.params
        b = rows[:, BIAS] if params.additive and not params.center else None
        if b is not None and b.sum() == b.sum():  # not NaN: every bias filled at insertion
            norm = sim - b  # an additive method: s - bias(g) (methods.score)
        else:
            top1 = int(np.argmax(sim))
            st = GalleryStats(n=n, fingerprint=p.nz.fingerprint, **{f: rows[:, COLUMN[f]] for f in p.fields})
            if params.gated:
                a_q, a_g = rows[top1, _ACT_Q], rows[top1, _ACT_G]
                a_q = None if a_q != a_q else bool(a_q)  # NaN: not in the record
                a_g = None if a_g != a_g else bool(a_g)
                if a_q is None or (params.method == "dualdis" and a_g is None):
                    sets = yield from self.activation_logic(p.info.collection, p.info, p.nz)
                    k1 = point_key(pts[top1].id)
                    a_q, a_g = k1 in sets[0], k1 in sets[1]
                st.act_q = np.zeros(n, dtype=bool)
                st.act_g = np.zeros(n, dtype=bool)
                st.act_q[top1], st.act_g[top1] = bool(a_q), bool(a_g)
            # the query vector matters only to centring; a Cosine collection scores the unit
            # query, so centring must see the unit query too (users may send unnormalised vectors)
            q = None
            if params.center:
                q = np.asarray(p.qvec, dtype=np.float64)
                if p.info.distance == "Cosine":
                    q = q / max(float(np.linalg.norm(q)), 1e-12)
            norm = p.nz.rerank(q, sim, st, top1=top1)
        off = s.offset or 0
        # best first, ties by candidate order (nlargest is a stable sort, reversed);
        # only the top (offset + limit) are kept
        if norm.sum() == norm.sum():  # no NaN: a stable argsort of -norm orders like nlargest
            top = np.argsort(-norm, kind="stable")[off : off + s.limit]
            order, scores = top.tolist(), norm[top].tolist()
        else:
            nl = norm.tolist()
            order = heapq.nlargest(off + s.limit, range(n), key=nl.__getitem__)[off:]
            scores = [nl[j] for j in order]
        self._result(p, pts, order, scores)

    def _result(
        self, p: Plan, pts: list[Any], order: list[int], scores: list[float], raws: list[float] | None = None
    ) -> None:
        """Set ``p.result``: candidates ``order`` (best first, offset applied) with their
        normalised ``scores`` (and raw scores ``raws``, default their Qdrant scores), cut
        at the score threshold."""
        s = p.spec
        thr = s.score_threshold
        if thr is not None:
            for i, v in enumerate(scores):
                if v < thr:
                    order, scores = order[:i], scores[:i]
                    break
        p.result = _response(self._points([pts[j] for j in order], scores, s, raws))

    def _points(
        self, pts: list[Any], scores: list[float], s: Spec, raws: list[float] | None = None
    ) -> list[RerankedPoint]:
        """Qdrant's returned points made :class:`RerankedPoint` in place (each is a fresh
        object of this query's response, referenced nowhere else): the normalised
        ``scores``, the raw scores (``raws``, default: their Qdrant scores), and the
        payload and vector as ``s`` asked for (the layer may have fetched more)."""
        wp, wv = s.with_payload, s.with_vector
        strip_p = wp is not True  # True: as Qdrant returned it, the reserved key included
        no_v = wv is False or wv is None
        strip_v = not no_v and wv is not True
        for i, pt in enumerate(pts):
            d = pt.__dict__
            d["raw_score"] = float(d["score"] if raws is None else raws[i])
            d["score"] = scores[i]
            if strip_p:
                d["payload"] = _strip_payload(d["payload"], wp, self.payload_key)
            if no_v:
                d["vector"] = None
            elif strip_v:
                d["vector"] = _strip_vector(d["vector"], wv, s.using)
            pt.__pydantic_fields_set__.add("raw_score")
            _set(pt, "__class__", RerankedPoint)
        return pts

    # ------------------------------------------------------------ server path
    def _server_logic(self, collection: str, plans: list[Plan], extra: dict[str, Any]) -> Logic:
        key = self.payload_key
        gates: list[tuple[bool, bool]] = [(True, True)] * len(plans)
        gated = [i for i, p in enumerate(plans) if p.nz.params.gated]
        if gated:
            reqs = [
                dict(query=plans[i].spec.query, using=plans[i].spec.using, query_filter=plans[i].spec.filter,
                     search_params=plans[i].spec.params, limit=1, with_payload=[key], with_vectors=False,
                     shard_key_selector=plans[i].spec.shard_key)
                for i in gated
            ]
            tops = yield from self._batch_call(collection, reqs, extra)
            for i, r in zip(gated, tops):
                if not r.points:
                    plans[i].result = QueryResponse(points=[])
                    continue
                pr = (r.points[0].payload or {}).get(key)
                if not (isinstance(pr, dict) and pr.get("fp") == plans[i].nz.fingerprint and "act_q" in pr):
                    plans[i].mode = "client"  # no current statistics: the client path computes them
                    continue
                gates[i] = (bool(pr.get("act_q")), bool(pr.get("act_g", False)))
        todo = [i for i, p in enumerate(plans) if p.mode == "server" and p.result is None]
        if not todo:
            return
        reqs = []
        for i in todo:
            p, s = plans[i], plans[i].spec
            reqs.append(
                dict(
                    prefetch=models.Prefetch(query=s.query, using=s.using, filter=s.filter, params=s.params, limit=p.n),
                    query=_server.formula_query(p.nz.params, key, p.info.sign, *gates[i], fingerprint=p.nz.fingerprint),
                    # offset and threshold are applied here, after checking that every point
                    # up to offset + limit has current statistics (a stale or missing one is
                    # pushed to the very top by the formula, so it cannot hide behind the offset)
                    limit=(s.offset or 0) + s.limit,
                    with_payload=_merge_payload(s.with_payload, key), with_vectors=s.with_vector,
                    shard_key_selector=s.shard_key,
                )
            )
        res = yield from self._batch_call(collection, reqs, extra)
        for i, r in zip(todo, res):
            p = plans[i]
            fp = p.nz.fingerprint
            raws: list[float] | None = []
            for pt in r.points:
                pr = (pt.payload or {}).get(key)
                if not (isinstance(pr, dict) and pr.get("fp") == fp):
                    raws = None  # a candidate without current statistics: redo on the client
                    break
                raws.append(p.info.sign * _server.raw_similarity(pt.score, pr, p.nz.params, *gates[i]))
            if raws is None:
                p.mode = "client"
                with self._lock:
                    self._payload_ready.discard((collection, p.info.using, fp))
            else:  # the formula's score is the normalised score; offset and threshold now
                pts = r.points
                order = list(range(min(p.spec.offset or 0, len(pts)), len(pts)))
                self._result(p, pts, order, [pts[j].score for j in order], [raws[j] for j in order])


def _as_params(params: Any) -> Params:
    if params is None:
        return Params()
    if isinstance(params, Params):
        return params
    if isinstance(params, Mapping):
        return Params(**params)
    raise InputError(f"params must be a Params or a dict of its fields, got {type(params).__name__}.")


def _is_unit(*banks: np.ndarray | None) -> bool:
    for b in banks:
        if b is not None and not np.allclose(np.linalg.norm(b[: min(len(b), 1000)], axis=1), 1.0, atol=1e-3):
            return False
    return True
