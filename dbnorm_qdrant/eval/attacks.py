"""Hub-planting attacks on a vector collection, to test a hub audit and a hubness defence.

Hubness is an attack surface (the issue-16 brief; the adversarial-hubness literature, and
HubScan (2026), a scanner for planted hubs in vector databases). An attacker who can add
documents to a collection places their embeddings where many queries look: a *hub* then
shows up in the top 10 of a large share of all queries, and in retrieval-augmented
generation feeds the attacker's text to the model. The attacker knows the embedding model
and holds a *sample of the query distribution* (their own queries, public logs), and may
read the collection; they do not know the defender's banks nor the queries to come.

:func:`plant_hubs` makes ``n`` such vectors by one of :data:`KINDS`:

``centroid``
    The mean of the query sample, the point of highest average similarity to the queries:
    the simplest hub of the literature. Each hub is the centroid of a random half of the
    sample plus a little Gaussian noise (std 0.002 per dimension), so that no two hubs are
    equal (an exact duplicate is trivial to catch).
``cluster``
    One hub per topic: the centroids of a k-means clustering of the sample into ``n``
    clusters (``scipy.cluster.vq.kmeans2``, k-means++ seeding). Each hub dominates its own
    region of the query space instead of competing for the same one.
``optimized``
    A hub optimised for the attacker's goal, entering as many top-k lists as possible
    (the gradient attacks of the adversarial-hubness papers): gradient ascent on the unit
    sphere of the smooth count :func:`hit_objective`, ``sum_q sigmoid((q.h - t_q) / tau)``
    with ``t_q`` query q's k-th best similarity in the gallery (tau 0.02, step 0.5, 200
    steps, every step projected back to unit norm), starting from centroid hubs. Each hub
    climbs alone, so all ``n`` end at the same optimum (one hub, ``n`` copies). With
    ``joint=True`` the hubs climb together on the smooth count of the queries whose top-k
    *any* of them enters (:func:`coverage_objective`, ``sum_q 1 - prod_h (1 - sigmoid(.))``):
    they spread over the query space, a much stronger attack (three times the share of
    top-10 lists of the per-hub form on the shipped sample).
``near_duplicate``
    Copies of the collection's own most retrieved items (largest k-occurrence over the
    sample's top-k lists) plus noise (std 0.01 per dimension): hubs that look like real
    content, which a content filter or a duplicate check does not flag.

:func:`mixed_hubs` splits ``n`` over several kinds; :func:`hub_share` measures an attack:
the share of result lists with at least one planted point in them.

Geometry: cosine. Queries, gallery rows and hubs are unit vectors (the inputs are
normalised here); similarities are dot products. Everything is seeded and deterministic
for a given ``seed`` (on a given BLAS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.cluster.vq import kmeans2
from scipy.special import expit

from ..errors import InputError
from ..validation import check_int, check_k, check_number, check_vectors
from .metrics import k_occurrence, topk_indices

__all__ = ["KINDS", "coverage_objective", "hit_objective", "hub_share", "mixed_hubs", "plant_hubs"]

#: the attacks :func:`plant_hubs` knows
KINDS: tuple[str, ...] = ("centroid", "cluster", "optimized", "near_duplicate")

CENTROID_NOISE = 0.002  #: std per dimension of the noise added to each centroid hub
DUPLICATE_NOISE = 0.01  #: std per dimension of the noise added to each near-duplicate
TAU = 0.02  #: temperature of the smooth top-k entry count (similarity units)
LR = 0.5  #: step of the gradient ascent (on the mean over the sample)
STEPS = 200  #: gradient steps

_CHUNK_ELEMENTS = 1 << 22  # similarity-matrix entries computed at once


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _inputs(queries: ArrayLike, gallery: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The sample and the gallery as float64 unit rows of the same dimension."""
    Q = check_vectors(queries, "queries")
    G = check_vectors(gallery, "gallery", dim=Q.shape[1], dim_of="the queries' dimension")
    return _unit(Q.astype(np.float64)), _unit(G.astype(np.float64))


def _kth_and_kocc(Q: np.ndarray, G: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k-th best similarity in ``G``, and each item's k-occurrence over ``Q``'s top-k.

    Row chunks of the similarity matrix; ties at the k-th place go to the lower index
    (:func:`~dbnorm_qdrant.eval.metrics.topk_indices`).
    """
    kth = np.empty(len(Q))
    kocc = np.zeros(len(G), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // len(G))
    for i in range(0, len(Q), step):
        S = Q[i:i + step] @ G.T
        top = topk_indices(S, k)
        kth[i:i + step] = np.take_along_axis(S, top[:, -1:], axis=1)[:, 0]
        kocc += k_occurrence(topk=top, n_gallery=len(G))
    return kth, kocc


# ----------------------------------------------------------------------------------------------------
# the attacks (each: rng, n, unit sample, unit gallery, k -> float64 unit rows)
# ----------------------------------------------------------------------------------------------------
def _centroid(rng: np.random.Generator, n: int, Q: np.ndarray, G: np.ndarray, k: int) -> np.ndarray:
    half = max(1, len(Q) // 2)
    H = np.stack([Q[rng.choice(len(Q), half, replace=False)].mean(axis=0) for _ in range(n)])
    return _unit(H + rng.normal(0.0, CENTROID_NOISE, H.shape))


def _cluster(rng: np.random.Generator, n: int, Q: np.ndarray, G: np.ndarray, k: int) -> np.ndarray:
    if len(Q) < n:
        raise InputError(f"the cluster attack clusters the query sample into n={n} clusters but the sample has "
                         f"{len(Q)} rows; pass at least n queries (or plant fewer hubs).")
    centers, _ = kmeans2(Q, n, minit="++", seed=rng)
    norms = np.linalg.norm(centers, axis=1)
    if not np.all(norms > 0):  # a cluster whose members cancel out: no direction to plant
        raise InputError("a k-means centroid of the query sample has zero norm; pass a larger or less "
                         "symmetric query sample.")
    return centers / norms[:, None]


def _optimized(rng: np.random.Generator, n: int, Q: np.ndarray, G: np.ndarray, k: int,
               joint: bool = False) -> np.ndarray:
    t, _ = _kth_and_kocc(Q, G, k)
    H = _centroid(rng, n, Q, G, k)
    for _ in range(STEPS):
        s = expit((H @ Q.T - t) / TAU)  # (n, m): smooth "q's top-k holds h"
        w = s * (1.0 - s) / TAU  # d s / d (q.h)
        if joint:  # d/dh of 1 - prod_h' (1 - s_h'): times the other hubs' prod (1 - s)
            log_miss = np.log1p(-np.minimum(s, 1.0 - 1e-12))
            w = w * np.exp(log_miss.sum(axis=0)[None, :] - log_miss)
        H = _unit(H + LR * (w @ Q) / len(Q))
    return H


def _near_duplicate(rng: np.random.Generator, n: int, Q: np.ndarray, G: np.ndarray, k: int) -> np.ndarray:
    if n > len(G):
        raise InputError(f"the near_duplicate attack copies n={n} gallery items but the gallery has {len(G)}; "
                         "plant at most len(gallery) near-duplicates.")
    _, kocc = _kth_and_kocc(Q, G, k)
    top = np.argsort(-kocc, kind="stable")[:n]  # most retrieved first; ties: lower index
    return _unit(G[top] + rng.normal(0.0, DUPLICATE_NOISE, (n, G.shape[1])))


_ATTACKS: dict[str, Callable[..., np.ndarray]] = {
    "centroid": _centroid, "cluster": _cluster, "optimized": _optimized, "near_duplicate": _near_duplicate,
}


def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or kind not in _ATTACKS:
        raise InputError(f"unknown attack kind {kind!r}; choose one of {', '.join(KINDS)}.")
    return kind


# ----------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------
def plant_hubs(kind: str, n: int, queries: ArrayLike, gallery: ArrayLike, *, k: int = 10,
               seed: int = 0, joint: bool = False) -> NDArray[np.float32]:
    """``n`` hub vectors of one attack kind (see the module docs for what each models).

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    n : int
        Hubs to make, ``>= 1``.
    queries : array_like, shape (m, d)
        The attacker's sample of the query distribution (not the defender's query bank, nor
        the queries an evaluation scores). ``cluster`` needs ``m >= n``.
    gallery : array_like, shape (g, d)
        The clean collection's vectors (``optimized`` and ``near_duplicate`` read them).
    k : int, default 10
        The top-k the attacker aims at (``1 <= k <= g``).
    seed : int, default 0
        Seed of every random choice; equal seeds give equal hubs.
    joint : bool, default False
        ``optimized`` only: optimise the hubs together on :func:`coverage_objective`
        instead of each on :func:`hit_objective`.

    Returns
    -------
    numpy.ndarray of float32, shape (n, d)
        Unit rows.

    Raises
    ------
    InputError
        An unknown kind, ``n < 1``, ``k`` out of range, inputs of different dimensions, NaN,
        infinite or all-zero rows, too few queries for the clustering, more near-duplicates
        than gallery items, ``joint=True`` with another kind than ``optimized``.
    """
    kind = _check_kind(kind)
    if joint and kind != "optimized":
        raise InputError(f"joint=True applies to the optimized attack only, not {kind!r}; drop joint=.")
    n = check_int(n, "n", hint="plant at least one hub.")
    Q, G = _inputs(queries, gallery)
    k = check_k(k, len(G), "k", "the gallery")
    rng = np.random.default_rng(seed)
    H = _optimized(rng, n, Q, G, k, joint=True) if joint else _ATTACKS[kind](rng, n, Q, G, k)
    return H.astype(np.float32)


def mixed_hubs(n: int, queries: ArrayLike, gallery: ArrayLike, *, k: int = 10, seed: int = 0,
               kinds: Sequence[str] = ("centroid", "cluster", "optimized"),
               joint: bool = False) -> NDArray[np.float32]:
    """``n`` hubs split as evenly as possible over ``kinds`` (15 over three: 5 / 5 / 5), stacked in
    the order of ``kinds`` (the first kinds get one more when ``n`` does not divide).

    One random stream runs through the kinds, so the centroid start of ``optimized`` differs
    from the ``centroid`` hubs. Arguments and errors as :func:`plant_hubs` (``joint`` applies to
    the ``optimized`` part); ``kinds`` must be a non-empty sequence of distinct :data:`KINDS`.
    """
    if isinstance(kinds, str) or not isinstance(kinds, Iterable):
        raise InputError(f"kinds must be a sequence of attack kinds (e.g. {tuple(KINDS[:3])}), got {kinds!r}.")
    kinds = [_check_kind(x) for x in kinds]
    if not kinds or len(set(kinds)) != len(kinds):
        raise InputError(f"kinds must name distinct attack kinds, at least one, got {kinds!r}; "
                         f"choose from {', '.join(KINDS)}.")
    n = check_int(n, "n", hint="plant at least one hub.")
    Q, G = _inputs(queries, gallery)
    k = check_k(k, len(G), "k", "the gallery")
    rng = np.random.default_rng(seed)
    sizes = [n // len(kinds) + (i < n % len(kinds)) for i in range(len(kinds))]
    parts = [_optimized(rng, m, Q, G, k, joint=True) if joint and kind == "optimized" else
             _ATTACKS[kind](rng, m, Q, G, k) for kind, m in zip(kinds, sizes) if m]
    return np.concatenate(parts).astype(np.float32)


def _soft_hits(hubs: ArrayLike, queries: ArrayLike, gallery: ArrayLike, k: int, tau: float) -> np.ndarray:
    """``sigmoid((q.h - t_q) / tau)`` for every hub and query, shape (n_hubs, n_queries)."""
    tau = check_number(tau, "tau", low=0.0, low_open=True, hint="a similarity scale such as 0.02.")
    Q, G = _inputs(queries, gallery)
    H = _unit(check_vectors(hubs, "hubs", dim=Q.shape[1], dim_of="the queries' dimension").astype(np.float64))
    k = check_k(k, len(G), "k", "the gallery")
    t, _ = _kth_and_kocc(Q, G, k)
    return expit((H @ Q.T - t) / tau)


def hit_objective(hubs: ArrayLike, queries: ArrayLike, gallery: ArrayLike, *, k: int = 10,
                  tau: float = TAU) -> NDArray[np.float64]:
    """The ``optimized`` attack's objective per hub: ``sum_q sigmoid((q.h - t_q) / tau)``.

    ``t_q`` is query q's k-th best similarity in ``gallery``: the sum is a smooth count of the
    queries whose top-k the hub would enter (each term tends to 1 when ``q.h > t_q``, to 0
    below). Rows are normalised first (cosine). Returns one float per hub.
    """
    return _soft_hits(hubs, queries, gallery, k, tau).sum(axis=1)


def coverage_objective(hubs: ArrayLike, queries: ArrayLike, gallery: ArrayLike, *, k: int = 10,
                       tau: float = TAU) -> float:
    """The ``optimized`` attack's objective with ``joint=True``: ``sum_q 1 - prod_h (1 - s_qh)``,
    ``s_qh = sigmoid((q.h - t_q) / tau)`` as in :func:`hit_objective`: a smooth count of the
    queries whose top-k at least one of the hubs would enter (what :func:`hub_share` measures).
    """
    s = _soft_hits(hubs, queries, gallery, k, tau)
    return float(np.sum(1.0 - np.prod(1.0 - s, axis=0)))


def hub_share(top_ids: Any, planted: Iterable[Any]) -> float:
    """The share of result lists that hold at least one planted id.

    Parameters
    ----------
    top_ids : 2-D array or sequence of sequences
        One result list (point ids of any hashable type: ints, strings, UUIDs) per query.
    planted : iterable
        The planted points' ids.

    Returns
    -------
    float
        In ``[0, 1]``; an empty result list counts as clean.
    """
    rows = top_ids.tolist() if isinstance(top_ids, np.ndarray) else top_ids
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
        raise InputError("top_ids must be a list of result lists (one list of ids per query), "
                         f"got {type(top_ids).__name__}.")
    rows = list(rows)
    bad = next((i for i, r in enumerate(rows) if isinstance(r, (str, bytes)) or not isinstance(r, Iterable)), None)
    if bad is not None:
        raise InputError(f"top_ids row {bad} is not a list of ids ({rows[bad]!r}); pass one list per query, "
                         "e.g. [[p.id for p in r.points] for r in responses].")
    if not rows:
        raise InputError("top_ids is empty; pass at least one result list.")
    marked = set(planted.tolist() if isinstance(planted, np.ndarray) else planted)
    if not marked:
        raise InputError("planted is empty; pass the ids of the planted points.")
    return sum(any(i in marked for i in r) for r in rows) / len(rows)

