"""Bank sets: where the query bank and the gallery bank come from.

A :class:`BankSet` holds the two banks (and, for a gallery bank sampled from the
indexed collection itself, the int64 keys of the sampled points so an item never
counts itself). Sources: arrays, ``.npy`` files (``allow_pickle=False``), a seeded
sample of a collection (:func:`sample_gallery_bank`), and a collection of logged
queries (:func:`query_bank_from_collection`). The collection helpers are sans-I/O
generators (see :mod:`._io`); :class:`~.client.DBNormClient` exposes them as methods.

The fingerprint of the statistics is :attr:`BankNormalizer.fingerprint` (a hash of the
bank contents, the gallery-bank keys and the method parameters).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from os import PathLike
from typing import Any, Sequence

import numpy as np

from .._validation import InputError, as_matrix
from ..methods import Params
from ..normalizer import BankNormalizer, unit_rows
from ._io import Call, Logic

__all__ = ["BankSet", "point_key", "point_keys", "sample_gallery_bank", "query_bank_from_collection"]

_MASK63 = (1 << 63) - 1


def point_key(pid: Any) -> int:
    """The int64 key of a Qdrant point id: an int as is, a UUID hashed to a non-negative int63.

    Used for self-exclusion (bank sampling and statistics) and by the statistics cache.
    """
    if type(pid) is int and 0 <= pid <= _MASK63:  # the hot path: plain non-negative int ids
        return pid
    if isinstance(pid, (int, np.integer)) and not isinstance(pid, bool):
        v = int(pid)
        if 0 <= v <= _MASK63:
            return v
        pid = str(v)
    s = str(uuid.UUID(str(pid))) if not isinstance(pid, uuid.UUID) else str(pid)
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") & _MASK63


def point_keys(ids: Sequence[Any]) -> np.ndarray:
    return np.fromiter((point_key(i) for i in ids), dtype=np.int64, count=len(ids))


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


# ------------------------------------------------------------------ collections
def record_vector(record: Any, using: str | None, *, required: bool = False) -> Any:
    """A Qdrant record's dense vector: the unnamed one, or the one named ``using``.

    ``None`` when the record carries no such vector; with ``required``, an
    :class:`InputError` naming the vectors it has instead."""
    v = record.vector
    if isinstance(v, dict):
        name = using if using is not None else ""
        if name in v:
            return v[name]
        if required:
            raise InputError(f"point {record.id!r} has no vector named {using!r}; pass using= one of {sorted(v)}.")
        return None
    return v


def _scroll_ids(collection: str, scroll_filter: Any = None, page: int = 1024) -> Logic:
    ids: list[Any] = []
    offset = None
    while True:
        recs, offset = yield Call(
            "scroll",
            dict(collection_name=collection, scroll_filter=scroll_filter, limit=page, offset=offset,
                 with_payload=False, with_vectors=False),
        )
        ids.extend(r.id for r in recs)
        if offset is None:
            return ids


def _fetch_vectors(collection: str, ids: list[Any], using: str | None, page: int = 1024) -> Logic:
    vecs: list[list[float]] = []
    got: list[Any] = []
    for i in range(0, len(ids), page):
        recs = yield Call(
            "retrieve",
            dict(collection_name=collection, ids=ids[i : i + page], with_payload=False,
                 with_vectors=True if using is None else [using]),
        )
        for r in recs:
            got.append(r.id)
            vecs.append(record_vector(r, using, required=True))
    return got, np.asarray(vecs, dtype=np.float32)


def sample_gallery_bank(
    collection: str, n: int, *, seed: int = 0, using: str | None = None, scroll_filter: Any = None
) -> Logic:
    """Logic: a seeded sample of ``n`` points of ``collection`` -> (vectors, int64 keys).

    Ids are scrolled (in id order, so the sample depends only on the seed and the
    collection's ids), ``n`` are drawn without replacement, and their vectors fetched.
    The keys let an item be left out of its own gallery-bank statistics.
    """
    ids = yield from _scroll_ids(collection, scroll_filter)
    if not ids:
        raise InputError(f"collection {collection!r} is empty: cannot sample a gallery bank from it.")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ids), size=min(int(n), len(ids)), replace=False))
    got, vecs = yield from _fetch_vectors(collection, [ids[i] for i in pick], using)
    return vecs, point_keys(got)


def query_bank_from_collection(
    collection: str, n: int | None = None, *, seed: int = 0, using: str | None = None, scroll_filter: Any = None
) -> Logic:
    """Logic: the vectors of a collection of logged queries (all, or a seeded sample of ``n``)."""
    ids = yield from _scroll_ids(collection, scroll_filter)
    if not ids:
        raise InputError(f"collection {collection!r} is empty: it holds no logged queries.")
    if n is not None and n < len(ids):
        rng = np.random.default_rng(seed)
        ids = [ids[i] for i in np.sort(rng.choice(len(ids), size=int(n), replace=False))]
    _, vecs = yield from _fetch_vectors(collection, ids, using)
    return vecs
