"""A thread-safe, bounded cache of per-point statistics, stored in numpy arrays.

Keys are ``(collection, point key, fingerprint)``: statistics computed with other banks
or parameters are never returned, and they age out of the cache on their own.

Layout: the cached points' statistics in one preallocated float64 array stored by
column, ``(len(FIELDS), capacity)`` (``NaN``: a statistic the record lacks; the activation
flags as 0/1), so that one statistic of many points (the bias, on the hot path) is read
from one compact column. Per ``(collection, fingerprint)`` a :class:`_Table` maps point
keys to rows: a dict, and a dense int32 array ``key -> row`` (``-1``: absent) covering the
small keys, the common case of integer point ids (it grows by doubling, up to
``4 * maxsize`` keys and 16 bytes per cached key of the table). A query's candidates are
then found, and for an additive method reranked, by one compiled call under one short
lock (:meth:`StatsCache.additive_topk`) instead of one dict lookup per candidate; other
keys (UUIDs, large ids) are looked up in the dict, then reranked by the same call. The
statistics arrays grow by doubling up to ``maxsize`` rows; a table emptied by eviction
is dropped.

Eviction is CLOCK (second chance), an approximation of LRU that does not reorder
anything on a hit: a hit sets the row's reference bit; when the cache is full, a hand
sweeps the rows, clearing set bits and evicting the first row whose bit is clear. A new
row starts with its bit clear (it is a lap away from the hand), so a row used again
survives rows used once.
"""

from __future__ import annotations

import math
import operator
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from ..kernels.rerank_topk import additive_topk
from ..core.stats import STAT_FIELDS
from ..validation import check_int

__all__ = ["StatsCache", "FIELDS", "COLUMN", "BIAS", "record_to_row"]

Record = Mapping[str, Any]

#: the columns of a cached row, in order: the statistics, then ``bias``, the additive bias
#: of the item (:func:`~dbnorm_qdrant.methods.bias`) under the fingerprint's parameters,
#: filled by the caller (the fingerprint fixes the method), ``NaN`` when not filled
FIELDS: tuple[str, ...] = STAT_FIELDS + ("bias",)
#: column name -> column
COLUMN: dict[str, int] = {f: i for i, f in enumerate(FIELDS)}
BIAS = COLUMN["bias"]
_NAN = math.nan


def record_to_row(r: Record) -> list[float]:
    """A record's statistics as one row (``NaN`` where absent, and in ``bias``)."""
    g = r.get
    return [_NAN if (v := g(f)) is None else float(v) for f in STAT_FIELDS] + [_NAN]


class _Table:
    """The rows of one ``(collection, fingerprint)`` (``ck``): ``rows`` (key -> row, every
    key) and ``dense``: ``dense[key]`` is the row of every cached key below ``len(dense)``,
    ``-1`` elsewhere. ``dense`` grows by doubling to cover larger keys, up to the cache's
    dense bound and to 4 entries per cached key (16 bytes), so a few large ids cannot
    make it big; keys beyond it are found through ``rows``."""

    __slots__ = ("ck", "rows", "dense")

    def __init__(self, ck: tuple[str, str]) -> None:
        self.ck = ck
        self.rows: dict[int, int] = {}
        self.dense = np.full(1024, -1, dtype=np.int32)


class StatsCache:
    """Bounded cache of statistics rows; every method is atomic (one lock)."""

    def __init__(self, maxsize: int = 1_000_000) -> None:
        self.maxsize = check_int(maxsize, "maxsize", low=0, hint="it is the capacity in points (0: no cache).")
        #: keys below this bound may be indexed densely too (see :class:`_Table`)
        self.dense_bound = max(1 << 16, 4 * self.maxsize)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._reset()

    def _reset(self) -> None:
        cap = min(self.maxsize, 1024)
        self._tables: dict[tuple[str, str], _Table] = {}  # (collection, fp) -> its key -> row maps
        self._vals = np.empty((len(FIELDS), cap), dtype=np.float64)  # by column
        self._bias = self._vals[BIAS]
        self._top_pos = np.empty(64, dtype=np.int64)  # additive_topk's output buffers
        self._top_score = np.empty(64, dtype=np.float64)
        self._ref = np.zeros(cap, dtype=bool)  # CLOCK reference bits
        self._owner: list[tuple[_Table, int] | None] = [None] * cap  # row -> (its table, its key)
        self._free: list[int] = list(range(cap - 1, -1, -1))  # popped from the end: rows 0, 1, ...
        self._n = 0
        self._hand = 0

    def __len__(self) -> int:
        return self._n

    # ----------------------------------------------------------------- hot path
    @staticmethod
    def _find(t: _Table, keys: Sequence[int] | np.ndarray) -> np.ndarray:
        """The row of each key (``-1``: not cached), as an intp array."""
        d = t.dense
        a = keys if isinstance(keys, np.ndarray) else np.array(keys)
        # a view as uint64 puts negative keys above every bound: one comparison checks both ends
        if a.dtype == np.int64 and (not len(a) or a.view(np.uint64).max() < len(d)):
            return d[a]
        # other keys: a key inside the dense range but not in ``dense`` is not cached
        # (it would be there), so only the dict needs asking
        g = t.rows.get
        return np.fromiter((-1 if (r := g(k)) is None else r for k in keys), dtype=np.intp, count=len(keys))

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
            idx = self._find(t, keys)
            hit = idx >= 0
            n_hit = int(np.count_nonzero(hit))
            self.hits += n_hit
            self.misses += n - n_hit
            if n_hit == 0:
                return None, list(range(n))
            rows = self._vals[:, idx].T  # a copy (fancy indexing), one row per key
            if n_hit == n:
                self._ref[idx] = True
                return rows, []
            missing = np.flatnonzero(~hit)
            rows[missing] = _NAN
            self._ref[idx[hit]] = True
            return rows, missing.tolist()

    def additive_topk(
        self, collection: str, keys: list[int], scores: list[float], fingerprint: str, sign: float,
        offset: int, limit: int,
    ) -> tuple[list[int], list[float]] | None:
        """Rerank candidates by their cached bias (an additive method):
        :func:`~dbnorm_qdrant.kernels.rerank_topk.additive_topk` on the cached rows.

        ``keys``: the candidates' point keys, ``scores``: their raw scores. Returns the
        positions and normalised scores of ranks ``[offset, offset + limit)``, best first;
        ``None`` when a candidate is not cached or has no bias (the caller then takes
        :meth:`get_rows`' general path). Hits are marked as recently used."""
        with self._lock:
            t = self._tables.get((collection, fingerprint))
            if t is None or not keys:
                return None
            if len(self._top_pos) < offset + limit:
                self._top_pos = np.empty(offset + limit, dtype=np.int64)
                self._top_score = np.empty(offset + limit, dtype=np.float64)
            m = -1
            k0 = keys[0]
            if type(k0) is int and 0 <= k0 < len(t.dense):  # most likely all in the dense index
                cand = np.array(keys + scores)  # keys, then raw scores: one conversion
                if cand.dtype == np.float64:
                    m = additive_topk(cand, sign, t.dense, self._bias, self._ref, offset, limit,
                                      self._top_pos, self._top_score)
            if m < 0:  # through the dict (keys beyond the dense index)
                g = t.rows.get
                rows = [g(k, -1) for k in keys]
                if -1 in rows:
                    return None
                m = additive_topk(np.array(rows + scores, dtype=np.float64), sign, None, self._bias, self._ref,
                                  offset, limit, self._top_pos, self._top_score)
                if m < 0:
                    return None
            self.hits += len(keys)
            return self._top_pos[:m].tolist(), self._top_score[:m].tolist()

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
                t = _Table(ck)
            tr = t.rows
            pos: dict[int, int] = {}  # the last occurrence of each key wins
            for i, k in enumerate(keys):
                pos[operator.index(k)] = i  # an integer key (a TypeError before any change)
            new = [k for k in pos if k not in tr]
            slots = self._alloc(len(new), keep=tr, keep_keys=pos)
            self._tables[ck] = t  # (again: eviction drops a table it empties)
            owner = self._owner
            for k, s in zip(new, slots):
                tr[k] = s
                owner[s] = (t, k)
            if new:
                self._index_dense(t, new, slots)
            self._n += len(new)
            idx = np.fromiter((tr[k] for k in pos), dtype=np.intp, count=len(pos))
            src = np.fromiter(pos.values(), dtype=np.intp, count=len(pos))
            self._vals[:, idx] = rows[src].T
            self._ref[idx] = True  # a refreshed row counts as used ...
            if slots:
                self._ref[slots] = False  # ... a new one gets its second chance from a hit

    def _index_dense(self, t: _Table, new: list[int], slots: list[int]) -> None:
        """Enter the new keys ``new`` (rows ``slots``, already in ``t.rows``) into ``t.dense``,
        first doubling it (and re-indexing every key it then covers) while a new key lies
        beyond it and the limits allow."""
        d = t.dense
        top = max((k for k in new if 0 <= k < self.dense_bound), default=-1)
        if top >= len(d):
            allowed = min(self.dense_bound, max(len(d), 4 * len(t.rows)))
            size = len(d)
            while size <= top and 2 * size <= allowed:
                size *= 2
            if size > len(d):
                d = np.full(size, -1, dtype=np.int32)
                items = [(k, r) for k, r in t.rows.items() if 0 <= k < size]
                if items:
                    ks, rs = zip(*items)
                    d[list(ks)] = rs
                t.dense = d
                return
        fit = [(k, r) for k, r in zip(new, slots) if 0 <= k < len(d)]
        if fit:
            ks, rs = zip(*fit)
            d[list(ks)] = rs

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
        vals = np.empty((len(FIELDS), cap), dtype=np.float64)
        vals[:, :old] = self._vals
        ref = np.zeros(cap, dtype=bool)
        ref[:old] = self._ref
        self._vals, self._ref = vals, ref
        self._bias = vals[BIAS]
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
            del t.rows[k]
            if 0 <= k < len(t.dense):
                t.dense[k] = -1
            if not t.rows:  # an empty table (a fingerprint no longer used) goes
                self._tables.pop(t.ck, None)
            owner[s] = None
        self._n -= len(out)
        return out

    def clear(self, collection: str | None = None) -> None:
        """Drop everything, or one collection's entries."""
        with self._lock:
            if collection is None:
                self._reset()
                return
            for ck in [ck for ck in self._tables if ck[0] == collection]:
                t = self._tables.pop(ck)
                rows = list(t.rows.values())
                for s in rows:
                    self._owner[s] = None
                self._ref[rows] = False
                self._free.extend(rows)
                self._n -= len(rows)
