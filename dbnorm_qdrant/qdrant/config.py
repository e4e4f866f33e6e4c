"""Settings of the wrappers, per-collection configuration, and a collection's vector.

:class:`Settings` is the one definition of what a :class:`~.client.DBNormClient` is
built with; :class:`CollectionConfig` overrides part of it for one collection;
:func:`vector_info` reads which dense vector a query targets (its distance and size)
from Qdrant's collection description, with the errors a user can hit there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, Mapping

from ..core.index import INDEX_PREFIX
from ..core.params import Params, as_params
from ..core.spec import SINKHORN
from ..kernels import BACKENDS, get_backend
from ..validation import check_int, check_k
from ..core.normalizer import BankNormalizer
from ..banks import BankSet
from ..errors import InputError

__all__ = ["Settings", "CollectionConfig", "VectorInfo", "vector_info", "as_params", "MODES", "DISTANCES"]

MODES = ("auto", "client", "server", "index")
#: the Qdrant distances bank normalisation supports (Manhattan has no dot/softmax form)
DISTANCES = ("Cosine", "Dot", "Euclid")


def _check_mode(mode: Any) -> None:
    if mode is not None and mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}.")


def _check_candidates(n: Any) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InputError(f"candidates (N) must be a positive integer or None, got {n!r}.")


def _check_backend(backend: Any) -> None:
    """An unknown (or not installed) kernel backend is refused at construction, not at the first query."""
    if backend == "auto":
        return
    if not isinstance(backend, str):
        raise InputError(f"backend must be 'auto' or one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    get_backend(backend)  # raises an InputError naming the choices (or how to install it)


def check_banks_fit(config: "CollectionConfig", default: "CollectionConfig", where: str) -> None:
    """Refuse, at construction, banks that cannot serve the method: a method that needs a
    gallery bank (``dualis``, ``dualdis``, ``uniform``) with a :class:`BankSet` that has none,
    and a ``csls``/``nnn`` ``k`` larger than the query bank. ``config``'s unset fields come
    from ``default``; nothing is checked while a :class:`BankNormalizer` is in play (it
    checked itself) or no banks are known yet (they may be built later)."""
    if config.normalizer is not None or default.normalizer is not None:
        return
    banks = config.banks if config.banks is not None else default.banks
    if banks is None:
        return
    p = as_params(config.params if config.params is not None else default.params)
    if banks.gallery_bank is None and (p.uses_gallery_bank or p.method in SINKHORN):
        raise InputError(
            f"{where}: method {p.method!r} needs a gallery bank but the BankSet has none; add one "
            "(BankSet(query_bank, gallery_bank), or build_banks(collection, gallery_sample=n)), or use method='is'/'dis'."
        )
    if p.k_counts_neighbours:
        check_k(p.k, len(banks.query_bank), "k", f"the query bank of {where}")


def _check_log(s: "Settings") -> None:
    """The query-log options (the log itself checks its name, capacity, rate and policy)."""
    log = s.query_log
    if log is not None and not (isinstance(log, str) and log) and not (
            isinstance(log, Mapping) and log and all(isinstance(k, str) and isinstance(v, str) and v
                                                     for k, v in log.items())):
        raise InputError(f"query_log must be a collection name or a mapping {{collection: log name}}, got {log!r}.")
    if isinstance(log, Mapping) and len(set(log.values())) != len(log):
        raise InputError(f"query_log maps two collections to one log ({dict(log)}); give each its own log name.")
    check_int(s.min_log, "min_log", low=100, hint="tuning carves a validation split from the log (at least 100 "
              "queries).")
    if s.rebuild_every is not None and isinstance(s.log_capacity, int) and s.min_log > s.log_capacity:
        raise InputError(f"min_log={s.min_log} is larger than log_capacity={s.log_capacity}: no background rebuild "
                         "could ever run; raise log_capacity or lower min_log.")
    r = s.rebuild_every
    if r is not None and not isinstance(r, timedelta) and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
        raise InputError(f"rebuild_every must be None, a positive number of logged queries or a "
                         f"datetime.timedelta, got {r!r}.")
    if isinstance(r, timedelta) and r.total_seconds() <= 0:
        raise InputError(f"rebuild_every must be a positive duration, got {r!r}.")
    if log is None and r is not None:
        raise InputError("rebuild_every needs a query log: pass query_log='name' too.")


@dataclass(frozen=True)
class CollectionConfig:
    """Per-collection settings of :class:`~.client.DBNormClient` (``None``: the client's default).

    Attributes
    ----------
    normalizer:
        A :class:`BankNormalizer` (its banks and parameters), or
    banks, params:
        a :class:`BankSet` and :class:`Params` (or a dict of Params fields, checked here:
        an unknown method fails at construction, not at the first query).
    candidates:
        N, the raw candidates reranked per query (default ``max(4 * limit, 100)``).
    mode:
        ``"auto"`` (the index vector when the collection has a current one, else
        server-side rescoring once the payload holds current statistics, else
        client-side), ``"client"``, ``"server"`` (server-side whenever possible) or
        ``"index"`` (always the index vector of ``precompute(..., index=True)``; docs/index.md).
    enabled:
        False: queries on this collection pass straight through.
    """

    normalizer: BankNormalizer | None = None
    banks: BankSet | None = None
    params: Params | Mapping[str, Any] | None = None
    candidates: int | None = None
    mode: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.params is not None:
            object.__setattr__(self, "params", as_params(self.params))
        if self.normalizer is not None and not isinstance(self.normalizer, BankNormalizer):
            raise InputError(f"normalizer must be a BankNormalizer, got {type(self.normalizer).__name__}.")
        if self.banks is not None and not isinstance(self.banks, BankSet):
            raise InputError(f"banks must be a dbnorm_qdrant.BankSet, got {type(self.banks).__name__}.")
        _check_mode(self.mode)
        _check_candidates(self.candidates)


@dataclass(frozen=True, eq=False)
class Settings:
    """Everything a :class:`~.client.DBNormClient` / :class:`~.client.AsyncDBNormClient`
    is built with (their keyword arguments; checked here, at construction).

    Attributes
    ----------
    normalizer:
        A :class:`BankNormalizer` (banks + method), or give ``banks`` and ``params``.
        For a Cosine collection the banks are scaled to unit norm (as Qdrant does with
        stored vectors); the fingerprint is then that of the unit banks.
    banks, params:
        A :class:`BankSet` and :class:`Params` (or a dict of its fields).
    collections:
        Per-collection :class:`CollectionConfig` (banks, params, N, mode, enabled).
    candidates:
        Default N (raw candidates per query); ``None``: ``max(4 * (limit + offset), 100)``.
    mode:
        ``"auto"``, ``"client"``, ``"server"`` or ``"index"`` (see :mod:`~.client`, docs/index.md).
    payload_key:
        The reserved payload key for stored statistics (the only key ever written).
    cache_size:
        Capacity (points) of the statistics cache (CLOCK eviction, an approximate LRU);
        ``0``: no cache (statistics are read from the payload or computed each time).
    backend:
        The kernel backend for statistics computed on the fly (``"auto"``, ``"numba"``, ...).
    exact_activation_max:
        ``dis``/``dualdis``: a collection of at most this many points has its activation
        sets computed exactly from its scrolled vectors with the kernels; a larger one
        with Qdrant (one query per bank vector, limit k). ``0``: always Qdrant.
    query_log:
        The name of a Qdrant collection where the query vectors served are logged (one
        log per collection: a name binds to the first collection queried; a mapping
        ``{collection: log}`` names several). Without banks a logged collection starts
        cold; :meth:`~.client.DBNormClient.rebuild` turns the log into banks
        (docs/lifecycle.md).
    log_capacity, log_sample_rate, log_policy:
        The most queries a log keeps (default 10,000), the share of queries logged
        (1.0), and which are kept when it is full: ``"ring"`` (the latest) or
        ``"reservoir"`` (a uniform sample of all).
    min_log:
        The fewest logged queries a rebuild accepts (default 200).
    rebuild_every:
        ``None`` (default: rebuild only when called), a number of logged queries, or a
        :class:`datetime.timedelta`: a background rebuild when that many queries were
        logged, or that much time passed, since the active version was built (sync wrapper).
    quarantine:
        What the wrapper does with points an audit quarantined (``audit(..., quarantine=True)``,
        docs/audit.md): ``"exclude"`` (default) leaves them out of every query it serves;
        ``"ignore"`` serves them like any other point.
    """

    normalizer: BankNormalizer | None = None
    banks: BankSet | None = None
    params: Params | Mapping[str, Any] | None = None
    collections: Mapping[str, CollectionConfig] | None = None
    candidates: int | None = None
    mode: str = "auto"
    payload_key: str = "_dbnorm"
    cache_size: int = 1_000_000
    backend: str = "auto"
    exact_activation_max: int = 50_000
    query_log: str | Mapping[str, str] | None = None
    log_capacity: int = 10_000
    log_sample_rate: float = 1.0
    log_policy: str = "ring"
    min_log: int = 200
    rebuild_every: int | timedelta | None = None
    quarantine: str = "exclude"

    def __post_init__(self) -> None:
        if self.mode is None:
            raise InputError(f"mode must be one of {MODES}, got None.")
        key = self.payload_key
        if not isinstance(key, str) or not key or "." in key:
            raise InputError(f"payload_key must be a non-empty string without dots, got {key!r}.")
        check_int(self.cache_size, "cache_size", low=0, hint="it is the statistics cache's capacity in points "
                  "(0: no cache).")
        check_int(self.exact_activation_max, "exact_activation_max", low=0,
                  hint="collections up to this size get exact activation sets (0: always Qdrant).")
        _check_backend(self.backend)
        _check_log(self)
        if self.quarantine not in ("exclude", "ignore"):  # quarantine.QUARANTINE_MODES
            raise InputError(f"quarantine must be 'exclude' (leave quarantined points out of results) or 'ignore', "
                             f"got {self.quarantine!r}.")
        default = CollectionConfig(self.normalizer, self.banks, self.params, self.candidates, self.mode)  # its checks
        check_banks_fit(default, default, "DBNormClient")
        for name, c in (self.collections or {}).items():
            if not isinstance(c, CollectionConfig):
                raise InputError(f"collections[{name!r}] must be a CollectionConfig, got {type(c).__name__}.")
            check_banks_fit(c, default, f"collection {name!r}")

    @classmethod
    def of(cls, normalizer: BankNormalizer | None = None, **options: Any) -> "Settings":
        """``Settings(normalizer, **options)``, an unknown option refused with the valid names."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(f"unknown option(s) {unknown}; the options are "
                             f"{', '.join(f.name for f in fields(cls))}.")
        return cls(normalizer=normalizer, **options)

    def default(self) -> CollectionConfig:
        """The configuration of a collection that has none of its own."""
        return CollectionConfig(self.normalizer, self.banks, self.params, self.candidates, self.mode)


@dataclass(frozen=True)
class VectorInfo:
    """The dense vector a query targets: collection, name (``None``: the unnamed one), distance, size."""

    collection: str
    using: str | None
    distance: str
    size: int

    @property
    def sign(self) -> float:
        """Raw score -> similarity: Euclid scores are distances (smaller is better)."""
        return -1.0 if self.distance == "Euclid" else 1.0


def _by_kind(vectors: dict[str, Any], sparse: list[str]) -> str:
    """``"dense vectors ['a'], multivectors ['m'] and sparse vectors ['s']"``: a collection's vectors by kind."""
    dense = [k for k in sorted(vectors) if vectors[k].multivector_config is None]
    multi = [k for k in sorted(vectors) if vectors[k].multivector_config is not None]
    parts = [f"dense vectors {dense}"] + ([f"multivectors {multi}"] if multi else []) + (
        [f"sparse vectors {sparse}"] if sparse else [])
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def vector_info(info: Any, collection: str, using: str | None = None, *, supported: bool = True) -> VectorInfo:
    """The dense vector ``using`` of a collection, from its Qdrant description.

    ``info`` is what ``client.get_collection(collection)`` returns (a
    ``models.CollectionInfo``). ``using=None`` (or ``""``) is the unnamed vector, or, on a
    collection without one, its only dense vector (a hybrid collection: one dense vector
    beside sparse ones; the returned ``using`` names it). Refused
    with an :class:`InputError`: a name the collection does not have (naming it, listing
    the dense names, and saying when the collection also has sparse vectors, which cannot
    be reranked), ``None`` on a collection with only named vectors, a multivector, and
    (with ``supported``) a distance bank normalisation cannot use (not Cosine, Dot, Euclid).
    """
    params = info.config.params
    vectors = params.vectors
    sparse = sorted(params.sparse_vectors or {})
    name = using or None
    if isinstance(vectors, dict):
        dense = sorted(vectors)
        kinds = _by_kind(vectors, sparse)
        if name is None and "" in vectors:
            vp = vectors[""]
        elif name is None:
            single = [k for k in dense if vectors[k].multivector_config is None and not k.startswith(INDEX_PREFIX)]
            if len(single) != 1:
                raise InputError(f"collection {collection!r} has {kinds}; for a dense query pass using= one of the "
                                 "dense vectors.")
            name = single[0]  # the one dense vector is what a dense query means (hybrid collections)
            vp = vectors[name]
        elif name not in vectors:
            what = "a sparse vector, which cannot be reranked" if name in sparse else "not one of its vectors"
            raise InputError(
                f"collection {collection!r} has no dense vector {name!r} ({what}); it has {kinds}: choose using= "
                "one of the dense vectors."
            )
        else:
            vp = vectors[name]
    elif vectors is None:
        raise InputError(f"collection {collection!r} has no dense vector (sparse only: {sparse}); nothing to rerank.")
    else:
        if name is not None:
            note = f"; its sparse vectors {sparse} are not dense" if sparse else ""
            raise InputError(
                f"collection {collection!r} has a single unnamed dense vector, not {name!r}; drop using= (or "
                f"pass using=None){note}."
            )
        vp = vectors
    if vp.multivector_config is not None:
        raise InputError(
            f"vector {name or '(unnamed)'} of {collection!r} is a multivector; bank normalisation needs one vector "
            "per point."
        )
    dist = vp.distance.value if hasattr(vp.distance, "value") else str(vp.distance)
    if supported and dist not in DISTANCES:
        raise InputError(
            f"collection {collection!r} uses the {dist} distance, which bank normalisation does not support; "
            "use Cosine, Dot or Euclid."
        )
    return VectorInfo(collection, name, dist, int(vp.size))
