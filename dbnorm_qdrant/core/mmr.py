"""Qdrant's Maximal Marginal Relevance (MMR), with the relevance supplied by the caller.

Qdrant answers ``NearestQuery(nearest=q, mmr=Mmr(diversity, candidates_limit))`` by taking the
``candidates_limit`` nearest points and selecting ``limit`` of them greedily (Qdrant core
``maximal_marginal_relevance``, mirrored by qdrant-client local mode ``_mmr``):

- ``lambda = 1 - diversity`` (``diversity=None`` means 0.5);
- the first pick is the candidate most similar to the query;
- each next pick maximises ``lambda * relevance - (1 - lambda) * max_sim_to_selected``, where
  ``max_sim_to_selected`` is the largest similarity of the candidate to an already selected one;
- similarities are Qdrant's internal scores for the collection's distance: Cosine, the dot
  product of unit vectors; Dot, the dot product; Euclid, ``-||a - b||^2`` (squared, negated);
  Manhattan, ``-||a - b||_1``. The relevance Qdrant uses is the same internal score of the
  candidate against the query (for Euclid ``-distance**2``, not the distance it displays);
- ties: the pending candidates are an insertion-ordered set from which a pick is removed by
  ``swap_remove`` (the last pending candidate moves into its slot), and the pick is the *last*
  maximum in that order (Rust's ``max_by_key``), qdrant-client's ``last_argmax``;
- a selected point keeps its own query score: MMR orders, it does not re-score.

Here the relevance is an argument, so the same selection runs over normalised scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..validation import as_matrix, check_finite, check_int, check_number

__all__ = ["mmr", "MMR_DISTANCES", "DEFAULT_DIVERSITY"]

#: the distances Qdrant's MMR supports for dense vectors (``models.Distance`` values)
MMR_DISTANCES = ("Cosine", "Dot", "Euclid", "Manhattan")
#: Qdrant's diversity when ``Mmr(diversity=None)``
DEFAULT_DIVERSITY = 0.5


def _check_distance(distance: Any) -> str:
    name = getattr(distance, "value", distance)  # a models.Distance member or its value
    if name not in MMR_DISTANCES:
        raise InputError(
            f"distance must be one of {', '.join(MMR_DISTANCES)} (the collection's models.Distance), "
            f"got {distance!r}; pass the distance of the vector the candidates were searched on."
        )
    return name


def _similarity_rows(vectors: np.ndarray, distance: str):
    """``row(i)``: the similarity of candidate ``i`` to every candidate, as Qdrant scores pairs.

    Cosine / Dot in float64 (qdrant-client's ``cosine_similarity`` / ``dot_product`` over the
    vectors it reads back as Python floats); Euclid / Manhattan summed in float32, as its
    ``calculate_distance_core`` does.
    """
    if distance in ("Cosine", "Dot"):
        V = vectors.astype(np.float64)
        if distance == "Cosine":  # rows to unit norm; a zero row stays zero
            norms = np.linalg.norm(V, axis=1, keepdims=True)
            V /= np.where(norms != 0.0, norms, 1.0)
        return lambda i: V @ V[i]
    V32 = vectors.astype(np.float32)
    term = np.square if distance == "Euclid" else np.abs
    return lambda i: -term(V32 - V32[i], dtype=np.float32).sum(axis=1, dtype=np.float32).astype(np.float64)


def mmr(
    relevance: np.ndarray,
    vectors: np.ndarray,
    distance: str,
    diversity: float | None,
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Qdrant's MMR selection of ``limit`` candidates, ranked by the given ``relevance``.

    Parameters
    ----------
    relevance:
        ``(n,)`` finite scores of the candidates for the query, higher is better. With Qdrant's
        internal similarity (Cosine / Dot: the returned score; Euclid: ``-score**2``;
        Manhattan: ``-score``) the result is Qdrant's own MMR; the wrapper passes the
        normalised score instead.
    vectors:
        ``(n, d)`` the candidates' vectors (the ``using`` vector, as Qdrant returns them).
    distance:
        The collection's distance for that vector: ``"Cosine"``, ``"Dot"``, ``"Euclid"`` or
        ``"Manhattan"`` (or a ``models.Distance``); it defines the similarity between candidates.
    diversity:
        ``Mmr.diversity`` in ``[0, 1]``; ``None`` is Qdrant's default 0.5. ``lambda = 1 - diversity``.
    limit:
        How many to select (>= 1); fewer when there are fewer candidates.

    Returns
    -------
    (order, scores)
        ``order``: int64 indices into the candidates, in selection order; ``scores``: float64,
        ``relevance[order]`` (Qdrant returns each selected point with its own query score, not
        its MMR score; for raw Euclid the score shown is the distance, ``sqrt(-relevance)``).

    Cost: O(limit * n * d) time and O(n * d) memory; the similarity matrix is never built, the
    max similarity to the selected set is kept per candidate and updated with each pick.
    """
    dist = _check_distance(distance)
    limit = check_int(limit, "limit", hint="it is the number of points MMR selects.")
    div = DEFAULT_DIVERSITY if diversity is None else check_number(
        diversity, "diversity", low=0.0, high=1.0,
        hint="0 ranks by relevance only, 1 by diversity only; None is Qdrant's default 0.5.",
    )
    rel = np.asarray(relevance)
    if rel.ndim != 1 or rel.dtype.kind not in "fiu":
        raise InputError(
            f"relevance must be a 1-D numeric array (one score per candidate), got shape {rel.shape} "
            f"and dtype {rel.dtype}; pass the candidates' scores, "
            "e.g. numpy.array([p.score for p in points])."
        )
    rel = rel.astype(np.float64)
    check_finite(rel, "relevance")
    V = as_matrix(vectors, "vectors", allow_empty=True)
    if V.shape[0] != rel.shape[0]:
        raise InputError(
            f"vectors has {V.shape[0]} rows but relevance has {rel.shape[0]} scores; pass one vector and "
            "one score per candidate, in the same order."
        )
    n = rel.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)

    lam = 1.0 - div
    sim_row = _similarity_rows(V, dist)
    pending = np.arange(n)  # Qdrant's insertion-ordered set; pending[:m] are still pending
    m = n
    order: list[int] = []
    max_sim = np.empty(n, dtype=np.float64)

    def take(pos: int) -> int:
        """swap_remove: the last pending candidate moves into the picked one's slot."""
        nonlocal m
        picked = int(pending[pos])
        pending[pos] = pending[m - 1]
        m -= 1
        return picked

    def last_argmax(x: np.ndarray) -> int:
        return len(x) - 1 - int(np.argmax(x[::-1]))

    first = take(last_argmax(rel))
    order.append(first)
    max_sim[:] = sim_row(first)
    while len(order) < limit and m > 0:
        idx = pending[:m]
        scores = lam * rel[idx] - (1.0 - lam) * max_sim[idx]
        if np.isneginf(scores).all():  # qdrant-client: nothing left that passes
            break
        picked = take(last_argmax(scores))
        order.append(picked)
        np.maximum(max_sim, sim_row(picked), out=max_sim)
    out = np.asarray(order, dtype=np.int64)
    return out, rel[out]
