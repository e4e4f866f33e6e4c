"""Numba CPU backend: streaming, parallel, bounded memory.

Similarity blocks come from BLAS (``numpy.matmul`` into a per-thread buffer, one BLAS
thread per worker). GIL-free Numba kernels fold each block into running column top-k
lists, column sums and per-row top-k lists; the online log-sum-exp (running column
max) uses NumPy's SIMD exp in place. Gallery tiles run in parallel threads (see
:mod:`._tiles`).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import _tiles
from ._types import Reduced, Request

name = "numba"

# Fast-math flags that keep inf/nan semantics (excluded pairs are -inf).
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


@nb.njit(nogil=True, cache=True, fastmath=_FM)
def _sum_update(block, colsum):
    c, t = block.shape
    for i in range(c):
        for j in range(t):
            v = block[i, j]
            if v > -np.inf:
                colsum[j] += v


@nb.njit(nogil=True, cache=True)
def _col_topk_update(block, topv):
    # topv: (k, t) sorted descending per column
    c, t = block.shape
    k = topv.shape[0]
    for i in range(c):
        for j in range(t):
            v = np.float64(block[i, j])
            if v > topv[k - 1, j]:
                p = k - 1
                while p > 0 and topv[p - 1, j] < v:
                    topv[p, j] = topv[p - 1, j]
                    p -= 1
                topv[p, j] = v


@nb.njit(nogil=True, cache=True)
def _row_topk_update(block, i0, rowv, rowi):
    # rowv/rowi: (m, k) sorted descending; strict '>' keeps the lower column on ties
    c, t = block.shape
    k = rowv.shape[1]
    for i in range(c):
        r = i0 + i
        for j in range(t):
            v = np.float64(block[i, j])
            if v > rowv[r, k - 1]:
                p = k - 1
                while p > 0 and rowv[r, p - 1] < v:
                    rowv[r, p] = rowv[r, p - 1]
                    rowi[r, p] = rowi[r, p - 1]
                    p -= 1
                rowv[r, p] = v
                rowi[r, p] = j


class _State:
    def __init__(self, req: Request, m: int, t: int):
        self.req = req
        self.m = m
        self.betas = np.asarray(req.betas, dtype=np.float64)
        self.mx = np.full(t, -np.inf)
        self.acc = np.zeros((len(req.betas), t))
        self.tmp: np.ndarray | None = None
        self.colsum = np.zeros(t) if req.mean else None
        self.count = np.full(t, m, dtype=np.int64)
        self.topv = np.full((req.topk, t), -np.inf) if req.topk else None
        kk = req.row_topk
        self.rowv = np.full((m, kk), -np.inf) if kk else None
        self.rowi = np.full((m, kk), -1, dtype=np.int64) if kk else None

    def _lse_update(self, block: np.ndarray) -> None:
        # Online log-sum-exp with a running column max. NumPy's SIMD exp is several
        # times faster than a scalar exp in a Numba loop, so this part stays in NumPy
        # (ufuncs release the GIL, so tiles still run in parallel).
        newmx = np.maximum(self.mx, block.max(axis=0))
        grow = newmx > self.mx
        if grow.any():
            with np.errstate(invalid="ignore", over="ignore"):
                scale = np.exp(self.betas[:, None] * (self.mx - newmx)[None, :])
            scale[:, ~np.isfinite(self.mx)] = 0.0
            self.acc *= np.where(grow[None, :], scale, 1.0)
            self.mx = newmx
        ref = self.mx.astype(block.dtype)
        ref[~np.isfinite(ref)] = 0.0  # a column excluded so far: its terms are exp(-inf) = 0
        if self.tmp is None or self.tmp.shape != block.shape:
            self.tmp = np.empty_like(block)
        tmp = self.tmp
        for b, beta in enumerate(self.betas):
            np.subtract(block, ref, out=tmp)
            tmp *= block.dtype.type(beta)
            np.exp(tmp, out=tmp)
            self.acc[b] += tmp.sum(axis=0)

    def excluded(self, cols: np.ndarray) -> None:
        self.count[cols] -= 1

    def update(self, block: np.ndarray, i0: int) -> None:
        if self.betas.size:
            self._lse_update(block)
        if self.colsum is not None:
            _sum_update(block, self.colsum)
        if self.topv is not None:
            _col_topk_update(block, self.topv)
        if self.rowv is not None:
            _row_topk_update(block, i0, self.rowv, self.rowi)

    def finish(self):
        with np.errstate(divide="ignore"):
            lse = self.mx[None, :] + np.log(self.acc) / self.betas[:, None] if self.betas.size else np.empty((0, self.mx.size))
        topk = self.topv.mean(axis=0) if self.topv is not None else None
        mean = self.colsum / np.maximum(self.count, 1) if self.colsum is not None else None
        rows = (self.rowv, self.rowi) if self.rowv is not None else None
        return lse, topk, mean, rows


def reduce_sims(S_bank: np.ndarray, req: Request, bank_keys=None, gallery_keys=None) -> Reduced:
    """Streaming reduction of a given bank-by-gallery matrix (it is read, never copied whole)."""
    S = np.asarray(S_bank)
    m, n = S.shape
    need_copy = bank_keys is not None and gallery_keys is not None

    def fill(i0, i1, j0, j1, buf):
        block = S[i0:i1, j0:j1]
        # contiguous copy of a small block: cache-friendly, and exclusions may write -inf
        if buf is None or buf.shape != block.shape:
            buf = np.empty(block.shape, dtype=S.dtype)
        np.copyto(buf, block)
        return buf

    del need_copy
    return _tiles.run_tiles(m, n, req, lambda j0, j1: _State(req, m, j1 - j0), fill, bank_keys, gallery_keys)


def reduce_vectors(
    bank: np.ndarray, gallery: np.ndarray, req: Request, bank_keys=None, gallery_keys=None
) -> Reduced:
    """Reduce ``bank @ gallery.T`` block by block (BLAS GEMM per block, never the whole matrix)."""
    dtype = np.result_type(bank.dtype, gallery.dtype, np.float32)
    B = np.ascontiguousarray(bank, dtype=dtype)
    G = np.ascontiguousarray(gallery, dtype=dtype)
    m, n = B.shape[0], G.shape[0]

    def fill(i0, i1, j0, j1, buf):
        shape = (i1 - i0, j1 - j0)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, dtype=dtype)
        np.matmul(B[i0:i1], G[j0:j1].T, out=buf)
        return buf

    return _tiles.run_tiles(m, n, req, lambda j0, j1: _State(req, m, j1 - j0), fill, bank_keys, gallery_keys)
