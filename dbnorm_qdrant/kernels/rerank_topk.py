"""The query-time kernel of the Qdrant layer: rerank N candidates from cached biases.

An additive method scores a candidate as ``s - bias(g)`` (:func:`~dbnorm_qdrant.methods.score`),
with ``bias(g)`` computed once per point when its statistics enter the cache. Reranking
a query's candidates is then a gather, a subtraction and a top-k selection. Done as one
compiled call it replaces a dozen small NumPy calls, each of which costs microseconds
when the CPU caches are cold (as they are after a local-mode Qdrant query, which
streams the whole collection through them, or after waiting on a server).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["additive_topk"]

#: up to this many ranks, the top is kept by insertion into the output buffers (no
#: allocation); beyond, by one stable argsort of all the candidates
_INSERTION_MAX = 64


@nb.njit(nogil=True, cache=True)
def additive_topk(cand, sign, dense, bias, ref, offset, limit, out_pos, out_score):  # pragma: no cover - compiled
    """Rerank ``n`` candidates; returns how many ranks were written, or ``-1``.

    Parameters
    ----------
    cand : float64[2n]
        The candidates' point keys (or, with ``dense=None``, their cache rows), then their
        raw Qdrant scores: one array, built by one conversion (a key in ``dense``'s range
        is far below 2**53, so exact). ``sim = sign * raw`` (``sign = -1``: Euclid
        distances).
    dense, bias, ref :
        The cache's dense key -> row index (``-1``: absent; ``None``: ``cand`` holds rows),
        its bias column and its reference bits (set for every candidate read).
    offset, limit :
        The ranks wanted: ``[offset, offset + limit)``.
    out_pos, out_score : int64[>= offset + limit], float64[...]
        Receive the candidates' positions and normalised scores ``sim - bias``, best
        first, ties in candidate order (as a stable sort); ranks from ``offset`` on.

    Returns ``-1`` when some candidate cannot be scored here (a key outside ``dense``,
    not cached, no bias filled, or a NaN score); the caller then takes the general path.
    """
    n = len(cand) // 2
    k = min(offset + limit, n)
    if k <= 0:
        return 0
    vals = np.empty(n) if k > _INSERTION_MAX else out_score[:0]
    m = 0  # ranks held in the buffers (insertion)
    for j in range(n):
        x = cand[j]
        if dense is None:  # resolved when compiling: one specialisation each
            r = int(x)
        else:
            if not (x >= 0 and x < len(dense)):
                return -1
            r = dense[int(x)]
            if r < 0:
                return -1
        s = cand[n + j] if sign > 0 else -cand[n + j]
        v = s - bias[r]
        if v != v:  # NaN: no bias filled (or a NaN score)
            return -1
        ref[r] = True
        if k > _INSERTION_MAX:
            vals[j] = -v
            continue
        if m == k and not v > out_score[k - 1]:
            continue
        i = m if m < k else k - 1  # insert after every score >= v: ties keep candidate order
        while i > 0 and out_score[i - 1] < v:
            out_score[i] = out_score[i - 1]
            out_pos[i] = out_pos[i - 1]
            i -= 1
        out_score[i] = v
        out_pos[i] = j
        if m < k:
            m += 1
    if k > _INSERTION_MAX:
        order = np.argsort(vals, kind="mergesort")  # stable
        for i in range(k):
            out_pos[i] = order[i]
            out_score[i] = -vals[order[i]]
    lo = min(offset, k)
    for i in range(lo, k):  # drop the first ``offset`` ranks
        out_pos[i - lo] = out_pos[i]
        out_score[i - lo] = out_score[i]
    return k - lo
