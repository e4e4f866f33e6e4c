"""Numba CPU backend: streaming, parallel, bounded memory.

Similarity blocks come from BLAS (``numpy.matmul`` into a per-thread buffer, one BLAS
thread per worker). GIL-free Numba kernels fold each block into running column
statistics: an online log-sum-exp with a running column max (float32 blocks: a fused,
vectorised kernel with a polynomial exp; float64 blocks: NumPy's full-precision exp),
column top-k lists, column sums and per-row top-k lists. Gallery tiles run in
parallel threads (see :mod:`._tiles`).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import _tiles
from .base import Reduced, Request


# Fast-math flags that keep inf/nan semantics (excluded pairs are -inf).
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}


_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@nb.njit(nogil=True, cache=True, fastmath=_FM)
def _lse_update_f32(S, r0, r1, c0, beta, ref, acc, gm, part, kbuf, pbuf):
    """Online log-sum-exp of the float32 block ``S[r0:r1, c0:c0 + len(ref)]``.

    Keeps, per column, the running max ``ref`` (float32, an actual element) and
    ``acc = sum exp(beta * (s - ref))`` (float64). Rows are taken in groups of 8: the
    group's column max (and a NaN/inf check sum), a rescale of ``acc`` where the max
    grew, then the exponentials — so each group is read twice from L1, never from RAM.

    ``exp`` is Cephes' single-precision polynomial with the exponent built by integer
    bit shifts, so the loops vectorise (~0.6 ns per element against ~2.5 ns for a
    scalar libm call); its relative error is ~1e-7, the precision of float32 input.
    ``S`` is C-contiguous and addressed through row views with offsets (not a sliced
    2-D block), so the inner loops see unit stride and a given matrix needs no copy.
    Returns False when the block may hold NaN or inf.
    """
    t = ref.shape[0]
    b32 = np.float32(beta)
    chk = np.float32(0.0)  # NaN / inf in the block make this sum non-finite
    fb = kbuf.view(np.float32)
    for g0 in range(r0, r1, 8):
        g1 = min(g0 + 8, r1)
        first = S[g0, c0 : c0 + t]
        for j in range(t):
            gm[j] = first[j]
        for i in range(g0, g1):
            row = S[i, c0 : c0 + t]
            for j in range(t):
                v = row[j]
                chk += v
                gm[j] = max(gm[j], v)
        for j in range(t):
            if gm[j] > ref[j]:
                acc[j] *= math.exp(beta * (np.float64(ref[j]) - np.float64(gm[j])))
                ref[j] = gm[j]
        for j in range(t):
            part[j] = np.float32(0.0)
            # a column with only excluded (-inf) entries so far: shift by 0, not -inf (no NaN)
            gm[j] = ref[j] if ref[j] > -np.inf else np.float32(0.0)
        for i in range(g0, g1):
            row = S[i, c0 : c0 + t]
            for j in range(t):
                x = b32 * (row[j] - gm[j])
                x = max(x, np.float32(-87.0))  # exp(-87) ~ 1e-38: negligible next to the max term (1)
                ki = np.int32(x * _LOG2E - np.float32(0.5))  # x <= 0: truncation rounds to nearest
                k = np.float32(ki)
                r = x - k * _LN2_HI - k * _LN2_LO
                p = np.float32(1.9875691500e-4)
                p = p * r + np.float32(1.3981999507e-3)
                p = p * r + np.float32(8.3334519073e-3)
                p = p * r + np.float32(4.1665795894e-2)
                p = p * r + np.float32(1.6666665459e-1)
                p = p * r + np.float32(5.0000001201e-1)
                pbuf[j] = p * r * r + r + np.float32(1.0)
                kbuf[j] = (ki + np.int32(127)) << np.int32(23)
            for j in range(t):
                part[j] += pbuf[j] * fb[j]
        for j in range(t):
            acc[j] += part[j]
    return np.isfinite(chk)


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


class _View:
    """Block ``base[r0:r1, c0:c1]`` of a C-contiguous float32 matrix, not copied."""

    __slots__ = ("base", "r0", "r1", "c0", "c1")

    def __init__(self, base: np.ndarray, r0: int, r1: int, c0: int, c1: int):
        self.base, self.r0, self.r1, self.c0, self.c1 = base, r0, r1, c0, c1

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r1 - self.r0, self.c1 - self.c0)

    def copy(self) -> np.ndarray:
        return np.ascontiguousarray(self.base[self.r0 : self.r1, self.c0 : self.c1])


class _State:
    def __init__(self, req: Request, m: int, t: int):
        self.req = req
        self.m = m
        self.betas = np.asarray(req.betas, dtype=np.float64)
        self.mx = np.full(t, -np.inf)
        self.acc = np.zeros((len(req.betas), t))
        self.tmp: np.ndarray | None = None
        self.scratch: tuple[np.ndarray, ...] | None = None
        # float32 path: one float32 running max per beta (the fused kernel updates its own)
        self.ref32 = [np.full(t, -np.inf, dtype=np.float32) for _ in req.betas]
        self.per_beta_max = False
        # False once a block may hold NaN/inf (an excluded pair is -inf too); only the
        # log-sum-exp pass looks, so None ("not checked") when no beta is requested
        self.all_finite: bool | None = True if req.betas else None
        self.colsum = np.zeros(t) if req.mean else None
        self.count = np.full(t, m, dtype=np.int64)
        self.topv = np.full((req.topk, t), -np.inf) if req.topk else None
        kk = req.row_topk
        self.rowv = np.full((m, kk), -np.inf) if kk else None
        self.rowi = np.full((m, kk), -1, dtype=np.int64) if kk else None

    def _lse_update(self, block: "np.ndarray | _View") -> None:
        if block.dtype == np.float32:
            base, r0, r1, c0 = (block.base, block.r0, block.r1, block.c0) if isinstance(block, _View) else (block, 0, block.shape[0], 0)
            t = block.shape[1]
            if self.scratch is None or self.scratch[0].shape[0] != t:
                self.scratch = (np.empty(t, np.float32), np.empty(t, np.float32), np.empty(t, np.int32), np.empty(t, np.float32))
            self.per_beta_max = True
            for b, beta in enumerate(self.betas):
                if not _lse_update_f32(base, r0, r1, c0, float(beta), self.ref32[b], self.acc[b], *self.scratch):
                    self.all_finite = False  # or a float32 overflow of the check sum: the caller re-checks
            return
        # float64: NumPy's exp (full precision).
        # Online log-sum-exp with a running column max. NumPy's SIMD exp is several
        # times faster than a scalar exp in a Numba loop, so this part stays in NumPy
        # (ufuncs release the GIL, so tiles still run in parallel).
        if self.all_finite and not np.isfinite(np.add.reduce(block, axis=0)).all():
            self.all_finite = False  # NaN / inf propagate into the column sums
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

    def update(self, block: "np.ndarray | _View", i0: int) -> None:
        if self.betas.size:
            self._lse_update(block)
        if isinstance(block, _View) and (self.colsum is not None or self.topv is not None or self.rowv is not None):
            block = block.copy()
        if self.colsum is not None:
            _sum_update(block, self.colsum)
        if self.topv is not None:
            _col_topk_update(block, self.topv)
        if self.rowv is not None:
            _row_topk_update(block, i0, self.rowv, self.rowi)

    def finish(self):
        with np.errstate(divide="ignore"):
            if self.betas.size:
                mxs = np.stack(self.ref32).astype(np.float64) if self.per_beta_max else self.mx[None, :]
                lse = mxs + np.log(self.acc) / self.betas[:, None]
            else:
                lse = np.empty((0, self.mx.size))
        topk = self.topv.mean(axis=0) if self.topv is not None else None
        mean = self.colsum / np.maximum(self.count, 1) if self.colsum is not None else None
        rows = (self.rowv, self.rowi) if self.rowv is not None else None
        return lse, topk, mean, rows


def reduce_sims(S_bank: np.ndarray, req: Request, bank_keys=None, gallery_keys=None) -> Reduced:
    """Streaming reduction of a given bank-by-gallery matrix (it is read, never copied whole)."""
    S = np.asarray(S_bank)
    m, n = S.shape
    # float32 C-contiguous input and no exclusions: the fused kernel reads blocks in place
    in_place = S.dtype == np.float32 and S.flags.c_contiguous and (bank_keys is None or gallery_keys is None)

    def fill(i0, i1, j0, j1, buf):
        if in_place:
            return _View(S, i0, i1, j0, j1)
        block = S[i0:i1, j0:j1]
        # contiguous copy of a small block: cache-friendly, and exclusions may write -inf
        if buf is None or buf.shape != block.shape:
            buf = np.empty(block.shape, dtype=S.dtype)
        np.copyto(buf, block)
        return buf

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


class NumbaBackend:
    """The streaming multi-threaded CPU backend. Implements :class:`~.base.Backend` with this module's functions."""

    name = "numba"
    reduce_sims = staticmethod(reduce_sims)
    reduce_vectors = staticmethod(reduce_vectors)


#: the instance :func:`~dbnorm_qdrant.kernels.get_backend` returns
backend = NumbaBackend()
