"""What a kernel is asked to compute, and what it returns.

Every backend reduces a bank-by-gallery similarity matrix ``S_bank`` (bank rows,
gallery columns) to a handful of numbers per gallery column, and optionally the
top-k columns of every bank row (the activation sets of the dynamic methods). The
matrix is either given (``reduce_sims``) or produced tile by tile from vectors
(``reduce_vectors``) and never held whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Request", "Reduced", "Backend"]


@dataclass(frozen=True)
class Request:
    """Which column (per gallery item) and row (per bank item) reductions to compute.

    Attributes
    ----------
    betas:
        For each beta, the scaled log-partition ``(1/beta) * LSE_b(beta * S[b, g])``.
    topk:
        If > 0, the mean of the ``topk`` largest values of each column (CSLS / NNN).
    mean:
        The mean of each column (memory-bank centrality).
    row_topk:
        If > 0, the column indices of the ``row_topk`` largest values of each row
        (activation sets of DIS / DualDIS).
    """

    betas: tuple[float, ...] = ()
    topk: int = 0
    mean: bool = False
    row_topk: int = 0

    def is_empty(self) -> bool:
        return not (self.betas or self.topk or self.mean or self.row_topk)


@dataclass
class Reduced:
    """Result of a :class:`Request` (float64 statistics, int64 indices)."""

    lse: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (len(betas), n)
    topk_mean: np.ndarray | None = None  # (n,)
    mean: np.ndarray | None = None  # (n,)
    row_topk: np.ndarray | None = None  # (m, row_topk) int64, best first
    #: True when the backend saw only finite values while reducing (a free by-product of
    #: its passes), False when it may have seen NaN/inf, None when it did not check.
    finite: bool | None = None


@runtime_checkable
class Backend(Protocol):
    """What every kernel backend implements (``numpy``, ``numba``, ``torch``).

    ``bank_keys`` / ``gallery_keys`` are optional integer keys of the bank rows and the
    gallery columns: a pair with ``bank_keys[i] == gallery_keys[j] >= 0`` (an item and
    its own copy in a bank sampled from the gallery) is left out of every statistic.
    Results are float64 statistics and int64 row top-k indices, as NumPy arrays.
    """

    #: the name :func:`~dbnorm_qdrant.kernels.get_backend` knows it by
    name: str

    def reduce_sims(
        self,
        S_bank: np.ndarray,
        req: Request,
        bank_keys: np.ndarray | None = None,
        gallery_keys: np.ndarray | None = None,
    ) -> Reduced:
        """Reduce a given ``(m, n)`` bank-by-gallery similarity matrix (it is never modified)."""
        ...

    def reduce_vectors(
        self,
        bank: np.ndarray,
        gallery: np.ndarray,
        req: Request,
        bank_keys: np.ndarray | None = None,
        gallery_keys: np.ndarray | None = None,
    ) -> Reduced:
        """Reduce ``bank @ gallery.T`` without holding the whole matrix (the reference excepted)."""
        ...
