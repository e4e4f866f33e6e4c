"""Torch backend: streaming reductions on CUDA when available, else on the CPU.

The bank-by-gallery similarity matrix is never held whole. The gallery is cut into
column tiles and the bank into row chunks; each ``tile x chunk`` block of similarities
is produced on the device (one GEMM for :func:`reduce_vectors`, one host-to-device
copy for :func:`reduce_sims`) and folded into running statistics that live on the
device:

- the scaled log-partition per beta: an online log-sum-exp with a running column max
  (``exp`` of max-shifted values in the compute dtype, sums accumulated in float64);
- the mean of the ``topk`` largest values per column: ``torch.topk`` of the block,
  merged with the running list by a second ``torch.topk`` on ``[running, new]``;
- the column mean: float64 column sums and counts of the pairs not excluded;
- the ``row_topk`` best columns of every bank row: ``torch.topk`` of the block, then a
  stable merge so that ties go to the lower column index (rows whose cut-off value is
  tied are re-sorted exactly).

Blocks are computed in float32 for float32 (or narrower) input and in float64 for
float64 input. The device is ``device=`` if given, else the ``DBNORM_TORCH_DEVICE``
environment variable, else ``cuda`` when available, else ``cpu``.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .base import Reduced, Request

__all__ = ["name", "cuda_available", "reduce_sims", "reduce_vectors"]


# Bytes of one similarity block (up to four such scratch buffers exist at a time).
_BLOCK_BYTES = {"cuda": 128 << 20, "cpu": 4 << 20}
# Widest gallery tile (columns) per device type.
_MAX_TILE = {"cuda": 8192, "cpu": 1024}
# An operand (bank or gallery) up to this size is copied to the device once.
_RESIDENT_BYTES = 4 << 30
# Above this many excluded pairs, exclusions are found by a dense key comparison
# per block instead of from a precomputed list of pairs.
_MAX_PAIRS = 20_000_000

_NEG_INF = float("-inf")


def cuda_available() -> bool:
    """Whether torch can use a CUDA device on this machine."""
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - broken driver setups
        return False


_TF32_WARNED = False


def _warn_if_tf32(dev: torch.device, dtype: torch.dtype) -> None:
    """Float32 GEMMs follow the user's TF32 setting; say so once if it is on."""
    global _TF32_WARNED
    if _TF32_WARNED or dev.type != "cuda" or dtype != torch.float32:
        return
    try:
        prec = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
        on = prec == "tf32" if prec not in (None, "none") else torch.get_float32_matmul_precision() != "highest"
    except Exception:  # mixed legacy/new precision APIs: state unknown
        return
    if on:
        _TF32_WARNED = True
        warnings.warn(
            "TF32 matmuls are enabled: float32 similarities on CUDA are accurate to ~1e-3 only; "
            "pass float64 input or disable TF32 for full float32 accuracy.",
            RuntimeWarning,
            stacklevel=3,
        )


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        device = os.environ.get("DBNORM_TORCH_DEVICE") or ("cuda" if cuda_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _as_tensor(x: Any) -> torch.Tensor:
    """A CPU (or device) tensor sharing memory with ``x`` where possible."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    a = np.asarray(x)
    if a.dtype.byteorder not in ("=", "|") or any(s < 0 for s in a.strides):
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    with warnings.catch_warnings():
        # read-only inputs (e.g. np.load(mmap_mode="r")) are only ever read here
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a)


def _compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if any(d == torch.float64 for d in dtypes) else torch.float32


def _block_shape(m: int, n: int, dev: torch.device, itemsize: int, tile: int | None, chunk: int | None) -> tuple[int, int]:
    kind = "cuda" if dev.type == "cuda" else "cpu"
    elems = max(1, _BLOCK_BYTES[kind] // itemsize)
    t = tile if tile else min(n, _MAX_TILE[kind])
    t = max(1, min(t, max(n, 1)))
    c = chunk if chunk else max(1, elems // t)
    c = max(1, min(c, max(m, 1)))
    return t, c


# --------------------------------------------------------------------------- exclusions


class _Exclusions:
    """Bank/gallery pairs with equal non-negative keys, served per block."""

    def __init__(self, bank_keys, gallery_keys, m: int, n: int, dev: torch.device):
        self.empty = True
        self.dense = False
        if bank_keys is None or gallery_keys is None:
            return
        bk = np.asarray(bank_keys, dtype=np.int64).reshape(-1)
        gk = np.asarray(gallery_keys, dtype=np.int64).reshape(-1)
        if bk.shape[0] != m or gk.shape[0] != n:
            raise InputError(
                f"bank_keys must have {m} entries and gallery_keys {n}; got {bk.shape[0]} and {gk.shape[0]}: "
                "pass one key per bank row and one per gallery row."
            )
        gvalid = np.flatnonzero(gk >= 0)
        if gvalid.size == 0 or not (bk >= 0).any():
            return
        order = gvalid[np.argsort(gk[gvalid], kind="stable")]
        gs = gk[order]
        lo = np.searchsorted(gs, bk, side="left")
        hi = np.searchsorted(gs, bk, side="right")
        cnt = np.where(bk >= 0, hi - lo, 0)
        total = int(cnt.sum())
        if total == 0:
            return
        self.empty = False
        if total > _MAX_PAIRS:
            self.dense = True
            self.bk = torch.from_numpy(bk).to(dev)
            self.gk = torch.from_numpy(gk).to(dev)
            return
        rows = np.repeat(np.arange(m, dtype=np.int64), cnt)
        starts = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
        cols = order[starts + np.arange(total, dtype=np.int64)]
        # sort by (gallery column, bank row) so that a tile is a contiguous slice
        srt = np.lexsort((rows, cols))
        self.rows = rows[srt]
        self.cols = cols[srt]
        self._tile: tuple[int, int] | None = None

    def _tile_pairs(self, j0: int, j1: int) -> None:
        if self._tile != (j0, j1):
            a, b = np.searchsorted(self.cols, [j0, j1], side="left")
            r, c = self.rows[a:b], self.cols[a:b]
            o = np.argsort(r, kind="stable")
            self._tr, self._tc = r[o], c[o]
            self._tile = (j0, j1)

    def block_pairs(self, j0: int, j1: int, i0: int, i1: int):
        """(local gallery idx, local bank idx) host arrays for the block, or None."""
        self._tile_pairs(j0, j1)
        a, b = np.searchsorted(self._tr, [i0, i1], side="left")
        if a == b:
            return None
        return self._tc[a:b] - j0, self._tr[a:b] - i0

    def block_mask(self, j0: int, j1: int, i0: int, i1: int) -> torch.Tensor | None:
        g = self.gk[j0:j1, None]
        mask = (g == self.bk[None, i0:i1]) & (g >= 0)
        return mask


# --------------------------------------------------------------------------- state


class _State:
    """Running statistics for all gallery columns (and bank rows) on the device."""

    def __init__(self, req: Request, m: int, n: int, dtype: torch.dtype, dev: torch.device, block_elems: int):
        self.req = req
        self.m, self.n = m, n
        self.dtype, self.dev = dtype, dev
        self.betas = [float(b) for b in req.betas]
        f64 = dict(dtype=torch.float64, device=dev)
        if self.betas:
            self.mx = torch.full((n,), _NEG_INF, dtype=dtype, device=dev)
            self.acc = torch.zeros((len(self.betas), n), **f64)
            self._betas_t = torch.tensor(self.betas, **f64)
        self.colsum = torch.zeros(n, **f64) if req.mean else None
        self.count = torch.full((n,), m, dtype=torch.int64, device=dev) if req.mean else None
        self.topv = torch.full((n, req.topk), _NEG_INF, dtype=dtype, device=dev) if req.topk else None
        kr = req.row_topk
        self.rowv = torch.full((m, kr), _NEG_INF, dtype=dtype, device=dev) if kr else None
        self.rowi = torch.full((m, kr), -1, dtype=torch.int64, device=dev) if kr else None
        # scratch for the max-shifted block and its exponential
        self._s1 = torch.empty(block_elems, dtype=dtype, device=dev) if self.betas else None
        self._s2 = torch.empty(block_elems, dtype=dtype, device=dev) if len(self.betas) > 1 else None
        # transposed copy of the block for the row top-k (topk along a contiguous dim is ~2x faster)
        self._s3 = torch.empty(block_elems, dtype=dtype, device=dev) if kr else None

    # block: (t, c) = gallery columns [j0, j0+t) x bank rows [i0, i0+c); may be modified
    def update(self, block: torch.Tensor, j0: int, i0: int, excl: _Exclusions) -> None:
        t, c = block.shape
        j1 = j0 + t
        if self.colsum is not None:
            self.colsum[j0:j1] += block.sum(dim=1, dtype=torch.float64) if self.dtype == torch.float64 else block.sum(dim=1).double()
        if not excl.empty:
            self._exclude(block, j0, i0, excl)
        if self.betas:
            self._lse(block, j0)
        if self.topv is not None:
            k = self.topv.shape[1]
            cand = torch.topk(block, min(k, c), dim=1, sorted=False).values
            merged = torch.cat([self.topv[j0:j1], cand], dim=1)
            self.topv[j0:j1] = torch.topk(merged, k, dim=1, sorted=False).values
        if self.rowv is not None:
            self._rows(block, j0, i0)

    def _exclude(self, block: torch.Tensor, j0: int, i0: int, excl: _Exclusions) -> None:
        t, c = block.shape
        if excl.dense:
            mask = excl.block_mask(j0, j0 + t, i0, i0 + c)
            if self.colsum is not None:
                self.colsum[j0 : j0 + t] -= torch.where(mask, block, 0).sum(dim=1, dtype=torch.float64)
                self.count[j0 : j0 + t] -= mask.sum(dim=1)
            block.masked_fill_(mask, _NEG_INF)
            return
        pairs = excl.block_pairs(j0, j0 + t, i0, i0 + c)
        if pairs is None:
            return
        jl = torch.from_numpy(pairs[0]).to(self.dev, non_blocking=True)
        il = torch.from_numpy(pairs[1]).to(self.dev, non_blocking=True)
        if self.colsum is not None:
            vals = block[jl, il].double()
            self.colsum.index_add_(0, jl + j0, vals, alpha=-1)
            self.count.index_add_(0, jl + j0, torch.ones_like(jl), alpha=-1)
        block[jl, il] = _NEG_INF

    def _lse(self, block: torch.Tensor, j0: int) -> None:
        t, c = block.shape
        j1 = j0 + t
        old = self.mx[j0:j1]
        new = torch.maximum(old, block.amax(dim=1))
        newinf = torch.isneginf(new)
        # rescale the running sums to the new max (columns still empty keep 0)
        shift = torch.where(newinf, 0.0, (old - new).double())
        self.acc[:, j0:j1] *= torch.exp(self._betas_t[:, None] * shift[None, :])
        self.mx[j0:j1] = new
        ref = torch.where(newinf, torch.zeros((), dtype=self.dtype, device=self.dev), new)
        d = self._s1[: t * c].view(t, c)
        torch.sub(block, ref[:, None], out=d)  # <= 0, -inf where excluded
        for b, beta in enumerate(self.betas):
            if len(self.betas) == 1:
                e = d.mul_(beta)
            else:
                e = torch.mul(d, beta, out=self._s2[: t * c].view(t, c))
            e.exp_()
            s = e.sum(dim=1)
            self.acc[b, j0:j1] += s if s.dtype == torch.float64 else s.double()

    def _rows(self, block: torch.Tensor, j0: int, i0: int) -> None:
        t, c = block.shape
        k = self.rowv.shape[1]
        bt = self._s3[: t * c].view(c, t)  # bank rows x gallery columns
        bt.copy_(block.t())
        kk = min(k, t)
        if kk < t:
            vals, idx = torch.topk(bt, kk + 1, dim=1, sorted=True)
            # order the candidates by column, then stably by value: ties -> lower column
            idx, o = torch.sort(idx, dim=1)
            vals = torch.gather(vals, 1, o)
            vals, o = torch.sort(vals, dim=1, descending=True, stable=True)
            idx = torch.gather(idx, 1, o)
            # a tie straddling the cut-off may hide a lower column outside the k+1
            tied = (vals[:, kk] == vals[:, kk - 1]).nonzero().flatten()
            vals, idx = vals[:, :kk].contiguous(), idx[:, :kk].contiguous()
            if tied.numel():
                tv, ti = torch.sort(bt[tied], dim=1, descending=True, stable=True)
                vals[tied] = tv[:, :kk]
                idx[tied] = ti[:, :kk]
        else:
            vals, idx = torch.sort(bt, dim=1, descending=True, stable=True)
        i1 = i0 + c
        allv = torch.cat([self.rowv[i0:i1], vals], dim=1)
        alli = torch.cat([self.rowi[i0:i1], idx + j0], dim=1)
        # running entries come from lower columns (tiles run left to right): stable keeps them first
        sv, o = torch.sort(allv, dim=1, descending=True, stable=True)
        self.rowv[i0:i1] = sv[:, :k]
        self.rowi[i0:i1] = torch.gather(alli, 1, o[:, :k])

    def finish(self) -> Reduced:
        out = Reduced()
        if self.betas:
            mx = self.mx.double()
            lse = mx[None, :] + torch.log(self.acc) / self._betas_t[:, None]
            out.lse = lse.cpu().numpy()
        else:
            out.lse = np.empty((0, self.n))
        if self.topv is not None:
            out.topk_mean = self.topv.double().mean(dim=1).cpu().numpy()
        if self.colsum is not None:
            out.mean = (self.colsum / self.count.clamp(min=1)).cpu().numpy()
        if self.rowi is not None:
            out.row_topk = self.rowi.cpu().numpy().astype(np.int64, copy=False)
        return out


# --------------------------------------------------------------------------- drivers


def _empty(req: Request, m: int, n: int) -> Reduced:
    out = Reduced(lse=np.full((len(req.betas), n), -np.inf))
    if req.topk:
        out.topk_mean = np.full(n, -np.inf)
    if req.mean:
        out.mean = np.zeros(n)
    if req.row_topk:
        out.row_topk = np.full((m, req.row_topk), -1, dtype=np.int64)
    return out


def _check_keys(bank_keys, gallery_keys, m: int, n: int) -> None:
    if bank_keys is not None and len(bank_keys) != m:
        raise InputError(f"bank_keys has {len(bank_keys)} entries, expected {m}: pass one key per bank row.")
    if gallery_keys is not None and len(gallery_keys) != n:
        raise InputError(f"gallery_keys has {len(gallery_keys)} entries, expected {n}: pass one key per gallery row.")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reduce_vectors(
    bank: np.ndarray,
    gallery: np.ndarray,
    req: Request,
    bank_keys: np.ndarray | None = None,
    gallery_keys: np.ndarray | None = None,
    *,
    device: str | torch.device | None = None,
    tile: int | None = None,
    chunk: int | None = None,
) -> Reduced:
    """Reduce ``bank @ gallery.T`` block by block on ``device`` (see :class:`Request`).

    Parameters
    ----------
    bank, gallery:
        ``(m, d)`` and ``(n, d)`` arrays (NumPy or torch). Float64 input is computed in
        float64, anything else in float32.
    req:
        The statistics to compute.
    bank_keys, gallery_keys:
        Optional integer keys; the pair ``(i, j)`` with ``bank_keys[i] == gallery_keys[j] >= 0``
        is left out of every statistic.
    device:
        Torch device; default ``$DBNORM_TORCH_DEVICE``, else ``cuda`` if available, else ``cpu``.
    tile, chunk:
        Gallery columns / bank rows per block (default: sized to the device's block budget).

    Returns
    -------
    Reduced
        Float64 statistics and int64 row top-k indices (best first, ties to the lower
        column; ``-1`` in slots past a row's non-excluded columns), as NumPy arrays.
        A column whose pairs are all excluded gets ``-inf`` log-partitions and mean 0.
    """
    B, G = _as_tensor(bank), _as_tensor(gallery)
    if B.ndim != 2 or G.ndim != 2 or B.shape[1] != G.shape[1]:
        raise InputError(
            f"bank and gallery must be 2-D with the same width; got {tuple(B.shape)} and {tuple(G.shape)}: "
            "embed both with the same model (reshape a single vector with x[None, :])."
        )
    m, n = B.shape[0], G.shape[0]
    _check_keys(bank_keys, gallery_keys, m, n)
    if m == 0 or n == 0:
        return _empty(req, m, n)
    dev = _resolve_device(device)
    dtype = _compute_dtype(B.dtype, G.dtype)
    itemsize = torch.finfo(dtype).bits // 8
    t, c = _block_shape(m, n, dev, itemsize, tile, chunk)
    _warn_if_tf32(dev, dtype)
    excl = _Exclusions(bank_keys, gallery_keys, m, n, dev)
    state = _State(req, m, n, dtype, dev, t * c)
    d = B.shape[1]

    def fits(X: torch.Tensor) -> bool:
        return X.device == dev or dev.type == "cpu" or X.shape[0] * d * itemsize <= _RESIDENT_BYTES

    # On the CPU both operands are used in place. On a GPU the bank is copied once if
    # it fits (gallery tiles stream in, tile loop outside); else the gallery is, and
    # bank chunks stream in once each (chunk loop outside); else both stream.
    Bd = B.to(device=dev, dtype=dtype) if fits(B) else None
    Gd = G.to(device=dev, dtype=dtype) if dev.type == "cpu" or (Bd is None and fits(G)) else None
    bank_outer = Bd is None and Gd is not None
    buf = torch.empty(t * c, dtype=dtype, device=dev)

    def operand(X: torch.Tensor, Xd: torch.Tensor | None, a: int, b: int) -> torch.Tensor:
        if Xd is not None:
            return Xd[a:b]
        return X[a:b].to(device=dev, dtype=dtype, non_blocking=False)

    def block(Gt: torch.Tensor, Bc: torch.Tensor) -> torch.Tensor:
        out = buf[: Gt.shape[0] * Bc.shape[0]].view(Gt.shape[0], Bc.shape[0])
        return torch.mm(Gt, Bc.t(), out=out)

    with torch.no_grad():
        if bank_outer:
            for i0 in range(0, m, c):
                i1 = min(i0 + c, m)
                Bc = operand(B, Bd, i0, i1)
                for j0 in range(0, n, t):
                    j1 = min(j0 + t, n)
                    state.update(block(Gd[j0:j1], Bc), j0, i0, excl)
        else:
            for j0 in range(0, n, t):
                j1 = min(j0 + t, n)
                Gt = operand(G, Gd, j0, j1)
                for i0 in range(0, m, c):
                    i1 = min(i0 + c, m)
                    state.update(block(Gt, operand(B, Bd, i0, i1)), j0, i0, excl)
        out = state.finish()
    _sync(dev)
    return out


def reduce_sims(
    S_bank: np.ndarray,
    req: Request,
    bank_keys: np.ndarray | None = None,
    gallery_keys: np.ndarray | None = None,
    *,
    device: str | torch.device | None = None,
    tile: int | None = None,
    chunk: int | None = None,
) -> Reduced:
    """Reduce a given ``(m, n)`` bank-by-gallery similarity matrix on ``device``.

    The matrix (NumPy or torch) is copied to the device block by block and never
    modified; float64 input is reduced in float64, anything else in float32. See
    :func:`reduce_vectors` for the other arguments.
    """
    S = _as_tensor(S_bank)
    if S.ndim != 2:
        raise InputError(f"S_bank must be 2-D (bank rows x gallery columns); got shape {tuple(S.shape)}.")
    m, n = S.shape
    _check_keys(bank_keys, gallery_keys, m, n)
    if m == 0 or n == 0:
        return _empty(req, m, n)
    dev = _resolve_device(device)
    dtype = _compute_dtype(S.dtype)
    itemsize = torch.finfo(dtype).bits // 8
    t, c = _block_shape(m, n, dev, itemsize, tile, chunk)
    excl = _Exclusions(bank_keys, gallery_keys, m, n, dev)
    state = _State(req, m, n, dtype, dev, t * c)
    buf = torch.empty(t * c, dtype=dtype, device=dev)

    with torch.no_grad():
        for j0 in range(0, n, t):
            j1 = min(j0 + t, n)
            for i0 in range(0, m, c):
                i1 = min(i0 + c, m)
                src = S[i0:i1, j0:j1]
                out = buf[: (j1 - j0) * (i1 - i0)].view(j1 - j0, i1 - i0)
                if src.device == dev:
                    out.copy_(src.t())
                else:
                    out.copy_(src.to(device=dev, dtype=dtype).t())
                state.update(out, j0, i0, excl)
        res = state.finish()
    _sync(dev)
    return res


class TorchBackend:
    """The torch backend (CUDA when available, else CPU); the device is chosen per call. Implements :class:`~.base.Backend` with this module's functions."""

    name = "torch"
    reduce_sims = staticmethod(reduce_sims)
    reduce_vectors = staticmethod(reduce_vectors)


#: the instance :func:`~dbnorm_qdrant.kernels.get_backend` returns
backend = TorchBackend()
