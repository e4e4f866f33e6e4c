"""Retrieval and hubness metrics for a query x gallery similarity matrix.

Conventions follow ``docs/methods.md`` section 4 and the official code of the papers:

* Ranks are 0-based and **tie-averaged** (QB-Norm's ``metric.py``): the rank of the correct item is
  ``#{s > s_gt} + (#{s == s_gt} - 1) / 2``, never the optimistic ``#{s > s_gt}``.
* ``R@K = 100 * mean(rank < K)`` (percent), ``MedR = median(rank) + 1``, ``MeanR = mean(rank) + 1``.
  Figures are returned unrounded; QB-Norm's code rounds them to one decimal.
* The k-occurrence ``N_k(g)`` of gallery item ``g`` is the number of queries that have ``g`` in their
  top-k. Ties at the k-th place are broken in favour of the lower gallery index, i.e. the top-k set is
  that of a stable sort of ``-sims`` (the convention of the conformance files).
* ``k_skewness`` is the population skewness (``scipy.stats.skew(..., bias=True)``) of ``N_k`` over
  *all* gallery items, zeros included; ``k_skewness_retrieved`` is DBNorm's ``get_skewness``, which
  only counts items retrieved at least once. The two differ whenever some item is never retrieved.

Everything works row-chunk by row-chunk so a large matrix is never copied, sorted or compared whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..validation import as_matrix, check_finite, check_k

__all__ = [
    "ranks",
    "retrieval_metrics",
    "topk_indices",
    "k_occurrence",
    "hubness_metrics",
    "evaluate",
]

#: Number of matrix elements processed at once (row chunks hold about this many entries).
_CHUNK_ELEMENTS = 1 << 22

#: Default recall cut-offs.
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50)


# ----------------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------------
def _as_sims(sims: Any) -> np.ndarray:
    """Return ``sims`` as a finite, non-empty 2-D float array (no copy for float32/float64)."""
    arr = as_matrix(sims, "sims", allow_empty=True, finite=False)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(
            f"sims is empty (shape {arr.shape}); pass a similarity matrix with at least one query "
            "row and one gallery column."
        )
    check_finite(arr, "sims")
    return arr


def _chunk_step(n_cols: int) -> int:
    """Rows per chunk so that a chunk holds about ``_CHUNK_ELEMENTS`` entries."""
    return max(1, _CHUNK_ELEMENTS // max(1, n_cols))


def _check_int_array(a: np.ndarray, name: str, hint: str) -> np.ndarray:
    if a.size == 0:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        raise InputError(f"{name} must hold integer gallery indices, got dtype {a.dtype}; {hint}")
    return a.astype(np.int64, copy=False)


def _check_range(idx: np.ndarray, n_gallery: int, name: str) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n_gallery):
        bad = int(idx[(idx < 0) | (idx >= n_gallery)][0])
        raise InputError(
            f"{name} holds gallery index {bad}, outside 0..{n_gallery - 1} (the gallery has "
            f"{n_gallery} columns); check that the indices refer to this similarity matrix's columns."
        )


def _normalise_gt(
    gt: Any, n_queries: int, n_gallery: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Bring ``gt`` into CSR form.

    Returns ``(indices, indptr)``; ``indptr`` is None in the one-correct-item-per-query case, where
    ``indices[i]`` is the correct item of query ``i``. Otherwise the correct items of query ``i`` are
    ``indices[indptr[i]:indptr[i + 1]]``.
    """
    hint = "pass one index per query, one sequence of indices per query, or a boolean mask."
    if gt is None:
        if n_queries > n_gallery:
            raise InputError(
                f"the default ground truth is the identity (query i matches gallery item i), which "
                f"needs n_queries <= n_gallery, but sims has shape ({n_queries}, {n_gallery}); "
                "pass gt explicitly."
            )
        return np.arange(n_queries, dtype=np.int64), None

    if isinstance(gt, np.ndarray) and gt.dtype == bool:
        if gt.shape != (n_queries, n_gallery):
            raise InputError(
                f"a boolean gt mask must have the shape of sims, ({n_queries}, {n_gallery}), got "
                f"{gt.shape}; set mask[i, j] = True when gallery item j is correct for query i."
            )
        rows, cols = np.nonzero(gt)
        counts = np.bincount(rows, minlength=n_queries)
        _check_nonempty(counts)
        indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        return cols.astype(np.int64), indptr

    if isinstance(gt, np.ndarray) and gt.dtype != object:
        arr = gt
        if arr.ndim == 0 or arr.ndim > 2:
            raise InputError(f"gt must be 1-D or 2-D, got shape {arr.shape}; {hint}")
        arr = _check_int_array(arr, "gt", hint)
        _check_length(arr.shape[0], n_queries)
        _check_range(arr, n_gallery, "gt")
        if arr.ndim == 1:
            return arr, None
        if arr.shape[1] == 0:
            _check_nonempty(np.zeros(n_queries, dtype=np.int64))
        m = arr.shape[1]
        return arr.reshape(-1), np.arange(0, (n_queries + 1) * m, m, dtype=np.int64)

    if isinstance(gt, (str, bytes)) or not isinstance(gt, (Sequence, np.ndarray)):
        raise InputError(f"gt must be array-like, got {type(gt).__name__}; {hint}")

    items = list(gt)
    _check_length(len(items), n_queries)
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in items):
        arr = np.asarray(items, dtype=np.int64)
        _check_range(arr, n_gallery, "gt")
        return arr, None
    parts = []
    for x in items:
        part = np.atleast_1d(np.asarray(x))
        if part.ndim != 1:
            raise InputError(f"each entry of gt must be an index or a flat sequence of indices; {hint}")
        parts.append(_check_int_array(part, "gt", hint))
    counts = np.array([p.size for p in parts], dtype=np.int64)
    _check_nonempty(counts)
    indices = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    _check_range(indices, n_gallery, "gt")
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return indices, indptr


def _check_length(n_gt: int, n_queries: int) -> None:
    if n_gt != n_queries:
        raise InputError(
            f"gt has {n_gt} entries but sims has {n_queries} query rows; give exactly one "
            "ground-truth entry per query row."
        )


def _check_nonempty(counts: np.ndarray) -> None:
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise InputError(
            f"query {int(empty[0])} has no correct gallery item in gt ({empty.size} such queries); "
            "every query needs at least one, so drop those rows from sims first."
        )


def _check_ks(ks: Any) -> tuple[int, ...]:
    try:
        out = tuple(ks)
    except TypeError:
        raise InputError(f"ks must be a sequence of positive integers, got {ks!r}.") from None
    for K in out:
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
            raise InputError(f"ks must hold positive integers (recall cut-offs), got {ks!r}.")
    return tuple(int(K) for K in out)


# ----------------------------------------------------------------------------------------------------
# retrieval metrics
# ----------------------------------------------------------------------------------------------------
def ranks(sims: ArrayLike, gt: Any = None) -> NDArray[np.float64]:
    """Tie-averaged 0-based rank of the ground-truth item for every query row.

    For query ``i`` with correct item ``g`` the rank is ``#{j: s_ij > s_ig} + (#{j: s_ij == s_ig} - 1) / 2``,
    the mean position of ``g`` over all orderings of its ties (QB-Norm's ``metric.py``). With several
    correct items the best (smallest) of their ranks counts; the other correct items still occupy
    positions, as in QB-Norm's ``v2t_metrics``.

    Parameters
    ----------
    sims : array_like, shape (n_queries, n_gallery)
        Similarities, higher is better. float32 and float64 are used as they are (no copy); other
        real dtypes are converted to float64. Must be finite.
    gt : None, array_like of int, sequence of sequences of int, or bool array, optional
        Ground truth.

        * ``None`` (default): identity, query ``i`` matches gallery item ``i``
          (requires ``n_queries <= n_gallery``).
        * 1-D integer array of length ``n_queries``: one correct item per query. Repeated values
          (several queries sharing a gallery item, many-to-one) are allowed.
        * 2-D integer array ``(n_queries, m)`` or a sequence of ``n_queries`` integer sequences:
          several correct items per query (one-to-many).
        * 2-D boolean mask of the shape of ``sims``: ``mask[i, j]`` is True when item ``j`` is
          correct for query ``i``.

    Returns
    -------
    numpy.ndarray of float64, shape (n_queries,)
        Ranks; integers or half-integers.

    Raises
    ------
    ValueError
        If ``sims`` is not a finite, non-empty 2-D array, or ``gt`` has the wrong length, an index
        outside the gallery, or a query without any correct item.

    Examples
    --------
    >>> ranks([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2]]).tolist()
    [0.0, 1.0]
    """
    S = _as_sims(sims)
    n_q, n_g = S.shape
    indices, indptr = _normalise_gt(gt, n_q, n_g)
    if indptr is None:
        s_gt = S[np.arange(n_q), indices]
    else:
        rows = np.repeat(np.arange(n_q), np.diff(indptr))
        # best correct item = the one with the highest similarity (rank is monotone in it)
        s_gt = np.maximum.reduceat(S[rows, indices], indptr[:-1])

    out = np.empty(n_q, dtype=np.float64)
    step = _chunk_step(n_g)
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        chunk = S[start:stop]
        ref = s_gt[start:stop, None]
        greater = np.count_nonzero(chunk > ref, axis=1)
        equal = np.count_nonzero(chunk == ref, axis=1)
        out[start:stop] = greater + (equal - 1) / 2.0
    return out


def retrieval_metrics(
    sims: ArrayLike | None = None,
    gt: Any = None,
    *,
    ranks: ArrayLike | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Recall at K, median rank and mean rank.

    Parameters
    ----------
    sims : array_like, shape (n_queries, n_gallery), optional
        Similarity matrix; give either ``sims`` (with ``gt``) or ``ranks``.
    gt : optional
        Ground truth, as in :func:`ranks`.
    ranks : array_like of float, shape (n_queries,), optional
        Precomputed 0-based ranks (e.g. from :func:`ranks`).
    ks : sequence of int, default (1, 5, 10, 50)
        Recall cut-offs.

    Returns
    -------
    dict of str to float
        ``"R{K}"`` for each ``K`` in ``ks`` (``100 * mean(rank < K)``, percent), ``"MedR"``
        (``median(rank) + 1``) and ``"MeanR"`` (``mean(rank) + 1``). Values are unrounded Python
        floats; the official code reports them rounded to one decimal.

    Raises
    ------
    ValueError
        If neither or both of ``sims`` and ``ranks`` are given, ``ranks`` is empty, not 1-D, or not
        finite and non-negative, ``ks`` holds a non-positive cut-off, or ``sims`` / ``gt`` are invalid
        (see :func:`ranks`).

    Examples
    --------
    >>> retrieval_metrics(ranks=[0, 1, 3], ks=(1, 5))
    {'R1': 33.33333333333333, 'R5': 100.0, 'MedR': 2.0, 'MeanR': 2.333333333333333}
    """
    if (sims is None) == (ranks is None):
        raise InputError(
            "retrieval_metrics needs exactly one of sims (with gt) or ranks=; "
            f"got {'both' if sims is not None else 'neither'}."
        )
    ks = _check_ks(ks)
    if ranks is None:
        r = _ranks(sims, gt)
    else:
        if gt is not None:
            raise InputError("gt is only used with sims; ranks= already encodes the ground truth.")
        r = np.asarray(ranks, dtype=np.float64)
        if r.ndim != 1 or r.size == 0:
            raise InputError(
                f"ranks must be a non-empty 1-D array (one rank per query), got shape {r.shape}."
            )
        if not np.isfinite(r).all() or (r < 0).any():
            raise InputError(
                "ranks must be finite and >= 0 (0-based ranks as returned by ranks()); "
                "convert 1-based ranks with r - 1."
            )
    out: dict[str, float] = {f"R{K}": float(100.0 * np.mean(r < K)) for K in ks}
    out["MedR"] = float(np.median(r) + 1.0)
    out["MeanR"] = float(np.mean(r) + 1.0)
    return out


_ranks = ranks  # retrieval_metrics has a parameter called ``ranks``


# ----------------------------------------------------------------------------------------------------
# hubness
# ----------------------------------------------------------------------------------------------------
def topk_indices(sims: ArrayLike, top_k: int = 10) -> NDArray[np.int64]:
    """Indices of each query's ``top_k`` most similar gallery items, best first.

    Uses ``argpartition`` on row chunks (never a full sort). Ties are broken in favour of the lower
    gallery index, so the result equals ``np.argsort(-sims, axis=1, kind="stable")[:, :top_k]``.

    Parameters
    ----------
    sims : array_like, shape (n_queries, n_gallery)
        Finite similarities, higher is better.
    top_k : int, default 10
        Results per query, ``1 <= top_k <= n_gallery``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_queries, top_k)
        Gallery indices in decreasing order of similarity.

    Raises
    ------
    ValueError
        If ``sims`` is not a finite, non-empty 2-D array or ``top_k`` is out of range.
    """
    S = _as_sims(sims)
    n_q, n_g = S.shape
    k = check_k(top_k, n_g, "top_k")
    out = np.empty((n_q, k), dtype=np.int64)
    step = _chunk_step(n_g)
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        chunk = S[start:stop]
        if k < n_g:
            part = np.argpartition(chunk, n_g - k, axis=1)[:, n_g - k :]
        else:
            part = np.broadcast_to(np.arange(n_g), chunk.shape).copy()
        part.sort(axis=1)  # ascending index, so the stable sort below breaks ties by index
        vals = np.take_along_axis(chunk, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)
        if k < n_g:
            # argpartition picks arbitrarily among items tied with the k-th value; redo those rows
            kth = np.take_along_axis(chunk, top[:, -1:], axis=1)
            n_tied = np.count_nonzero(chunk == kth, axis=1)
            n_tied_kept = np.count_nonzero(np.take_along_axis(chunk, top, axis=1) == kth, axis=1)
            for i in np.flatnonzero(n_tied > n_tied_kept):
                top[i] = np.argsort(-chunk[i], kind="stable")[:k]
        out[start:stop] = top
    return out


def k_occurrence(
    sims: ArrayLike | None = None,
    k: int | None = None,
    *,
    topk: ArrayLike | None = None,
    n_gallery: int | None = None,
) -> NDArray[np.int64]:
    """k-occurrence ``N_k(g)``: how many queries have gallery item ``g`` in their top-k.

    Parameters
    ----------
    sims : array_like, shape (n_queries, n_gallery), optional
        Similarity matrix; give either ``sims`` or ``topk``.
    k : int, optional
        Neighbourhood size. Defaults to 10 with ``sims``; with ``topk`` it defaults to (and, when
        given, must equal) ``topk.shape[1]``.
    topk : array_like of int, shape (n_queries, k), optional
        Precomputed top-k gallery indices per query (e.g. :func:`topk_indices`, or a search engine's
        result lists). Requires ``n_gallery``.
    n_gallery : int, optional
        Gallery size; required with ``topk`` (items never retrieved must still be counted).

    Returns
    -------
    numpy.ndarray of int64, shape (n_gallery,)
        ``N_k`` for every gallery item; it sums to ``k * n_queries``.

    Raises
    ------
    ValueError
        If neither or both of ``sims`` and ``topk`` are given, ``k`` is out of range, ``topk`` is not
        a 2-D integer array, holds an index outside ``0..n_gallery-1`` or repeats an item within a
        row, or ``n_gallery`` is missing.
    """
    if (sims is None) == (topk is None):
        raise InputError(
            "k_occurrence needs exactly one of sims or topk=; "
            f"got {'both' if sims is not None else 'neither'}."
        )
    if sims is not None:
        if n_gallery is not None:
            raise InputError("n_gallery is only used with topk=; with sims it is sims.shape[1].")
        S = _as_sims(sims)
        top = topk_indices(S, 10 if k is None else k)
        return np.bincount(top.ravel(), minlength=S.shape[1]).astype(np.int64)

    if n_gallery is None:
        raise InputError(
            "k_occurrence(topk=...) needs n_gallery=, the number of gallery items, so that items "
            "never retrieved are counted as zeros."
        )
    if isinstance(n_gallery, bool) or not isinstance(n_gallery, (int, np.integer)) or n_gallery < 1:
        raise InputError(f"n_gallery must be a positive integer, got {n_gallery!r}.")
    n_gallery = int(n_gallery)
    top = np.asarray(topk)
    if top.ndim != 2 or top.size == 0:
        raise InputError(
            f"topk must be a non-empty 2-D array (n_queries x k), got shape {top.shape}; "
            "reshape a single result list with x[None, :]."
        )
    top = _check_int_array(top, "topk", "pass the top-k gallery indices of each query.")
    if k is not None:
        k = check_k(k, n_gallery)
        if k != top.shape[1]:
            raise InputError(
                f"k={k} but topk has {top.shape[1]} columns; pass the top-k lists for this k "
                "(or leave k out)."
            )
    check_k(top.shape[1], n_gallery, name="topk.shape[1]")
    _check_range(top, n_gallery, "topk")
    srt = np.sort(top, axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if dup.size:
        raise InputError(
            f"topk row {int(dup[0])} lists the same gallery item twice ({dup.size} such rows); "
            "each query's top-k must hold k distinct items."
        )
    return np.bincount(top.ravel(), minlength=n_gallery).astype(np.int64)


def _skew(x: np.ndarray) -> float:
    """Population skewness; NaN when all values are equal (undefined), without scipy's warning."""
    if x.size == 0 or np.all(x == x[0]):
        return float("nan")
    return float(scipy.stats.skew(x.astype(np.float64), bias=True))


def hubness_metrics(
    sims: ArrayLike | None = None,
    k: int = 10,
    *,
    occurrence: ArrayLike | None = None,
    n_top: int = 10,
) -> dict[str, Any]:
    """Hubness of a retrieval: k-skewness, Robin Hood index, antihubs and hubs.

    Parameters
    ----------
    sims : array_like, shape (n_queries, n_gallery), optional
        Similarity matrix; give either ``sims`` or ``occurrence``.
    k : int, default 10
        Neighbourhood size. With ``occurrence`` it must be the ``k`` it was computed with (it sets
        the hub threshold ``N_k >= 2k``).
    occurrence : array_like of int, shape (n_gallery,), optional
        Precomputed k-occurrence vector (:func:`k_occurrence`). Its sum must be a multiple of
        ``k`` (``k * n_queries``).
    n_top : int, default 10
        How many of the most frequent items to list under ``"top_hubs"``.

    Returns
    -------
    dict
        * ``"k_skewness"``: population skewness (``scipy.stats.skew(bias=True)``) of ``N_k`` over all
          gallery items, zeros included (docs/methods.md §4).
        * ``"k_skewness_retrieved"``: the same over items with ``N_k > 0`` only, DBNorm's
          ``get_skewness``.
        * ``"robin_hood"``: ``0.5 * sum_g |N_k(g) - mean(N_k)| / sum_g N_k(g)``, in [0, 1).
        * ``"antihub_rate"``: share of gallery items with ``N_k == 0``.
        * ``"hub_occurrence"``: share of all ``k * n_queries`` top-k slots taken by items with
          ``N_k >= 2k``.
        * ``"top_hubs"``: list of ``(index, N_k)`` tuples of Python ints for the ``n_top`` largest
          ``N_k``, largest first (ties: lower index first).

        Skewness values are NaN when undefined (all counts equal).

    Raises
    ------
    ValueError
        If neither or both of ``sims`` and ``occurrence`` are given, ``k`` or ``n_top`` is not a
        positive integer (``k <= n_gallery``), or ``occurrence`` is not a non-empty 1-D array of
        non-negative integers whose sum is a positive multiple of ``k``.
    """
    if (sims is None) == (occurrence is None):
        raise InputError(
            "hubness_metrics needs exactly one of sims or occurrence=; "
            f"got {'both' if sims is not None else 'neither'}."
        )
    if isinstance(n_top, bool) or not isinstance(n_top, (int, np.integer)) or n_top < 1:
        raise InputError(f"n_top must be a positive integer, got {n_top!r}.")
    if sims is not None:
        occ = k_occurrence(sims, k)
    else:
        occ = np.asarray(occurrence)
        if occ.ndim != 1 or occ.size == 0:
            raise InputError(
                f"occurrence must be a non-empty 1-D array (one count per gallery item), got shape "
                f"{occ.shape}; compute it with k_occurrence()."
            )
        if np.issubdtype(occ.dtype, np.floating) and np.isfinite(occ).all() and (occ == np.round(occ)).all():
            occ = occ.astype(np.int64)
        occ = _check_int_array(occ, "occurrence", "it counts how often each item is retrieved.")
        if (occ < 0).any():
            raise InputError("occurrence holds negative counts; it must come from k_occurrence().")
        k = check_k(k, occ.size)
        total = int(occ.sum())
        if total == 0 or total % k:
            raise InputError(
                f"occurrence sums to {total}, which is not a positive multiple of k={k}; every query "
                "fills exactly k top-k slots, so pass the k the counts were computed with."
            )
    k = int(k)
    total = int(occ.sum())
    retrieved = occ[occ > 0]
    n_top = min(int(n_top), occ.size)
    order = np.lexsort((np.arange(occ.size), -occ))[:n_top]
    return {
        "k_skewness": _skew(occ),
        "k_skewness_retrieved": _skew(retrieved),
        "robin_hood": float(0.5 * np.abs(occ - occ.mean()).sum() / total),
        "antihub_rate": float(np.mean(occ == 0)),
        "hub_occurrence": float(occ[occ >= 2 * k].sum() / total),
        "top_hubs": [(int(i), int(occ[i])) for i in order],
    }


def evaluate(
    sims: ArrayLike,
    gt: Any = None,
    k: int = 10,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    n_top: int = 10,
) -> dict[str, Any]:
    """Retrieval and hubness metrics of one similarity matrix in a single dict.

    Parameters
    ----------
    sims : array_like, shape (n_queries, n_gallery)
        Finite similarities, higher is better.
    gt : optional
        Ground truth, as in :func:`ranks` (default: identity).
    k : int, default 10
        Neighbourhood size for the hubness measures.
    ks : sequence of int, default (1, 5, 10, 50)
        Recall cut-offs.
    n_top : int, default 10
        Length of the ``"top_hubs"`` list.

    Returns
    -------
    dict
        The keys of :func:`retrieval_metrics` followed by those of :func:`hubness_metrics`.

    Raises
    ------
    ValueError
        On invalid input, as described for :func:`ranks` and :func:`hubness_metrics`.
    """
    S = _as_sims(sims)
    out: dict[str, Any] = dict(retrieval_metrics(S, gt, ks=ks))
    out.update(hubness_metrics(S, k, n_top=n_top))
    return out
