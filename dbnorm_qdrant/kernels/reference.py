"""Dense NumPy reference kernel: the definition every fast backend is tested against.

It materialises the whole bank-by-gallery matrix in float64, so it is meant for tests
and small inputs, not for large galleries.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .base import Reduced, Request



def _exclusion_mask(bank_keys, gallery_keys, m: int, n: int) -> np.ndarray | None:
    if bank_keys is None or gallery_keys is None:
        return None
    bk = np.asarray(bank_keys, dtype=np.int64)
    gk = np.asarray(gallery_keys, dtype=np.int64)
    mask = (bk[:, None] == gk[None, :]) & (bk[:, None] >= 0)
    return mask if mask.any() else None


def reduce_sims(S_bank: np.ndarray, req: Request, bank_keys=None, gallery_keys=None) -> Reduced:
    """Reduce a given bank-by-gallery similarity matrix (see :class:`Request`)."""
    S = np.asarray(S_bank, dtype=np.float64)
    m, n = S.shape
    mask = _exclusion_mask(bank_keys, gallery_keys, m, n)
    Sx = S if mask is None else np.where(mask, -np.inf, S)
    out = Reduced()
    out.lse = np.empty((len(req.betas), n))
    for i, beta in enumerate(req.betas):
        out.lse[i] = logsumexp(beta * Sx, axis=0) / beta
    if req.topk:
        k = req.topk
        part = -np.partition(-Sx, k - 1, axis=0)[:k]
        out.topk_mean = part.mean(axis=0)
    if req.mean:
        if mask is None:
            out.mean = S.mean(axis=0)
        else:
            cnt = m - mask.sum(axis=0)
            out.mean = np.where(mask, 0.0, S).sum(axis=0) / np.maximum(cnt, 1)
    if req.row_topk:
        k = req.row_topk
        idx = np.argpartition(-Sx, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(Sx, idx, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        out.row_topk = np.take_along_axis(idx, order, axis=1).astype(np.int64)
    return out


def reduce_vectors(
    bank: np.ndarray, gallery: np.ndarray, req: Request, bank_keys=None, gallery_keys=None
) -> Reduced:
    """Reduce ``bank @ gallery.T`` (computed densely in float64)."""
    S = np.asarray(bank, dtype=np.float64) @ np.asarray(gallery, dtype=np.float64).T
    return reduce_sims(S, req, bank_keys, gallery_keys)


class NumpyBackend:
    """The dense float64 reference backend. Implements :class:`~.base.Backend` with this module's functions."""

    name = "numpy"
    reduce_sims = staticmethod(reduce_sims)
    reduce_vectors = staticmethod(reduce_vectors)


#: the instance :func:`~dbnorm_qdrant.kernels.get_backend` returns
backend = NumpyBackend()
