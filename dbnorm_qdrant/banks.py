"""Bank sets: the query bank, the gallery bank, and where they come from.

A :class:`BankSet` holds the two banks (and, for a gallery bank sampled from the
indexed collection itself, the int64 keys of the sampled points so an item never
counts itself). Sources: arrays, ``.npy`` files (``allow_pickle=False``), and the
collection helpers of :mod:`dbnorm_qdrant.qdrant.sources`.

The fingerprint of the statistics is :attr:`BankNormalizer.fingerprint` (a hash of the
bank contents, the gallery-bank keys and the method parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from .core.methods import Params
from .core.normalizer import BankNormalizer, unit_rows
from .core.validation import InputError, as_matrix

__all__ = ["BankSet"]


def _load_npy(path: str | PathLike[str], name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{name} file {path!s} holds pickled objects; save the bank as a numeric .npy array.") from exc
    except FileNotFoundError:
        raise InputError(f"{name} file {path!s} does not exist.") from None


@dataclass(frozen=True)
class BankSet:
    """A query bank, an optional gallery bank, and the gallery bank's point keys (if sampled).

    Build one with :meth:`from_arrays`, :meth:`from_npy`, or the collection helpers, then
    :meth:`normalizer` turns it into a :class:`BankNormalizer` for a method.
    """

    query_bank: np.ndarray
    gallery_bank: np.ndarray | None = None
    gallery_keys: np.ndarray | None = None

    def __post_init__(self) -> None:
        qb = as_matrix(self.query_bank, "query_bank")
        object.__setattr__(self, "query_bank", qb)
        if self.gallery_bank is not None:
            object.__setattr__(
                self, "gallery_bank", as_matrix(self.gallery_bank, "gallery_bank", ncols=qb.shape[1], ncols_of="query_bank")
            )
        if self.gallery_keys is not None:
            keys = np.asarray(self.gallery_keys, dtype=np.int64)
            if self.gallery_bank is None or keys.shape != (len(self.gallery_bank),):
                raise InputError("gallery_keys must have one key per gallery_bank row.")
            object.__setattr__(self, "gallery_keys", keys)

    @property
    def dim(self) -> int:
        return int(self.query_bank.shape[1])

    @classmethod
    def from_arrays(cls, query_bank: Any, gallery_bank: Any = None, gallery_keys: Any = None) -> "BankSet":
        return cls(np.asarray(query_bank), None if gallery_bank is None else np.asarray(gallery_bank), gallery_keys)

    @classmethod
    def from_npy(
        cls, query_bank: str | PathLike[str], gallery_bank: str | PathLike[str] | None = None
    ) -> "BankSet":
        """Banks from ``.npy`` files (loaded with ``allow_pickle=False``)."""
        qb = _load_npy(query_bank, "query_bank")
        gb = None if gallery_bank is None else _load_npy(gallery_bank, "gallery_bank")
        return cls(qb, gb)

    def with_gallery(self, gallery: "BankSet | np.ndarray", keys: Any = None) -> "BankSet":
        """This query bank with another gallery bank (e.g. one sampled from the collection)."""
        if isinstance(gallery, BankSet):
            gallery, keys = gallery.gallery_bank, gallery.gallery_keys
        return BankSet(self.query_bank, gallery, keys)

    def normalizer(
        self, params: Params | None = None, *, unit: bool = False, backend: str = "auto", similarity: str = "dot",
        **kw: Any,
    ) -> BankNormalizer:
        """A :class:`BankNormalizer` over these banks (rows scaled to unit norm with ``unit``,
        as a cosine collection needs; ``similarity="neg_euclid"`` for a Euclid collection)."""
        qb, gb = self.query_bank, self.gallery_bank
        if unit:
            qb = unit_rows(qb).astype(qb.dtype)
            gb = None if gb is None else unit_rows(gb).astype(gb.dtype)
        if params is None:
            params = Params(**kw) if kw else Params()
        return BankNormalizer(
            qb, gb, params=params, gallery_bank_keys=self.gallery_keys, backend=backend, similarity=similarity
        )
