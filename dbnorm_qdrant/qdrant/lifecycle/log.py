"""The query log: the query vectors that pass through the wrapper, kept in a Qdrant collection.

Every dense query vector a wrapper serves on a logged collection is offered to
:meth:`QueryLog.offer` (kept with probability ``sample_rate``) and buffered in memory;
the wrapper writes the buffer in batches off the query's path (a background thread for
:class:`~..client.DBNormClient`, a task for the async one) with :func:`flush_logic`:
one ``upsert`` of vector-only points (no payload, no text) into the log collection,
created on first use with the served vector's size and distance, then the counter in
the state collection (:mod:`.state`).

Which slot a logged query takes (its point id) is the policy:

``"ring"`` (default)
    query number ``t`` takes slot ``t % capacity``: the log holds the most recent
    ``capacity`` queries (it follows drifting traffic).
``"reservoir"``
    query ``t`` takes slot ``t`` while ``t < capacity``, then a slot drawn uniformly from
    ``[0, t]`` (kept when it falls below ``capacity``, dropped otherwise): the log is a
    uniform sample of every query ever logged (Vitter's algorithm R, seeded by ``t``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from qdrant_client import models

from ...errors import InputError
from ...validation import check_int, check_number
from .._io import Call, Logic
from . import state

__all__ = ["POLICIES", "QueryLog", "query_vectors", "ensure_log_logic"]

logger = logging.getLogger(__name__)

POLICIES = ("ring", "reservoir")


class QueryLog:
    """The in-memory side of one query log: options, the buffer, and the slot policy."""

    def __init__(self, name: str, *, capacity: int = 10_000, sample_rate: float = 1.0, policy: str = "ring",
                 batch: int = 64, seed: int = 0) -> None:
        if not isinstance(name, str) or not name:
            raise InputError(f"query_log must be a non-empty collection name, got {name!r}.")
        self.name = name
        self.capacity = check_int(capacity, "log_capacity", low=1, hint="it is the most queries the log keeps.")
        self.sample_rate = float(check_number(sample_rate, "log_sample_rate", low=0.0, high=1.0))
        if policy not in POLICIES:
            raise InputError(f"log_policy must be one of {POLICIES}, got {policy!r}.")
        self.policy = policy
        self.batch = batch
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._buffer: list[np.ndarray] = []
        #: queries logged so far (read from the state on the first flush)
        self.seen: int | None = None
        self.dim: int | None = None
        self.distance: str | None = None

    @property
    def pending(self) -> int:
        """Query vectors buffered, not written yet."""
        return len(self._buffer)

    def offer(self, vectors: list[np.ndarray]) -> bool:
        """Buffer the query vectors kept by the sample rate; True when a batch is ready to write."""
        with self._lock:
            for v in vectors:
                if self.sample_rate >= 1.0 or self._rng.random() < self.sample_rate:
                    self._buffer.append(v)
            return len(self._buffer) >= self.batch

    def _slots(self, n: int) -> list[int | None]:
        """The slots of the next ``n`` logged queries (``None``: dropped by the reservoir)."""
        t0 = int(self.seen or 0)
        self.seen = t0 + n
        if self.policy == "ring":
            return [(t0 + i) % self.capacity for i in range(n)]
        out: list[int | None] = []
        for t in range(t0, t0 + n):
            j = t if t < self.capacity else int(np.random.default_rng((self.seed, t)).integers(0, t + 1))
            out.append(j if j < self.capacity else None)
        return out

    def flush_logic(self) -> Logic:
        """Logic: write the buffered vectors (one upsert) and the counter; returns how many."""
        if not self._buffer or self.dim is None:
            return 0
        sname = state.state_name(self.name)
        if self.seen is None:  # the counter of earlier processes
            got = yield from state.read_logic(sname, [state.COUNTER])
            counter = got.get(state.COUNTER)
            state.check_schema(counter, f"the counter of query log {self.name!r}")
            with self._lock:
                if self.seen is None:  # a concurrent flush may have numbered its queries meanwhile
                    self.seen = int((counter or {}).get("seen", 0))
        with self._lock:  # taken and numbered at once: concurrent flushes get disjoint slots
            vecs, self._buffer = self._buffer, []
            slots = self._slots(len(vecs))
        if not vecs:
            return 0
        # the size the vectors were served with: the collection may have been recreated since
        dim = len(vecs[0])
        if any(len(v) != dim for v in vecs):
            logger.warning("query log %r: the collection changed size while queries were buffered; only the "
                           "%d-dimensional ones are logged", self.name, dim)
        yield from ensure_log_logic(self.name, dim, self.distance or "Cosine")
        pts = [models.PointStruct(id=s, vector=np.asarray(v, dtype=np.float32).tolist())
               for s, v in zip(slots, vecs) if s is not None and len(v) == dim]
        if pts:
            yield Call("upsert", dict(collection_name=self.name, points=pts, wait=True))
        yield from state.ensure_logic(sname, dim)
        yield from state.write_logic(sname, dim, {state.COUNTER: {"kind": "log", "seen": int(self.seen)}})
        return len(vecs)


def ensure_log_logic(name: str, dim: int, distance: str) -> Logic:
    """Logic: create the log collection (``dim``, ``distance``) unless it exists; an existing
    one with another size or distance is refused, naming both (nothing is written)."""
    exists = yield Call("collection_exists", dict(collection_name=name))
    if not exists:
        yield Call("create_collection", dict(collection_name=name, vectors_config=models.VectorParams(
            size=int(dim), distance=models.Distance(distance))))
        return
    owned = yield Call("collection_exists", dict(collection_name=state.state_name(name)))
    if not owned and (yield Call("count", dict(collection_name=name, exact=True))).count:
        raise InputError(
            f"collection {name!r} exists, holds points and is not a dbnorm query log (it has no state collection "
            f"{state.state_name(name)!r}); nothing was written to it. Pass another query_log name (a log must never "
            "be a collection of yours)."
        )
    desc = yield Call("get_collection", dict(collection_name=name))
    vp = desc.config.params.vectors
    size = getattr(vp, "size", None)
    dist = getattr(getattr(vp, "distance", None), "value", getattr(vp, "distance", None))
    if size != dim or dist != distance:
        raise InputError(
            f"the query log collection {name!r} exists with {size}-dimensional {dist} vectors, but the collection it "
            f"logs has {dim}-dimensional {distance} vectors; pass another query_log name (nothing was written to "
            f"{name!r})."
        )


def _dense(q: Any, dim: int) -> np.ndarray | None:
    if isinstance(q, models.NearestQuery):
        q = q.nearest
    if isinstance(q, np.ndarray) or (isinstance(q, list) and q and not isinstance(q[0], (list, dict))):
        try:
            a = np.asarray(q, dtype=np.float32)
        except (TypeError, ValueError):
            return None
        if a.shape == (dim,) and np.isfinite(a).all():
            return a
    return None


def query_vectors(query: Any, prefetch: Any, dim: int, using: str | None = None) -> list[np.ndarray]:
    """The dense query vectors of dimension ``dim`` in a request: the query and every
    prefetch branch's on the logged vector ``using`` (a branch naming another vector, and a
    query by point id, which is an item and not a query, are not logged)."""
    out = []
    v = _dense(query, dim)
    if v is not None:
        out.append(v)
    stack = list(prefetch if isinstance(prefetch, list) else [prefetch] if prefetch is not None else [])
    while stack:
        p = stack.pop()
        u = getattr(p, "using", None)
        v = _dense(getattr(p, "query", None), dim) if u in (None, "", using) else None
        if v is not None:
            out.append(v)
        sub = getattr(p, "prefetch", None)
        stack.extend(sub if isinstance(sub, list) else [sub] if sub is not None else [])
    return out
