"""Bank sources in a Qdrant collection, and point ids as int64 keys.

Sources: a seeded sample of a collection as the gallery bank
(:func:`sample_gallery_bank`, with the sampled points' keys so an item never counts
itself) and a collection of logged queries as the query bank
(:func:`query_bank_from_collection`). They are sans-I/O generators (see :mod:`._io`);
:class:`~.client.DBNormClient` exposes them as methods and returns a
:class:`dbnorm_qdrant.banks.BankSet`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from os import PathLike
from typing import Any, Sequence

import numpy as np

from ..core.validation import InputError, as_matrix
from ..banks import BankSet
from ._io import Call, Logic

__all__ = ["point_key", "point_keys", "sample_gallery_bank", "query_bank_from_collection"]

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
