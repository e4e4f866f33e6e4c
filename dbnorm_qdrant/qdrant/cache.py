"""A thread-safe, bounded cache of per-point statistics, stored in numpy arrays.

Keys are ``(collection, point key, fingerprint)``: statistics computed with other banks
or parameters are never returned, and they age out of the cache on their own.

Layout: one float64 row per cached point in a preallocated ``(capacity, len(STAT_FIELDS))``
array (``NaN``: a statistic the record lacks; the activation flags as 0/1), and per
``(collection, fingerprint)`` a dict from point key to row. A query gathers all its
candidates' rows with one fancy index (:meth:`StatsCache.get_rows`), under one short
lock. The arrays grow by doubling up to ``maxsize`` rows.

Eviction is CLOCK (second chance), an approximation of LRU that does not reorder
anything on a hit: a hit sets the row's reference bit; when the cache is full, a hand
sweeps the rows, clearing set bits and evicting the first row whose bit is clear. A new
row starts with its bit clear (it is a lap away from the hand), so a row used again
survives rows used once.

:meth:`get_many` / :meth:`put_many` keep the record interface (the flat dicts of
:meth:`GalleryStats.record`, the payload format) for callers outside the hot path.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..stats import STAT_FIELDS

__all__ = ["StatsCache", "FIELDS", "COLUMN", "BIAS", "record_to_row", "row_to_record"]

Record = Mapping[str, Any]

#: the columns of a cached row, in order: the statistics, then ``bias``, the additive bias
#: of the item (:func:`~dbnorm_qdrant.methods.bias`) under the fingerprint's parameters,
#: filled by the caller (the fingerprint fixes the method), ``NaN`` when not filled
FIELDS: tuple[str, ...] = STAT_FIELDS + ("bias",)
#: column name -> column
COLUMN: dict[str, int] = {f: i for i, f in enumerate(FIELDS)}
BIAS = COLUMN["bias"]
_BOOL = frozenset(("act_q", "act_g"))
_NAN = math.nan


def record_to_row(r: Record) -> list[float]:
    """A record's statistics as one row (``NaN`` where absent, and in ``bias``)."""
    g = r.get
    return [_NAN if (v := g(f)) is None else float(v) for f in STAT_FIELDS] + [_NAN]


def row_to_record(row: np.ndarray, fingerprint: str) -> dict[str, Any]:
    """Inverse of :func:`record_to_row` (the bias column is not part of a record)."""
    out: dict[str, Any] = {"fp": fingerprint}
    for f, v in zip(STAT_FIELDS, row.tolist()):
        if v == v:  # not NaN
            out[f] = bool(v) if f in _BOOL else v
    return out


class StatsCache:
    """Bounded cache of statistics rows; every method is atomic (one lock)."""

    def __init__(self, maxsize: int = 1_000_000) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = int(maxsize)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._reset()

    def _reset(self) -> None:
        cap = min(self.maxsize, 1024)
        self._tables: dict[tuple[str, str], dict[int, int]] = {}  # (collection, fp) -> key -> row
        self._vals = np.empty((cap, len(FIELDS)), dtype=np.float64)
        self._ref = np.zeros(cap, dtype=bool)  # CLOCK reference bits
        self._owner: list[tuple[dict[int, int], int] | None] = [None] * cap  # row -> (its table, its key)
        self._free: list[int] = list(range(cap - 1, -1, -1))  # popped from the end: rows 0, 1, ...
        self._n = 0
        self._hand = 0

    def __len__(self) -> int:
        return self._n

    # ----------------------------------------------------------------- hot path
    def get_rows(
        self, collection: str, keys: Sequence[int], fingerprint: str
    ) -> tuple[np.ndarray | None, list[int]]:
        """``(rows, missing)``: the cached rows of ``keys`` (``(len(keys), len(FIELDS))``, a
        copy; the rows of missing keys are ``NaN``) and the positions of the missing keys.
        ``rows`` is ``None`` when nothing is cached. Hits are marked as recently used."""
        n = len(keys)
        with self._lock:
            t = self._tables.get((collection, fingerprint))
            if t is None:
                self.misses += n
                return None, list(range(n))
            try:  # all cached (the common case): one pass, no intermediate list
                idx = np.fromiter(map(t.__getitem__, keys), dtype=np.intp, count=n)
            except KeyError:
                pass
            else:
                self.hits += n
                self._ref[idx] = True
                return self._vals[idx], []
            sl = list(map(t.get, keys))
            missing = [j for j, s in enumerate(sl) if s is None]
            self.misses += len(missing)
            self.hits += n - len(missing)
            if len(missing) == n:
                return None, missing
            for j in missing:
                sl[j] = 0
            idx = np.array(sl, dtype=np.intp)
            rows = self._vals[idx]
            rows[missing] = _NAN
            idx = np.delete(idx, missing)
            self._ref[idx] = True
            return rows, missing

    def get_column(self, collection: str, keys: Sequence[int], fingerprint: str, col: int) -> np.ndarray | None:
        """Column ``col`` of the cached rows of ``keys`` (a copy) when every key is cached and
        none of those values is ``NaN``; else ``None`` (and nothing is counted or marked).
        Hits are marked as recently used."""
        n = len(keys)
        with self._lock:
            t = self._tables.get((collection, fingerprint))
            if t is None:
                return None
            try:
                idx = np.fromiter(map(t.__getitem__, keys), dtype=np.intp, count=n)
            except KeyError:
                return None
            v = self._vals[idx, col]
            if v.sum() != v.sum():  # a NaN
                return None
            self.hits += n
            self._ref[idx] = True
            return v

    def put_rows(self, collection: str, keys: Sequence[int], rows: np.ndarray, fingerprint: str) -> None:
        """Insert or refresh rows (``rows[i]`` for ``keys[i]``; columns :data:`FIELDS`)."""
        if self.maxsize == 0 or not len(keys):
            return
        rows = np.asarray(rows, dtype=np.float64)
        if len(keys) > self.maxsize:  # only the last maxsize can stay
            keys, rows = list(keys)[-self.maxsize :], rows[-self.maxsize :]
        with self._lock:
            ck = (collection, fingerprint)
            t = self._tables.get(ck)
            if t is None:
                t = self._tables[ck] = {}
            pos: dict[int, int] = {}  # the last occurrence of each key wins
            for i, k in enumerate(keys):
                pos[k] = i
            new = [k for k in pos if k not in t]
            slots = self._alloc(len(new), keep=t, keep_keys=pos)
            owner = self._owner
            for k, s in zip(new, slots):
                t[k] = s
                owner[s] = (t, k)
            self._n += len(new)
            idx = np.fromiter((t[k] for k in pos), dtype=np.intp, count=len(pos))
            src = np.fromiter(pos.values(), dtype=np.intp, count=len(pos))
            self._vals[idx] = rows[src]
            self._ref[idx] = True  # a refreshed row counts as used ...
            if slots:
                self._ref[slots] = False  # ... a new one gets its second chance from a hit

    def _alloc(self, m: int, keep: dict[int, int], keep_keys: Mapping[int, int]) -> list[int]:
        """``m`` free rows: free ones, then growth, then CLOCK eviction (never a row of
        ``keep_keys`` in table ``keep``, which the caller is about to refresh)."""
        out: list[int] = []
        free = self._free
        while free and len(out) < m:
            out.append(free.pop())
        if len(out) < m and len(self._ref) < self.maxsize:
            cap = len(self._ref)
            self._grow(min(self.maxsize, max(2 * cap, cap + m - len(out))))
            while free and len(out) < m:
                out.append(free.pop())
        if len(out) < m:
            excl = set(out)
            excl.update(s for k in keep_keys if (s := keep.get(k)) is not None)
            out.extend(self._evict(m - len(out), excl))
        return out

    def _grow(self, cap: int) -> None:
        old = len(self._ref)
        vals = np.empty((cap, len(FIELDS)), dtype=np.float64)
        vals[:old] = self._vals
        ref = np.zeros(cap, dtype=bool)
        ref[:old] = self._ref
        self._vals, self._ref = vals, ref
        self._owner.extend([None] * (cap - old))
        self._free.extend(range(cap - 1, old - 1, -1))

    def _evict(self, m: int, excl: set[int]) -> list[int]:
        """CLOCK: sweep from the hand, clearing reference bits, taking rows whose bit is
        clear (none of ``excl``); evicts the ``m`` rows taken from their tables."""
        ref, owner = self._ref, self._owner
        cap = len(ref)
        out: list[int] = []
        hand = self._hand
        chunk = max(4 * m, 256)
        laps = 0
        while len(out) < m:
            end = min(hand + chunk, cap)
            seg = ref[hand:end]
            stop = end - hand
            for c in np.flatnonzero(~seg).tolist():
                s = c + hand
                if s not in excl:
                    out.append(s)
                    excl.add(s)
                    if len(out) == m:
                        stop = c + 1
                        break
            seg[:stop] = False  # second chance used up
            hand += stop
            if hand >= cap:
                hand = 0
                laps += 1
                if laps > 2:  # a lap clears every bit, so the next finds the victims
                    raise AssertionError("StatsCache eviction found no victim")
        self._hand = hand
        for s in out:
            t, k = owner[s]
            del t[k]
            owner[s] = None
        self._n -= len(out)
        return out

    # ------------------------------------------------------------ record interface
    def get_many(self, collection: str, keys: Iterable[int], fingerprint: str) -> list[dict[str, Any] | None]:
        """The record of each key (``None`` where absent), marking hits as recently used."""
        keys = list(keys)
        rows, missing = self.get_rows(collection, keys, fingerprint)
        if rows is None:
            return [None] * len(keys)
        miss = set(missing)
        return [None if j in miss else row_to_record(rows[j], fingerprint) for j in range(len(keys))]

    def put_many(self, collection: str, items: Iterable[tuple[int, Record]], fingerprint: str) -> None:
        """Insert or refresh records; evicts (CLOCK, about least recently used) past ``maxsize``."""
        if self.maxsize == 0:
            return
        keys: list[int] = []
        rows: list[list[float]] = []
        for k, r in items:
            keys.append(k)
            rows.append(record_to_row(r))
        if keys:
            self.put_rows(collection, keys, np.asarray(rows, dtype=np.float64).reshape(len(keys), len(FIELDS)), fingerprint)

    def clear(self, collection: str | None = None) -> None:
        """Drop everything, or one collection's entries."""
        with self._lock:
            if collection is None:
                self._reset()
                return
            for ck in [ck for ck in self._tables if ck[0] == collection]:
                t = self._tables.pop(ck)
                rows = list(t.values())
                for s in rows:
                    self._owner[s] = None
                self._ref[rows] = False
                self._free.extend(rows)
                self._n -= len(rows)
