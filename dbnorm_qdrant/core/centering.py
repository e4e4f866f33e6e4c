"""Unit rows, the negated Euclidean similarity and centering on the bank means.

The vector-level helpers that :mod:`.normalizer` (the vector API) and :mod:`.tuning`
(the validation grid) both need; they live here so that neither imports the other for
them (docs/methods.md §3.5 for centering).
"""

from __future__ import annotations

import numpy as np

__all__ = ["unit_rows", "neg_euclid", "bank_means", "center"]


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    nrm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(nrm == 0, 1, nrm)


def neg_euclid(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The negated Euclidean distance of every row pair, ``-||a - b||`` (float64 ``(len(A), len(B))``).

    Computed as ``-sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0))`` with one GEMM; the clamp
    absorbs round-off for (near-)identical rows. The one place this maths lives: bank
    statistics, activation sets and :meth:`BankNormalizer.scores` all use it.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    sq = A @ B.T
    sq *= -2.0
    sq += np.einsum("ij,ij->i", A, A)[:, None]
    sq += np.einsum("ij,ij->i", B, B)[None, :]
    np.maximum(sq, 0.0, out=sq)
    np.sqrt(sq, out=sq)
    np.negative(sq, out=sq)
    return sq


def bank_means(query_bank: np.ndarray, gallery_bank: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Centering means ``(mean(B_Q), mean(B_G))`` (the query bank stands in for a missing gallery bank)."""
    gb = gallery_bank if gallery_bank is not None else query_bank
    return query_bank.mean(axis=0, dtype=np.float64), gb.mean(axis=0, dtype=np.float64)


def center(X: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``X - mu`` re-normalised to unit rows, in ``X``'s dtype (docs/methods.md §3.5, centering)."""
    return unit_rows(X - mu).astype(X.dtype, copy=False)
