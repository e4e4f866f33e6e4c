"""Uniform retrieval: log-domain Sinkhorn over a bank-by-gallery matrix (docs/methods.md §3.5).

``K = beta * S_bank`` (query-bank rows ``b``, gallery columns ``g``). Sinkhorn with uniform
marginals ``1/m`` (rows) and ``1/n`` (columns) finds potentials ``u(b)``, ``v(g)`` with::

    v(g) = log(1/n) - LSE_b(K[b, g] + u(b))        (column half-step)
    u(b) = log(1/m) - LSE_g(K[b, g] + v(g))        (row half-step)

The gallery potential ``v(g)`` is the ``uniform`` method's statistic; items are ranked by
``s(q, g) + lambda * v(g) / beta``.

Conventions (what makes the statistic usable item by item):

- The solve starts from ``u = 0`` and *begins and ends with a column half-step*. So with one
  iteration ``v(g) = log(1/n) - beta * lse_q(g)``: inverted softmax, up to a constant.
- The returned ``v`` is always the column half-step of the returned ``u``: the column
  marginals of the plan are exact, the row marginals are within ``error``. Hence the
  statistic of *any* item — one of the solved gallery, a page of it, or a new item —
  is the same formula :func:`column_potentials` with the fixed bank potentials ``u``.
  New items therefore get their bias without re-solving (they do not move ``u``; the
  drift against a full re-solve is measured in ``benchmarks/bench_neighborretr.py``).
- Streaming: the bank is processed in row blocks of at most ``block_elems`` elements
  (``rows x n``), from a given matrix or recomputed from vectors per block, so the
  vector path never holds the whole matrix. One sweep (one iteration) is one pass over
  the blocks: per block, the row half-step with the current ``v`` and the block's
  contribution to the next column half-step.

Each fused sweep needs one ``exp`` per element: with ``E = exp(K + v - rowmax)`` the
row half-step is ``u = log(1/m) - rowmax - log(sum_g E)`` and the next column sum is
``exp(-v) * sum_b E[b, g] / sum_g' E[b, g']`` (times ``1/m``), i.e. a matrix-vector
product. Sweeps run in the input's precision (float32 blocks: float32 exponentials, the
data's own precision); the first and the last column half-steps are always float64, so
one iteration is exactly inverted softmax and ``v`` is exactly the column potential of
``u``. Where that column mass underflows (extreme ``beta * range``) the sweep is redone
with exact per-column log-sum-exp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError
from ..validation import check_beta, check_int, check_number

__all__ = ["SinkhornResult", "sinkhorn", "sinkhorn_sims", "sinkhorn_vectors", "column_potentials"]

#: default maximum number of iterations (column half-steps)
DEFAULT_ITERATIONS = 50
#: default tolerance on the row marginals (max relative error)
DEFAULT_TOL = 1e-4
#: elements per block (float64: 32 MiB)
BLOCK_ELEMS = 1 << 22

BlockFn = Callable[[int, int], np.ndarray]  # rows [i0, i1) of S_bank, shape (i1 - i0, n)


@dataclass(frozen=True)
class SinkhornResult:
    """Potentials of a solved uniform-marginal Sinkhorn.

    Attributes
    ----------
    u:
        ``(m,)`` bank potentials (log domain, units of ``K = beta * S``).
    v:
        ``(n,)`` gallery potentials; ``v == column_potentials(...)`` of ``u`` exactly.
    beta:
        The inverse temperature ``K = beta * S``.
    n_ref:
        Number of gallery columns solved on (the column marginal is ``1/n_ref``).
    iterations:
        Column half-steps done (1 = inverted softmax).
    error:
        Max relative row-marginal error ``max_b |m * rowsum_b - 1|`` measured at the last
        sweep (of the iterate before the final update; ``nan`` with one iteration).
    converged:
        ``error <= tol``.
    """

    u: np.ndarray
    v: np.ndarray
    beta: float
    n_ref: int
    iterations: int
    error: float
    converged: bool


def _lse_rows(X: np.ndarray) -> np.ndarray:
    mx = X.max(axis=1)
    return mx + np.log(np.exp(X - mx[:, None]).sum(axis=1))


class _ColLSE:
    """Online column log-sum-exp over row blocks."""

    def __init__(self, n: int) -> None:
        self.mx = np.full(n, -np.inf)
        self.s = np.zeros(n)

    def add(self, X: np.ndarray) -> None:
        bm = X.max(axis=0)
        new = np.maximum(self.mx, bm)
        self.s *= np.exp(self.mx - new)
        self.s += np.exp(X - new[None, :]).sum(axis=0)
        self.mx = new

    def value(self) -> np.ndarray:
        return self.mx + np.log(self.s)


def _check(beta: float, n_iter: int, tol: float) -> tuple[float, int, float]:
    b = check_beta(beta, "beta")
    n = check_int(n_iter, "n_iter", hint="it is the maximum number of Sinkhorn iterations (Params.k of 'uniform').")
    t = check_number(tol, "tol", low=0.0, hint="it bounds the relative error of the row marginals (default 1e-4).")
    return b, n, t


def sinkhorn(
    block: BlockFn,
    m: int,
    n: int,
    beta: float,
    *,
    n_iter: int = DEFAULT_ITERATIONS,
    tol: float = DEFAULT_TOL,
    block_elems: int = BLOCK_ELEMS,
) -> SinkhornResult:
    """Solve uniform-marginal Sinkhorn on ``K = beta * S`` given row blocks of ``S`` (``block(i0, i1)``)."""
    beta, n_iter, tol = _check(beta, n_iter, tol)
    if m < 1 or n < 1:
        raise InputError(f"Sinkhorn needs a non-empty bank-by-gallery matrix, got {m} x {n}.")
    rows = max(1, int(block_elems) // n)
    spans = [(i0, min(i0 + rows, m)) for i0 in range(0, m, rows)]
    log_a, log_b = -math.log(m), -math.log(n)
    u = np.zeros(m)

    def column_step(u: np.ndarray) -> np.ndarray:
        acc = _ColLSE(n)
        for i0, i1 in spans:
            K = beta * np.asarray(block(i0, i1), dtype=np.float64)
            K += u[i0:i1, None]
            acc.add(K)
        return log_b - acc.value()

    v = column_step(u)
    err = float("nan")
    it = 1
    while it < n_iter:
        # fused sweep: row half-step with v, and the column sums of the new plan (u_new, v)
        u_new = np.empty(m)
        colmass = np.zeros(n)
        row_err = 0.0
        for i0, i1 in spans:
            B = np.asarray(block(i0, i1))
            dt = np.float32 if B.dtype == np.float32 else np.float64  # sweeps in the input's precision
            X = np.multiply(B, dt(beta), dtype=dt)
            X += v.astype(dt)[None, :]
            mx = X.max(axis=1)
            X -= mx[:, None]
            np.exp(X, out=X)
            rs = X.sum(axis=1, dtype=np.float64)
            lse = mx.astype(np.float64) + np.log(rs)
            row_err = max(row_err, float(np.max(np.abs(np.expm1(u[i0:i1] + lse - log_a)))))
            u_new[i0:i1] = log_a - lse
            colmass += (1.0 / m) * (X.T @ (1.0 / rs).astype(dt))  # sum_b exp(K + u_new + v)
        err = row_err
        with np.errstate(divide="ignore"):
            v_new = v + log_b - np.log(colmass)
        if not np.all(np.isfinite(v_new)) or np.min(colmass) < 1e-280:
            v_new = column_step(u_new)  # exact fallback (underflowed column mass)
        u, v = u_new, v_new
        it += 1
        if err <= tol:
            break
    # end on an exact column half-step so v is *the* column potential of u
    if it > 1:
        v = column_step(u)
    return SinkhornResult(u=u, v=v, beta=beta, n_ref=n, iterations=it, error=err, converged=bool(err <= tol))


def sinkhorn_sims(S_bank: np.ndarray, beta: float, **kw) -> SinkhornResult:
    """:func:`sinkhorn` on a given ``(m, n)`` bank-by-gallery similarity matrix (read block by block)."""
    S_bank = np.asarray(S_bank)
    if S_bank.ndim != 2:
        raise InputError(f"S_bank must be 2-D, got shape {S_bank.shape}.")
    m, n = S_bank.shape
    return sinkhorn(lambda i0, i1: S_bank[i0:i1], m, n, beta, **kw)


def sinkhorn_vectors(
    bank: np.ndarray,
    gallery: np.ndarray,
    beta: float,
    *,
    sims: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    **kw,
) -> SinkhornResult:
    """:func:`sinkhorn` on ``sims(bank, gallery)`` (default ``bank @ gallery.T``), recomputed per row block."""
    f = sims if sims is not None else (lambda A, B: A @ B.T)
    return sinkhorn(lambda i0, i1: f(bank[i0:i1], gallery), len(bank), len(gallery), beta, **kw)


def column_potentials(
    u: np.ndarray,
    beta: float,
    n_ref: int,
    *,
    S_bank: np.ndarray | None = None,
    bank: np.ndarray | None = None,
    gallery: np.ndarray | None = None,
    sims: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    block_elems: int = BLOCK_ELEMS,
) -> np.ndarray:
    """Column half-step ``v(g) = log(1/n_ref) - LSE_b(beta * S[b, g] + u(b))`` for any gallery items.

    Give either ``S_bank`` (``(m, n)``) or ``bank`` and ``gallery`` vectors (similarities
    recomputed per column block with ``sims``, default dot). Used for new items and for
    statistics computed page by page.
    """
    u = np.asarray(u, dtype=np.float64)
    m = u.shape[0]
    f = sims if sims is not None else (lambda A, B: A @ B.T)
    if S_bank is not None:
        S_bank = np.asarray(S_bank)
        if S_bank.ndim != 2 or S_bank.shape[0] != m:
            raise InputError(f"S_bank must have {m} rows (one per bank item), got shape {S_bank.shape}.")
        n = S_bank.shape[1]
        get = lambda j0, j1: S_bank[:, j0:j1]  # noqa: E731
    else:
        if bank is None or gallery is None:
            raise InputError("column_potentials needs S_bank or both bank and gallery vectors.")
        n = len(gallery)
        get = lambda j0, j1: f(bank, gallery[j0:j1])  # noqa: E731
    out = np.empty(n)
    cols = max(1, int(block_elems) // max(m, 1))
    for j0 in range(0, n, cols):
        j1 = min(j0 + cols, n)
        K = float(beta) * np.asarray(get(j0, j1), dtype=np.float64)
        K += u[:, None]
        out[j0:j1] = -math.log(n_ref) - _lse_rows(K.T)
    return out
