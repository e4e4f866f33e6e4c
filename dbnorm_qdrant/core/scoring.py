"""Scoring: a method's per-item bias, its gates, and the normalised scores of a raw block.

Every method scores a (query, gallery item) pair as ``s(q, g) - bias(g)`` in the
units of the similarity itself (docs/methods.md §3.6). Only the dynamic methods (``dis``,
``dualdis``) look at the query, through two gates: whether the query's raw top-1 item
is in the query-bank (resp. gallery-bank) activation set.

Two modes (docs/methods.md §3):

- **log-domain** (default): the score above. For ``is`` and ``dualis`` it equals
  ``log(official value) / (beta_q + beta_g)``, so rankings are identical and nothing
  overflows. For ``dis`` an activated row is ``s - lse_q`` and a closed one raw ``s``.
  For ``dualdis`` it is the clean gated form
  ``s - (a_q beta_q lse_q + a_g beta_g lse_g) / (beta_q + beta_g)``.
- **faithful**: the values the official QB-Norm / DBNorm code returns (ratios of
  exponentials; a closed DualDIS gate contributes the raw score as a factor, so a row
  with both gates closed scores ``s**2`` — the official quirk). Computed from the same
  statistics as ``exp(beta * (s - lse))``, so it matches the official values to
  round-off without overflowing where they do not.
"""

from __future__ import annotations

import numpy as np

from ..kernels._tiles import for_row_chunks
from .params import Params
from .spec import SPECS
from .stats import GalleryStats
from ..errors import InputError

__all__ = ["bias", "gates", "score", "faithful"]


# --------------------------------------------------------------------------- biases
def _weights(p: Params) -> tuple[float, float]:
    """The weights of ``lse_q`` and ``lse_g`` in a dual method's bias (``beta / (beta_q + beta_g)``)."""
    if p.uses_gallery_bank:
        tot = p.beta_q + p.beta_g
        return p.beta_q / tot, p.beta_g / tot
    return 1.0, 0.0


def _need(stats: GalleryStats, field: str, p: Params) -> np.ndarray:
    v = getattr(stats, field)
    if v is None:
        raise InputError(
            f"method {p.method!r} needs the gallery statistic {field!r}, which these statistics lack; "
            "recompute them with the same Params (BankNormalizer.gallery_stats)."
        )
    return v


def bias(stats: GalleryStats, p: Params) -> np.ndarray:
    """The additive bias of each item (docs/methods.md §3.1-§3.5; gates taken open for ``dis``/``dualdis``).

    ``csls`` halves ``topk_mean_q``: ``2 s - r_Q`` ranks like ``s - r_Q / 2``.
    """
    m = p.method
    if m == "none":
        return np.zeros(stats.n)
    if m in ("is", "dis"):
        return _need(stats, "lse_q", p).astype(np.float64, copy=False)
    if p.uses_gallery_bank:
        wq, wg = _weights(p)
        return wq * _need(stats, "lse_q", p) + wg * _need(stats, "lse_g", p)
    if m == "csls":
        return 0.5 * _need(stats, "topk_mean_q", p)
    if m == "nnn":
        return float(p.alpha) * _need(stats, "topk_mean_q", p)
    if m == "centrality":
        return float(p.alpha) * _need(stats, "mean_q", p)
    if m == "uniform":  # s + lambda * v / beta, v the Sinkhorn gallery potential (uniform_v = v / beta)
        return -float(p.alpha) * _need(stats, "uniform_v", p)
    raise AssertionError(m)


def gates(stats: GalleryStats, p: Params, top1: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Gate values ``(a_q, a_g)`` (bool arrays) for queries whose raw top-1 item is ``top1`` (docs/methods.md §3.2)."""
    top1 = np.atleast_1d(np.asarray(top1, dtype=np.int64))
    if not p.gated:
        ones = np.ones(top1.shape, dtype=bool)
        return ones, ones if p.uses_gallery_bank else np.zeros(top1.shape, dtype=bool)
    a_q = _need(stats, "act_q", p)[top1]
    a_g = _need(stats, "act_g", p)[top1] if p.uses_gallery_bank else np.zeros(top1.shape, dtype=bool)
    return a_q, a_g


def score(
    S: np.ndarray,
    stats: GalleryStats,
    p: Params,
    *,
    top1: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Log-domain scores of a (queries x items) raw score block, in similarity units.

    ``S[i, j]`` is the raw score of query ``i`` and item ``j`` whose statistics are
    ``stats.take([j])``. For gated methods ``top1[i]`` is the column of query ``i``'s
    raw top-1 item (default: the row argmax of ``S``, right when ``S`` covers the
    whole gallery or the raw top-N candidates).
    """
    S = np.asarray(S)
    dtype = S.dtype if S.dtype in (np.float32, np.float64) else np.float64
    if out is None:
        out = np.empty(S.shape, dtype=dtype)
    if p.method == "none":
        np.copyto(out, S)
        return out
    if not p.gated:
        b = bias(stats, p).astype(dtype)
        for_row_chunks(S.shape[0], S.size, lambda r0, r1: np.subtract(S[r0:r1], b, out=out[r0:r1]))
        return out
    if top1 is None:
        top1 = np.argmax(S, axis=1)
    a_q, a_g = gates(stats, p, top1)
    wq, wg = _weights(p)
    bq = (wq * _need(stats, "lse_q", p)).astype(dtype)
    bg = (wg * _need(stats, "lse_g", p)).astype(dtype) if p.uses_gallery_bank else None
    np.copyto(out, S)
    rows_q = np.flatnonzero(a_q)
    if rows_q.size:
        out[rows_q] -= bq
    if bg is not None:
        rows_g = np.flatnonzero(a_g)
        if rows_g.size:
            out[rows_g] -= bg
    return out


def faithful(S: np.ndarray, stats: GalleryStats, p: Params) -> np.ndarray:
    """The official implementations' values (see module docstring), in float64."""
    S = np.asarray(S, dtype=np.float64)
    m = p.method
    if "lse_q" not in SPECS[m].bias_fields:
        return score(S, stats, p)  # no official softmax code: the log-domain score is the definition
    top1 = np.argmax(S, axis=1)
    lse_q = stats.lse_q
    f_q = np.exp(p.beta_q * (S - lse_q))
    if m == "is":
        return f_q
    if m == "dualis":
        f_q *= np.exp(p.beta_g * (S - stats.lse_g))
        return f_q
    a_q, a_g = gates(stats, p, top1)
    f_q[~a_q] = S[~a_q]  # closed gate: the raw score
    if m == "dis":
        return f_q
    f_g = np.exp(p.beta_g * (S - stats.lse_g))
    f_g[~a_g] = S[~a_g]
    f_q *= f_g  # both gates closed -> s * s (official quirk)
    return f_q
