"""The state the wrappers share, and the query pipeline, free of I/O.

:class:`Core` holds what :class:`~.client.DBNormClient` and
:class:`~.client.AsyncDBNormClient` share (their :class:`~.config.Settings`, the
statistics cache, collection metadata, normalizers, activation sets) and plans each query
(:mod:`.planning`); :mod:`.query` runs a batch through the two rerank paths. Its
``*_logic`` methods are generators driven by :func:`._io.drive` / :func:`._io.adrive`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
from qdrant_client import models

from ..banks import BankSet
from ..core.index import INDEX_PREFIX, index_form, index_name
from ..core.methods import Params, bias
from ..core.normalizer import BankNormalizer
from ..core.spec import stat_fields
from ..core.stats import STAT_FIELDS, GalleryStats
from ..errors import InputError
from ._io import Call, Logic
from .cache import BIAS, COLUMN, FIELDS, StatsCache
from .config import MODES, CollectionConfig, Settings, VectorInfo, as_params, check_banks_fit, vector_info
from .planning import REQUEST_FIELD, Overrides, Plan, Spec, query_vector
from .quarantine import Quarantine
from .sources import point_key, record_vector, scroll_pages, vector_selector

__all__ = ["Core"]

logger = logging.getLogger(__name__)

#: (collection, vector name, fingerprint): what activation sets, payload state and warmth are kept by
StateKey = tuple[str, "str | None", str]


class Core:
    """Settings, caches and the query pipeline shared by the sync and async wrappers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default = settings.default()
        self.collections: dict[str, CollectionConfig] = dict(settings.collections or {})
        self.payload_key = settings.payload_key
        self.backend = settings.backend
        self.exact_activation_max = int(settings.exact_activation_max)
        self.cache = StatsCache(settings.cache_size)
        self.quarantine = Quarantine(settings.payload_key, settings.quarantine)
        self._lock = threading.RLock()
        self._info: dict[tuple[str, str | None], VectorInfo] = {}
        self._nz: dict[tuple, BankNormalizer] = {}
        self._fields: dict[str, tuple[str, ...]] = {}
        self._act: dict[StateKey, tuple[frozenset[int], frozenset[int]]] = {}
        self._payload_ready: set[StateKey] = set()
        #: stored statistics without the fingerprint-named bias field (written before it existed): when seen
        self._legacy: dict[StateKey, float] = {}
        self._legacy_warned: set[StateKey] = set()
        self._warm: dict[StateKey, bool] = {}
        #: collection -> its vector names and (size, distance), read with the collection's description
        self._names: dict[str, dict[str, tuple[int, str]]] = {}
        #: collection -> vector name -> "dense" / "multi" / "sparse" (:meth:`kinds_logic`)
        self._kinds: dict[str, dict[str, str]] = {}
        self._stale_warned: set[StateKey] = set()
        self._names_at: dict[str, float] = {}  # when each collection's vector names were read

    # ------------------------------------------------------------- configuration
    def configure(self, collection: str, config: CollectionConfig | None = None, **changes: Any) -> None:
        """Set (or update with ``changes``) the configuration of one collection."""
        with self._lock:
            base = config or self.collections.get(collection) or CollectionConfig()
            new = replace(base, **changes) if changes else base
            check_banks_fit(new, self.default, f"collection {collection!r}")
            self.collections[collection] = new
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
        """N for one query: the per-call, collection or client setting, at least ``limit + offset``."""
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise InputError(f"limit must be a positive integer (Qdrant refuses 0 and negatives), got {limit!r}.")
        off = offset or 0
        if isinstance(off, bool) or not isinstance(off, (int, np.integer)) or off < 0:
            raise InputError(f"offset must be a non-negative integer, got {offset!r}.")
        n = ov.candidates if ov.candidates is not None else self._setting(collection, "candidates")
        need = limit + off
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

    # ------------------------------------------------------- state of a collection
    def payload_ready(self, sk: StateKey) -> bool:
        """Whether the payload of the collection holds current statistics (``sk``: collection, vector, fingerprint)."""
        return sk in self._payload_ready

    def mark_payload_ready(self, sk: StateKey, ready: bool = True) -> None:
        """Record that the payload holds (or, ``ready=False``, no longer holds) current statistics."""
        with self._lock:
            if ready:
                self._payload_ready.add(sk)
            else:
                self._payload_ready.discard(sk)

    def stored(self, sk: StateKey) -> None:
        """A precompute has just written current statistics, with the bias field, for every point."""
        with self._lock:
            self._payload_ready.add(sk)
            self._legacy.pop(sk, None)

    def bias_stored(self, sk: StateKey) -> bool:
        """Whether the stored statistics are taken to carry the bias field the cheaper server formula
        reads (:func:`~.server_path.bias_field`): yes unless a point showed otherwise (:meth:`mark_legacy`)
        less than ``names_check_s`` ago, so a precompute run by another process is picked up within
        that time (the next query tries the field again, and a legacy point marks it again)."""
        at = self._legacy.get(sk)
        return at is None or time.monotonic() - at >= self.names_check_s

    def mark_legacy(self, sk: StateKey) -> None:
        """Record that the stored statistics lack the bias field: the server formula reads the
        statistics fields instead, until a precompute writes it (logged once)."""
        with self._lock:
            self._legacy[sk] = time.monotonic()
            if sk in self._legacy_warned:
                return
            self._legacy_warned.add(sk)
        logger.warning("the statistics stored in collection %r predate the bias field (%s): the server formula "
                       "reads every statistic instead; run precompute again for the cheaper formula.", sk[0], sk[2])

    def is_warm(self, sk: StateKey) -> bool:
        """Whether the candidates of the last query were all cached (then vectors are not fetched)."""
        return self._warm.get(sk, False)

    def set_warm(self, sk: StateKey, warm: bool) -> None:
        self._warm[sk] = warm

    def forget(self, collection: str) -> None:
        """Drop everything known about a collection (cache, activation sets, payload state)."""
        with self._lock:
            self.cache.clear(collection)
            self._info = {k: v for k, v in self._info.items() if k[0] != collection}
            self._nz = {k: v for k, v in self._nz.items() if k[0] != collection}
            self._act = {k: v for k, v in self._act.items() if k[0] != collection}
            self._payload_ready = {k for k in self._payload_ready if k[0] != collection}
            self._legacy = {k: v for k, v in self._legacy.items() if k[0] != collection}
            self._warm = {k: v for k, v in self._warm.items() if k[0] != collection}
            self._names.pop(collection, None)
            self._names_at.pop(collection, None)
            self._kinds.pop(collection, None)

    # --------------------------------------------------------------- collections
    def describe_logic(self, collection: str) -> Logic:
        """Logic: a collection's description (``get_collection``), read afresh (a collection may
        have been recreated since), its vector names and kinds recorded; a missing collection is
        an :class:`InputError`. Callers keep what they derive (:meth:`info_logic`, :meth:`kinds_logic`)."""
        exists = yield Call("collection_exists", dict(collection_name=collection))
        if not exists:
            raise InputError(f"collection {collection!r} does not exist; check the name or create it first.")
        desc = yield Call("get_collection", dict(collection_name=collection))
        with self._lock:
            self.set_names(collection, desc)
        return desc

    def info_logic(self, collection: str, using: str | None) -> Logic:
        """Logic: the :class:`VectorInfo` of a collection's vector (asked once, then kept)."""
        ck = (collection, using)
        if ck in self._info:
            return self._info[ck]
        desc = yield from self.describe_logic(collection)
        info = vector_info(desc, collection, using)
        with self._lock:
            self._info[ck] = info
        return info

    def kinds_logic(self, collection: str) -> Logic:
        """Logic: the collection's vector names and their kinds, ``{name: "dense" | "multi" |
        "sparse"}`` (``""``: the unnamed vector); read with its description, then kept."""
        kinds = self._kinds.get(collection)
        if kinds is None:
            yield from self.describe_logic(collection)
            kinds = self._kinds[collection]
        return kinds

    def bank_dim(self, collection: str) -> int | None:
        """The dimension of the banks configured for a collection (``None``: no banks)."""
        nz = self._setting(collection, "normalizer")
        if nz is not None:
            return int(nz.query_bank.shape[1])
        banks = self._setting(collection, "banks")
        return None if banks is None else int(banks.dim)

    #: seconds between two re-reads of a served collection's vector names on the query path, so an index
    #: vector another process added (or dropped) is used (or left) within that time; class attribute
    names_check_s: float = 30.0

    def names_fresh_logic(self, collection: str) -> Logic:
        """Logic: re-read the vector names of a collection read more than ``names_check_s`` ago
        (one thread; the others go on with what was read). Nothing for one not read yet."""
        with self._lock:
            due = self.names_due(collection)
            if due:
                self._names_at[collection] = time.monotonic()
        if due and (yield Call("collection_exists", dict(collection_name=collection))):
            desc = yield Call("get_collection", dict(collection_name=collection))
            with self._lock:
                self.set_names(collection, desc)

    def names_due(self, collection: str) -> bool:
        """Whether :meth:`names_fresh_logic` would re-read the collection's vector names now."""
        at = self._names_at.get(collection)
        return at is not None and time.monotonic() - at >= self.names_check_s

    def known_info(self, collection: str, using: str | None) -> VectorInfo | None:
        """The :class:`VectorInfo` :meth:`info_logic` has kept for ``(collection, using)``, if any."""
        return self._info.get((collection, using))

    def set_names(self, collection: str, desc: Any) -> None:
        """Record a collection's dense vector names (from its ``get_collection`` description)."""
        self._names_at[collection] = time.monotonic()
        vectors = desc.config.params.vectors
        if not isinstance(vectors, dict):
            vectors = {"": vectors} if vectors is not None else {}
        kinds = {k: "dense" if getattr(v, "multivector_config", None) is None else "multi" for k, v in vectors.items()}
        kinds.update({k: "sparse" for k in (desc.config.params.sparse_vectors or {})})
        self._kinds[collection] = kinds
        self._names[collection] = {
            k: (int(v.size), v.distance.value if hasattr(v.distance, "value") else str(v.distance))
            for k, v in vectors.items()
        }

    def names(self, collection: str) -> dict[str, tuple[int, str]]:
        """The vector names of a collection as last read (``{}``: not read yet)."""
        return self._names.get(collection, {})

    def index_status(self, collection: str, info: VectorInfo, nz: BankNormalizer) -> tuple[str, str]:
        """``(status, name)`` of the index vector of ``nz`` for ``info``: ``"current"`` (the
        collection has it), ``"stale"`` (it has index vectors of other normalisers only) or
        ``"none"``; ``name`` is the index vector's name (docs/index.md)."""
        name = index_name(nz.fingerprint, info.using)
        names = self.names(collection)
        if name in names:
            return "current", name
        if any(k.startswith(INDEX_PREFIX) for k in names):
            return "stale", name
        return "none", name

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
            banks = BankSet(base_nz.query_bank, base_nz.gallery_bank, base_nz.gallery_bank_keys, base_nz.query_bank_keys)
            params = base_nz.params if params is None else params
        if banks is None:
            raise InputError(
                f"no banks configured for collection {collection!r}; pass normalizer= or banks= to DBNormClient "
                "or configure(collection, ...)."
            )
        params = as_params(params)
        if p_over is not None:
            params = params.with_(**(p_over.to_dict() if isinstance(p_over, Params) else dict(p_over)))
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
                f"collection {collection!r} uses the Euclid distance: centering (center=True) is defined for "
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
        if f is None:  # from the method table, in the cache's column order (STAT_FIELDS)
            want = stat_fields(nz.params.method, center=nz.params.center, gates=False)
            f = tuple(x for x in STAT_FIELDS if x in want)
            self._fields[nz.fingerprint] = f
        return f

    def fill_bias(self, nz: BankNormalizer, rows: np.ndarray) -> np.ndarray:
        """Fill the ``bias`` column of cache rows (:func:`methods.bias`, computed once per
        point at insertion) for an additive method without centering; returns ``rows``."""
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
    def plan(self, collection: str, spec: Spec, info: VectorInfo, ov: Overrides, what: str = "query") -> Plan:
        """The plan of one query (``what`` names it in errors, e.g. ``requests[3].query``)."""
        q = query_vector(spec, info, what)
        if info.using is not None and spec.using != info.using:  # using=None meant the only dense vector
            spec = replace(spec, using=info.using)
        nz = self.normalizer(collection, info, ov)
        if nz.params.center and q is None:
            raise InputError("centering needs the query vector: query by vector, not by point id.")
        n = self.candidates(collection, spec.limit, spec.offset, ov)
        mode, pinned = self.route(collection, info, nz, ov, q is not None)
        return Plan(spec, info, nz, q, n, mode, self.stat_fields(nz), raw_score=ov.with_raw_score, pinned=pinned)

    def route(self, collection: str, info: VectorInfo, nz: BankNormalizer, ov: Overrides,
              by_vector: bool = True) -> tuple[str, bool]:
        """``(path, pinned)`` of a dense query: ``"client"``, ``"server"`` or ``"index"``, as the
        per-call or configured mode and what is known of the collection decide (``auto``: the
        index when it is current, else the server path once the payload holds current
        statistics); ``pinned``: the client path was asked for, not chosen. ``by_vector``:
        the query is a vector (not a point id)."""
        asked = self.mode(collection, ov)
        mode = asked
        if mode == "index":
            self._check_index(collection, info, nz, by_vector)
        elif nz.params.center:
            mode = "client"
        elif mode == "auto":
            mode = self._auto_index(collection, info, nz, by_vector)
            if mode is None:
                mode = "server" if (collection, info.using, nz.fingerprint) in self._payload_ready else "client"
        return mode, asked == "client"

    def _check_index(self, collection: str, info: VectorInfo, nz: BankNormalizer, by_vector: bool) -> None:
        """``mode="index"``: refuse a query the index cannot answer, naming the fix."""
        index_form(nz.params, info.distance)
        if not by_vector:
            raise InputError("mode='index' needs the query vector: query by vector, not by point id (or use "
                             "mode='client').")
        status, name = self.index_status(collection, info, nz)
        if status != "current":
            what = ("only index vectors of other banks or parameters (stale: the normaliser's fingerprint "
                    "changed)" if status == "stale" else "no index vector")
            raise InputError(
                f"mode='index': collection {collection!r} has {what} for this normaliser (wanted {name!r}); build "
                "it with DBNormClient.precompute(collection, index=True) or `dbnorm-qdrant stats precompute "
                "--index`, or use mode='auto'."
            )

    def _auto_index(self, collection: str, info: VectorInfo, nz: BankNormalizer, by_vector: bool) -> str | None:
        """``mode="auto"``: ``"index"`` when the collection has a current index vector, else
        ``None`` (a stale one is logged once, then the rerank paths serve the query)."""
        if not by_vector or info.distance not in ("Cosine", "Dot"):
            return None
        status, name = self.index_status(collection, info, nz)
        if status == "current":
            return "index"
        sk = (collection, info.using, nz.fingerprint)
        if status == "stale" and sk not in self._stale_warned:
            self._stale_warned.add(sk)
            logger.warning("collection %r has index vectors of other normalisers but not %r (stale): queries fall "
                           "back to the rerank path; run precompute(..., index=True) to rebuild it.", collection, name)
        return None

    # ---------------------------------------------------------------- activation
    def activation_logic(self, collection: str, info: VectorInfo, nz: BankNormalizer, refresh: bool = False) -> Logic:
        """Activation sets (point keys) of a gated method over the whole collection.

        A collection of at most ``exact_activation_max`` points is scrolled once with its
        vectors and the sets come from the kernels (:meth:`BankNormalizer.activation`:
        exact top-k, the same similarity as the statistics; one scroll instead of one
        query per bank vector). A larger one uses Qdrant itself: one query per bank
        vector (limit k), in batches. A sampled gallery-bank item is skipped in its own list.
        A ``k`` larger than the collection is refused (every point would be active).
        """
        ck = (collection, info.using, nz.fingerprint)
        if not refresh and ck in self._act:
            return self._act[ck]
        p = nz.params
        k = int(p.k)
        total = (yield Call("count", dict(collection_name=collection, exact=True))).count
        if k > total:
            raise InputError(
                f"method {p.method!r} has k={k} but collection {collection!r} holds {total} points; k must be at "
                f"most the number of points (pass params={{'k': ...}} with k <= {total})."
            )
        if total <= self.exact_activation_max:
            act_q, act_g = yield from self._exact_activation(collection, info, nz)
        else:
            act_q = yield from self._topk_union(collection, info, nz.query_bank, k, None)
            act_g: frozenset[int] = frozenset()
            if p.gated and p.uses_gallery_bank:
                act_g = yield from self._topk_union(collection, info, nz.gallery_bank, k, nz.gallery_bank_keys)
        with self._lock:
            self._act[ck] = (act_q, act_g)
        return act_q, act_g

    def _exact_activation(self, collection: str, info: VectorInfo, nz: BankNormalizer) -> Logic:
        keys: list[int] = []
        vecs: list[Any] = []

        def page(recs: list[Any]) -> None:
            for r in recs:
                v = record_vector(r, info.using)
                if v is not None:
                    keys.append(point_key(r.id))
                    vecs.append(v)

        yield from scroll_pages(collection, page, page_size=2048, with_vectors=vector_selector(info.using))
        if not vecs:
            return frozenset(), frozenset()
        ks = np.asarray(keys, dtype=np.int64)
        a_q, a_g = nz.activation(np.asarray(vecs, dtype=np.float32), gallery_keys=ks, nonzero=False)
        return frozenset(ks[a_q].tolist()), frozenset(ks[a_g].tolist())

    def _topk_union(self, collection: str, info: VectorInfo, bank: np.ndarray, k: int, keys: Any,
                    chunk: int = 256) -> Logic:
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

    def batch_call(self, collection: str, reqs: list[dict[str, Any]], extra: dict[str, Any]) -> Logic:
        """One candidate query per request (a dict of ``query_points`` keyword arguments):
        ``query_points`` for a single one (no request models, no deep copy), else one
        ``query_batch_points``."""
        if len(reqs) == 1:
            resp = yield Call("query_points", dict(reqs[0], collection_name=collection, **extra))
            return [resp]
        requests = [models.QueryRequest(**{REQUEST_FIELD.get(k, k): v for k, v in r.items()}) for r in reqs]
        res = yield Call("query_batch_points", dict(collection_name=collection, requests=requests, **extra))
        return res


def _is_unit(*banks: np.ndarray | None) -> bool:
    for b in banks:
        if b is not None and not np.allclose(np.linalg.norm(b[: min(len(b), 1000)], axis=1), 1.0, atol=1e-3):
            return False
    return True
