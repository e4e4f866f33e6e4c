"""Bank sources in a Qdrant collection, scrolling a collection, and point ids as int64 keys.

Sources: a seeded sample of a collection as the gallery bank
(:func:`sample_gallery_bank`, with the sampled points' keys so an item never counts
itself), a collection of logged queries as the query bank
(:func:`query_bank_from_collection`), and both put together with arrays into a
:class:`dbnorm_qdrant.banks.BankSet` (:func:`build_banks`). They are sans-I/O generators
(see :mod:`._io`); :class:`~.client.DBNormClient` exposes them as methods.

:func:`scroll_pages` is the one loop over a collection's pages (Qdrant's ``scroll`` with
its offset protocol); :func:`iter_pages` runs it with a synchronous client as a plain
iterator, for code that is not written sans-I/O (the CLI, batch jobs).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import InputError
from ..validation import check_int
from ..banks import BankSet
from ._io import Call, Logic

__all__ = ["point_key", "point_keys", "record_vector", "vector_selector", "scroll_pages", "iter_pages",
           "sample_gallery_bank", "query_bank_from_collection", "build_banks"]

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


def vector_selector(using: str | None) -> Any:
    """The ``with_vectors`` selector that returns the dense vector ``using`` (``None``: the unnamed one)."""
    return True if using is None else [using]


#: what :func:`scroll_pages` calls on each page: nothing more, or a logic generator to run
PageFn = Callable[[list[Any]], "Logic | None"]


def scroll_pages(
    collection: str,
    each: PageFn,
    *,
    page_size: int = 1024,
    scroll_filter: Any = None,
    with_payload: Any = False,
    with_vectors: Any = False,
) -> Logic:
    """Logic: scroll a whole collection (in id order), calling ``each(records)`` on every
    non-empty page of at most ``page_size`` records. When ``each`` returns a logic
    generator (e.g. writes for that page), it runs before the next page is asked for."""
    offset = None
    while True:
        recs, offset = yield Call(
            "scroll",
            dict(collection_name=collection, scroll_filter=scroll_filter, limit=page_size, offset=offset,
                 with_payload=with_payload, with_vectors=with_vectors),
        )
        if recs:
            sub = each(recs)
            if sub is not None:
                yield from sub
        if offset is None:
            return


def iter_pages(client: Any, collection: str, **options: Any) -> Iterator[list[Any]]:
    """The pages of :func:`scroll_pages` (same keyword ``options``) with a synchronous
    ``QdrantClient``, as a plain iterator of record lists."""
    pages: list[list[Any]] = []
    gen = scroll_pages(collection, pages.append, **options)
    send: Any = None
    while True:
        try:
            call = gen.send(send)
        except StopIteration:
            yield from pages
            return
        yield from pages
        pages.clear()
        send = getattr(client, call.name)(**call.kwargs)


def _scroll_ids(collection: str, scroll_filter: Any = None) -> Logic:
    ids: list[Any] = []
    yield from scroll_pages(collection, lambda recs: ids.extend(r.id for r in recs), scroll_filter=scroll_filter)
    return ids


def _fetch_vectors(collection: str, ids: list[Any], using: str | None, page: int = 1024) -> Logic:
    vecs: list[list[float]] = []
    got: list[Any] = []
    for i in range(0, len(ids), page):
        recs = yield Call(
            "retrieve",
            dict(collection_name=collection, ids=ids[i : i + page], with_payload=False,
                 with_vectors=vector_selector(using)),
        )
        for r in recs:
            got.append(r.id)
            vecs.append(record_vector(r, using, required=True))
    return got, np.asarray(vecs, dtype=np.float32)


_SAMPLE_HINT = "it is the number of the collection's points drawn as the gallery bank (a few thousand is typical)."


def sample_gallery_bank(
    collection: str, n: int, *, seed: int = 0, using: str | None = None, scroll_filter: Any = None
) -> Logic:
    """Logic: a seeded sample of ``n`` points of ``collection`` -> (vectors, int64 keys).

    Ids are scrolled (in id order, so the sample depends only on the seed and the
    collection's ids), ``n`` are drawn without replacement, and their vectors fetched.
    The keys let an item be left out of its own gallery-bank statistics.
    """
    n = check_int(n, "gallery_sample", hint=_SAMPLE_HINT)
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
    if n is not None:
        n = check_int(n, "n", hint="it is the number of logged queries sampled as the query bank (None: all).")
    ids = yield from _scroll_ids(collection, scroll_filter)
    if not ids:
        raise InputError(f"collection {collection!r} is empty: it holds no logged queries.")
    if n is not None and n < len(ids):
        rng = np.random.default_rng(seed)
        ids = [ids[i] for i in np.sort(rng.choice(len(ids), size=int(n), replace=False))]
    _, vecs = yield from _fetch_vectors(collection, ids, using)
    return vecs


def build_banks(
    collection: str,
    *,
    banks: BankSet | None = None,
    normalizer: Any = None,
    query_bank: Any = None,
    query_collection: str | None = None,
    gallery_sample: int | None = None,
    using: str | None = None,
    seed: int = 0,
) -> Logic:
    """Logic: a bank set with parts taken from arrays or collections (``None`` when nothing is given).

    Starts from ``banks`` (or the banks of ``normalizer``, a :class:`BankNormalizer`);
    ``query_bank`` (an array) or ``query_collection`` (a collection of logged query
    vectors, on the same client) replace the query bank; ``gallery_sample=n`` draws a
    seeded sample of ``n`` points of ``collection`` itself as the gallery bank (their keys
    kept, so an item never counts itself).
    """
    if gallery_sample is not None:  # checked before anything is fetched
        check_int(gallery_sample, "gallery_sample", hint=_SAMPLE_HINT)
    if normalizer is not None:
        banks = BankSet(normalizer.query_bank, normalizer.gallery_bank, normalizer.gallery_bank_keys)
    if query_collection is not None:
        query_bank = yield from query_bank_from_collection(query_collection, seed=seed)
    if query_bank is not None:
        banks = (BankSet.from_arrays(query_bank) if banks is None
                 else BankSet(np.asarray(query_bank), banks.gallery_bank, banks.gallery_bank_keys))
    if gallery_sample is not None:
        if banks is None:
            raise InputError("gallery_sample needs a query bank: pass banks=, query_bank= or query_collection=.")
        vecs, keys = yield from sample_gallery_bank(collection, gallery_sample, seed=seed, using=using)
        banks = banks.with_gallery(vecs, keys)
    return banks
