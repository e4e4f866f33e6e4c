"""A thread-safe, bounded LRU cache of per-point statistics.

Keys are ``(collection, point key, fingerprint)``: statistics computed with other banks
or parameters are never returned, and they age out of the cache on their own.
Values are the flat records of :meth:`GalleryStats.record` (the payload format).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable, Mapping

__all__ = ["StatsCache"]

Record = Mapping[str, Any]


class StatsCache:
    """Bounded LRU of statistics records; every method is atomic (one lock)."""

    def __init__(self, maxsize: int = 1_000_000) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = int(maxsize)
        self._d: OrderedDict[tuple[str, int, str], Record] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._d)

    def get_many(self, collection: str, keys: Iterable[int], fingerprint: str) -> list[Record | None]:
        """The record of each key (``None`` where absent), marking hits as recently used."""
        out: list[Record | None] = []
        with self._lock:
            d = self._d
            for k in keys:
                ck = (collection, k, fingerprint)
                r = d.get(ck)
                if r is not None:
                    d.move_to_end(ck)
                    self.hits += 1
                else:
                    self.misses += 1
                out.append(r)
        return out

    def put_many(self, collection: str, items: Iterable[tuple[int, Record]], fingerprint: str) -> None:
        """Insert or refresh records; evicts the least recently used past ``maxsize``."""
        if self.maxsize == 0:
            return
        with self._lock:
            d = self._d
            for k, r in items:
                ck = (collection, k, fingerprint)
                d[ck] = r
                d.move_to_end(ck)
            while len(d) > self.maxsize:
                d.popitem(last=False)

    def clear(self, collection: str | None = None) -> None:
        """Drop everything, or one collection's entries."""
        with self._lock:
            if collection is None:
                self._d.clear()
            else:
                for ck in [ck for ck in self._d if ck[0] == collection]:
                    del self._d[ck]
