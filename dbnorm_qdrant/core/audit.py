"""Hub audit: which gallery items attract far more bank queries than the rest (docs/methods.md §8).

A planted hub (an embedding placed near the centre of the query distribution, or of one
of its clusters, so that it enters the top-k of many queries) shows up where a natural
item does not: in the **k-occurrence** of the query bank, ``N_k(g)`` = how many bank
queries have ``g`` among their ``k`` nearest items (ties at the k-th value all counted, so
identical copies of one hub, which crowd each other out of a top-k, all count). The audit scores every item by the
robust z-score of ``log(1 + N_k(g))`` (median and MAD over the collection, as HubScan
does for its k-occurrence signal) and flags the highest ``ceil(budget * n)``.

Reported beside it, per item: the robust z-score of the method's bias (how strongly the
banks are attracted to the item: what normalisation subtracts), the k-occurrence after
normalisation (the same bank queries ranked by ``s - bias``: what a normalised search
would retrieve), and for the flagged items the spread of the bank queries they attract
(``1 - |mean of those unit queries|``: near 1 when they come from everywhere, near 0
when they are one topic's).

Everything streams: :class:`HubAudit` takes the gallery page by page and keeps, per bank
query, its running top ``2k`` (values and item positions; the extra ``k`` hold ties), so
memory is ``O(m k)`` for ``m``
bank queries plus a few floats per item; the item vectors are never held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import median_abs_deviation

from ..errors import InputError
from ..validation import check_int, check_number
from ..kernels.base import Request
from .index import index_rows
from .normalizer import BankNormalizer
from .scoring import bias as method_bias
from .stats import GalleryStats

__all__ = ["RowTopK", "HubAudit", "HubSignals", "robust_z", "check_budget", "flag_count", "TIE_TOL"]

#: similarities this close to a bank query's k-th best count as ties (float32 round-off of equal vectors)
TIE_TOL = 1e-6


def check_budget(budget: float) -> float:
    """The alert budget as a float in (0, 1), or an :class:`InputError` naming the fix."""
    b = check_number(budget, "budget")
    if not 0.0 < b < 1.0:
        raise InputError(f"budget must be a fraction of the collection strictly between 0 and 1 (e.g. 0.005 flags "
                         f"0.5% of the points), got {budget!r}.")
    return b


def flag_count(budget: float, n: int) -> int:
    """How many items a budget flags in a collection of ``n``: ``ceil(budget * n)``, at most ``n``."""
    return min(n, math.ceil(check_budget(budget) * n - 1e-9))


def robust_z(x: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 MAD)``; where the MAD is 0 (over half the values equal, e.g.
    most items never retrieved) the mean absolute deviation from the median stands in, and
    a constant ``x`` scores 0 everywhere."""
    x = np.asarray(x, dtype=np.float64)
    med = float(np.median(x))
    scale = float(median_abs_deviation(x, scale="normal"))
    if scale <= 0.0:
        scale = float(np.mean(np.abs(x - med))) * math.sqrt(math.pi / 2)
    if scale <= 0.0:
        return np.zeros_like(x)
    return (x - med) / scale


@dataclass
class RowTopK:
    """The running top-``k`` items of each of ``m`` rows over column blocks given one by one.

    ``update(S, offset)`` merges the block ``S`` (``m x p``; its columns are items
    ``offset .. offset + p - 1``); ``idx`` holds the item positions of each row's top-k (in no
    order; ``-1`` while fewer than ``k`` items were seen). Exact ties at the k-th value are
    broken by ``np.argpartition``, deterministically for the same blocks."""

    m: int
    k: int
    vals: np.ndarray = field(init=False)
    idx: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.vals = np.full((self.m, self.k), -np.inf, dtype=np.float64)
        self.idx = np.full((self.m, self.k), -1, dtype=np.int64)

    def update(self, vals: np.ndarray, offset: int, rows: slice = slice(None), cols: np.ndarray | None = None) -> None:
        """Merge candidates into ``rows``' top-k: ``vals`` (``r x c``) of the items ``offset + cols``
        (``cols``: ``r x c`` page positions; default every column of ``vals`` in order)."""
        if cols is None:
            cols = np.broadcast_to(np.arange(vals.shape[1], dtype=np.int64), vals.shape)
        v = np.concatenate([self.vals[rows], vals.astype(np.float64, copy=False)], axis=1)
        idx = np.concatenate([self.idx[rows], np.where(cols >= 0, cols + offset, -1)], axis=1)
        part = np.argpartition(-v, self.k - 1, axis=1)[:, : self.k]
        self.vals[rows] = np.take_along_axis(v, part, axis=1)
        self.idx[rows] = np.take_along_axis(idx, part, axis=1)

    def hits(self, k: int, tol: float = TIE_TOL) -> np.ndarray:
        """``(m, keep)`` bool: the kept entries at least as similar as their row's k-th best
        (within ``tol``). Ties at the k-th value all count, so identical copies of one hub that
        crowd each other out of a top-k all count (as far as ``keep`` holds them)."""
        kk = min(k, self.k)
        kth = np.partition(self.vals, self.k - kk, axis=1)[:, self.k - kk]
        return (self.idx >= 0) & (self.vals >= kth[:, None] - tol)

    def counts(self, n: int, k: int | None = None, tol: float = TIE_TOL) -> np.ndarray:
        """``N_k``: how many rows hold each of the ``n`` items among their ``k`` best, ties
        included (:meth:`hits`; int64)."""
        return np.bincount(self.idx[self.hits(self.k if k is None else k, tol)], minlength=n).astype(np.int64)


@dataclass
class HubSignals:
    """The audit's per-item signals (arrays over the items in the order they were given)."""

    score: np.ndarray  # robust z of log(1 + kocc): what the audit ranks by
    kocc: np.ndarray  # k-occurrence against the query bank, raw similarities
    kocc_normalized: np.ndarray | None  # the same after normalisation (s - bias); None for a method without bias
    bias: np.ndarray  # the method's bias (gates open for dis/dualdis)
    bias_z: np.ndarray  # its robust z

    def order(self) -> np.ndarray:
        """Item positions, most suspicious first (score, then bias z-score, then position)."""
        return np.lexsort((np.arange(self.score.size), -self.bias_z, -self.score))


class HubAudit:
    """Streaming hub audit of a gallery against a normaliser's query bank (see the module docs).

    Give the gallery with :meth:`add` page by page (vectors as stored, and their statistics
    under this normaliser when they are at hand, else they are computed), then :meth:`finish`.
    Pages are buffered into blocks of ``block`` items for the kernels' row top-k (memory:
    one block of vectors, the bank queries' running top-k, and a bias per item).
    """

    def __init__(self, nz: BankNormalizer, k: int = 10, *, block: int = 4096, chunk: int = 1024) -> None:
        self.nz = nz
        self.k = check_int(k, "k", hint="it is the length of the result lists counted (e.g. 10).")
        self.bank = nz.query_bank
        m = self.bank.shape[0]
        self.keep = 2 * self.k  # room for up to k items tied with a row's k-th best (copies of one hub)
        self.raw = RowTopK(m, self.keep)
        self.additive = nz.params.method != "none"
        self.norm = RowTopK(m, self.keep) if self.additive else None
        self._bias: list[np.ndarray] = []
        self.n = 0  # items merged so far
        self.block, self.chunk = block, chunk  # items per kernel call (buffered), bank rows per gather
        self._buf: list[tuple[np.ndarray, GalleryStats | None, np.ndarray | None]] = []
        self._nbuf = 0
        self._ext_bank: np.ndarray | None = None  # the bank's index-form rows [b, 1], built once
        self._hits: np.ndarray | None = None  # the raw top-k lists' hits (ties included), for spread()

    def add(self, G: np.ndarray, stats: GalleryStats | None = None, keys: np.ndarray | None = None) -> None:
        """One page of items: ``(p, d)`` vectors, their statistics (or None: computed here), and their
        integer keys: a bank query with the same key (a query bank sampled from the collection) is
        the item itself and never counts it, in the statistics and in the k-occurrence alike."""
        G = np.asarray(G, dtype=np.float32)
        if G.ndim != 2 or G.shape[1] != self.bank.shape[1]:
            raise InputError(f"the audited vectors have shape {G.shape} but the query bank has dimension "
                             f"{self.bank.shape[1]}; audit the vector the banks were built for.")
        if G.shape[0] == 0:
            return
        if self._buf and (self._buf[0][1] is None) != (stats is None):
            self._flush()  # a block is all stored statistics or all computed ones
        self._buf.append((G, stats, None if keys is None else np.asarray(keys, dtype=np.int64)))
        self._nbuf += G.shape[0]
        if self._nbuf >= self.block:
            self._flush()

    def _flush(self) -> None:
        """Run the buffered pages as one block (the kernels are several times faster on a block
        than page by page). Pages without statistics get them, and the bank's row top-k over the
        block, from one pass (:meth:`BankNormalizer.stats_and_topk`)."""
        if not self._buf:
            return
        buf, self._buf, self._nbuf = self._buf, [], 0
        nz = self.nz
        G = np.concatenate([g for g, _, _ in buf])
        ks = [k for _, _, k in buf]
        keys = None if any(k is None for k in ks) else np.concatenate(ks)
        plain = nz.similarity == "dot" and not nz.params.center
        idx = None
        if buf[0][1] is not None:
            stats = GalleryStats.concat([st for _, st, _ in buf]) if len(buf) > 1 else buf[0][1]
        elif plain:
            stats, idx = nz.stats_and_topk(G, min(self.keep, G.shape[0]), gallery_keys=keys)
        else:
            stats = nz.gallery_stats(G, gallery_keys=keys, activation=False, nonzero=False)
        b = np.asarray(method_bias(stats, nz.params), dtype=np.float64)
        self._bias.append(b)
        self._merge(self.raw, self.bank, G, keys, idx)
        if self.norm is not None:
            if plain:  # s - bias(g) = <[q, 1], [g, -bias(g)]>: the same kernel on the index form (core/index.py)
                if self._ext_bank is None:
                    self._ext_bank = np.hstack([self.bank, np.ones((self.bank.shape[0], 1), np.float32)])
                self._merge(self.norm, self._ext_bank, index_rows(G, stats, nz.params, unit=False), keys, None,
                            dot=True)
            else:  # centering or Euclid: the normalised scores row chunk by row chunk
                c = min(self.keep, G.shape[0])
                for r0 in range(0, self.bank.shape[0], self.chunk):
                    rows = slice(r0, r0 + self.chunk)
                    S = nz.base_scores(self.bank[rows], nz.pair_sims(self.bank[rows], G), stats) - b[None, :]
                    bk = nz.query_bank_keys
                    if bk is not None and keys is not None:  # a pseudo-query never retrieves itself
                        S[(bk[rows, None] == keys[None, :]) & (bk[rows, None] >= 0)] = -np.inf
                    i = np.argpartition(-S, c - 1, axis=1)[:, :c]
                    self.norm.update(np.take_along_axis(S, i, axis=1), self.n, rows, i)
        self.n += G.shape[0]

    def _merge(self, top: RowTopK, bank: np.ndarray, G: np.ndarray, keys: np.ndarray | None,
               idx: np.ndarray | None, *, dot: bool | None = None) -> None:
        """Merge the block ``G``'s top-k of every bank row into ``top``: the kernels' row top-k
        (``idx`` when a pass already made it), values recomputed for those items only. A bank
        row and an item with the same key (a pseudo-query that is the item) never pair."""
        dot = self.nz.similarity == "dot" if dot is None else dot
        if idx is None:
            req = Request(row_topk=min(top.k, G.shape[0]))
            bk = self.nz.query_bank_keys  # the rows of bank (or of its index form) are the bank queries
            idx = (self.nz.backend.reduce_vectors(bank, G, req, bk, keys) if dot
                   else self.nz.reduce(bank, G, req, bk, keys)).row_topk
        for r0 in range(0, bank.shape[0], self.chunk):
            rows = slice(r0, r0 + self.chunk)
            i = idx[rows]
            near = G[np.maximum(i, 0)]  # (rows, c, d)
            B = bank[rows][:, None, :]
            v = np.einsum("rkd,rkd->rk", near, np.broadcast_to(B, near.shape)) if dot else \
                -np.linalg.norm(near - B, axis=2)
            v[i < 0] = -np.inf
            top.update(v, self.n, rows, i)

    def finish(self) -> HubSignals:
        """The signals of every item given so far."""
        self._flush()
        if self.n == 0:
            raise InputError("the audit saw no items: the collection is empty (or none of its points has the "
                             "audited vector); upsert points first.")
        self._hits = None  # spread() reads the lists as they are now
        kocc = self.raw.counts(self.n, self.k)
        bias = np.concatenate(self._bias)
        return HubSignals(score=robust_z(np.log1p(kocc)), kocc=kocc,
                          kocc_normalized=None if self.norm is None else self.norm.counts(self.n, self.k),
                          bias=bias, bias_z=robust_z(bias))

    def spread(self, item: int) -> float:
        """``1 - |mean|`` of the unit bank queries whose top-k holds ``item`` (NaN when none does;
        after :meth:`finish`)."""
        if self._hits is None:  # once for every flagged item
            self._hits = self.raw.hits(self.k)
        rows = np.flatnonzero(((self.raw.idx == item) & self._hits).any(axis=1))
        if rows.size == 0:
            return float("nan")
        B = self.bank[rows].astype(np.float64)
        B /= np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
        return float(1.0 - np.linalg.norm(B.mean(axis=0)))
