"""The statistics precompute on Ray: one task per chunk of points, written back only when every
task has succeeded (docs/scale.md).

The flow (:func:`ray_precompute_logic`, a sans-I/O generator driven with the wrapper's own
client, like :func:`dbnorm_qdrant.qdrant.store.precompute_logic`):

1. the driver scrolls the collection in chunks of ``chunk_size`` points, skipping points
   whose statistics are current (the precompute is resumable, as the local one), and
   submits one Ray task per chunk; the normaliser (banks + method) is put in the object
   store once and shared by every task;
2. each task computes its chunk's statistics with :func:`~dbnorm_qdrant.qdrant.store.page_stats`
   (the one per-page computation of the local precompute too); a task whose worker dies is
   retried (``max_retries``); at most ``2 x workers`` tasks are in flight, so memory stays
   bounded by the chunk size;
3. only when every task has succeeded does the driver write the statistics with batched
   ``SetPayload`` operations under the reserved key, in the store's record format
   (:func:`~dbnorm_qdrant.qdrant.store.write_stats_logic`), so a failed run leaves the
   payload as it was (a collection serving older statistics keeps serving them).

Where the vectors are read: Qdrant's local mode and Qdrant Edge are single-process, so the
driver scrolls the vectors and hands them to the tasks (``fetch="driver"``); with a
server (a client with a URL), ``fetch="workers"`` has the driver scroll ids only and each
task retrieve its chunk's vectors from the server itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..core.normalizer import BankNormalizer
from ..core.stats import GalleryStats
from ..errors import InputError
from ..qdrant._io import Call, Logic, drive
from ..qdrant.index_store import check_index_logic, create_logic, names_logic, write_index_logic
from ..qdrant.planning import Overrides
from ..qdrant.sources import point_keys, record_vector, scroll_pages, vector_selector
from ..qdrant.server_path import bias_field
from ..qdrant.store import PrecomputeReport, page_stats, select_todo, write_stats_logic
from ..validation import check_int
from ._ray import peak_rss_mb, ray_session, require_ray, unwrap

__all__ = ["RayPrecomputeReport", "precompute_ray", "ray_precompute_logic", "server_options"]

log = logging.getLogger("dbnorm_qdrant.scale")

#: points per ``batch_update_points`` of the write phase
WRITE_BATCH = 1024
#: the connection options of a QdrantClient that a worker needs to open its own client to the server
_CONN = ("url", "host", "port", "grpc_port", "prefer_grpc", "https", "api_key", "prefix", "timeout")


@dataclass
class RayPrecomputeReport(PrecomputeReport):
    """A :class:`~dbnorm_qdrant.qdrant.store.PrecomputeReport` with what the Ray run adds:
    chunks (tasks), workers, where the vectors were read, seconds, the largest peak resident
    memory of a worker process (MiB), and the points added to the collection during the run
    (they have no statistics: run the precompute again, it computes only them)."""

    chunks: int = 0
    workers: int = 0
    fetch: str = "driver"
    seconds: float = 0.0
    peak_worker_mb: float = 0.0
    added_during_run: int = 0
    chunk_seconds: list[float] = field(default_factory=list, repr=False)


# ------------------------------------------------------------------ the tasks
def _chunk_task(nz: BankNormalizer, G: np.ndarray, keys: np.ndarray, index: int,
                hook: Callable[[int], None] | None) -> tuple[GalleryStats, float, float]:
    """A Ray task: the statistics of one chunk of vectors (its worker's peak memory, seconds)."""
    t0 = time.perf_counter()
    if hook is not None:  # tests inject a failure here (a worker that dies on its first attempt)
        hook(index)
    st = page_stats(nz, G, keys)
    return st, peak_rss_mb(), time.perf_counter() - t0


_CLIENTS: dict[tuple[Any, ...], Any] = {}  # a worker's clients to servers, opened once per process


def _fetch_task(nz: BankNormalizer, conn: dict[str, Any], collection: str, ids: list[Any], using: str | None,
                index: int, hook: Callable[[int], None] | None) -> tuple[np.ndarray, GalleryStats, float, float]:
    """A Ray task for a server: retrieve the chunk's vectors, then :func:`_chunk_task`; also
    returns which of ``ids`` had the vector (deleted or vector-less points are left out)."""
    from qdrant_client import QdrantClient

    ck = tuple(sorted(conn.items()))
    client = _CLIENTS.get(ck)
    if client is None:
        client = _CLIENTS[ck] = QdrantClient(**conn, check_compatibility=False)
    recs = client.retrieve(collection, ids=ids, with_payload=False, with_vectors=vector_selector(using))
    by_id = {str(r.id): record_vector(r, using) for r in recs}
    vecs = [by_id.get(str(i)) for i in ids]
    found = np.array([v is not None for v in vecs], dtype=bool)
    G = np.asarray([v for v in vecs if v is not None], dtype=np.float32).reshape(-1, nz.dim)
    st, rss, dt = _chunk_task(nz, G, point_keys([i for i, f in zip(ids, found) if f]), index, hook)
    return found, st, rss, dt


def server_options(client: Any) -> dict[str, Any] | None:
    """The connection options of a ``QdrantClient`` to a server (what a worker needs to open
    its own client), or ``None`` for local mode, Qdrant Edge or anything else."""
    opts = getattr(client, "init_options", None)
    if not isinstance(opts, dict) or opts.get("path") or opts.get("location") == ":memory:":
        return None
    if not (opts.get("url") or opts.get("host") or opts.get("location")):
        return None
    conn = {k: opts[k] for k in _CONN if opts.get(k) is not None}
    if opts.get("location") and "url" not in conn:
        conn["url"] = opts["location"]
    return conn


# ------------------------------------------------------------------ the driver
class _Runner:
    """Submits the chunk tasks with back-pressure and keeps their results until the end."""

    def __init__(self, ray: Any, nz: BankNormalizer, *, workers: int, max_retries: int, hook: Any,
                 rep: RayPrecomputeReport, bar: Any, conn: dict[str, Any] | None, collection: str,
                 using: str | None) -> None:
        self.ray, self.rep, self.bar, self.hook = ray, rep, bar, hook
        self.conn, self.collection, self.using = conn, collection, using
        self.nz_ref = ray.put(nz)  # once: every task reads the banks from the object store
        task = _fetch_task if conn is not None else _chunk_task
        self.fn = ray.remote(task).options(num_cpus=1, max_retries=max_retries, retry_exceptions=False)
        self.limit = 2 * workers
        self.pending: dict[Any, int] = {}
        self.chunks: list[tuple[list[Any], Any]] = []  # (ids, result) in scroll order

    def submit(self, todo: list[Any]) -> None:
        """One task for the records ``todo`` (waits while ``2 x workers`` tasks are in flight)."""
        while len(self.pending) >= self.limit:
            self._collect()
        i = len(self.chunks)
        ids = [r.id for r in todo]
        if self.conn is not None:
            ref = self.fn.remote(self.nz_ref, self.conn, self.collection, ids, self.using, i, self.hook)
        else:
            G = np.asarray([record_vector(r, self.using) for r in todo], dtype=np.float32)
            ref = self.fn.remote(self.nz_ref, G, point_keys(ids), i, self.hook)
        self.pending[ref] = i
        self.chunks.append((ids, None))

    def _collect(self) -> None:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        for ref in ready:
            i = self.pending.pop(ref)
            try:
                res = self.ray.get(ref)
            except Exception as exc:  # after Ray's retries: stop everything, write nothing
                for other in self.pending:
                    self.ray.cancel(other, force=True)
                self.pending.clear()
                ids = self.chunks[i][0]
                raise unwrap(exc, f"chunk {i} ({len(ids)} points from id {ids[0]!r})") from None
            self.chunks[i] = (self.chunks[i][0], res)
            self.rep.peak_worker_mb = max(self.rep.peak_worker_mb, res[-2])
            self.rep.chunk_seconds.append(res[-1])
            self.bar.update(len(self.chunks[i][0]))

    def finish(self) -> None:
        while self.pending:
            self._collect()


def ray_precompute_logic(core: Any, collection: str, ray: Any, *, workers: int, using: str | None = None,
                         params: Any = None, chunk_size: int = 4096, max_retries: int = 3, force: bool = False,
                         progress: bool = True, index: bool = False, conn: dict[str, Any] | None = None,
                         hook: Callable[[int], None] | None = None) -> Logic:
    """Logic: the Ray precompute (see the module docs); returns a :class:`RayPrecomputeReport`."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    key = core.payload_key
    info = yield from core.info_logic(collection, using)
    using = info.using
    nz = core.normalizer(collection, info, Overrides(params=params))
    fp = nz.fingerprint
    name = None
    if index:  # checked before any task runs, as the local precompute does
        name = yield from check_index_logic(core, collection, info, nz)  # refused before anything is written
    sets = (yield from core.activation_logic(collection, info, nz, refresh=force)) if nz.params.gated else None
    total = (yield Call("count", dict(collection_name=collection, exact=True))).count
    rep = RayPrecomputeReport(fp, workers=workers, fetch="workers" if conn is not None else "driver")
    with tqdm(total=total, desc=f"dbnorm ray stats {collection}", unit="pt", disable=not progress) as bar:
        run = _Runner(ray, nz, workers=workers, max_retries=max_retries, hook=hook, rep=rep, bar=bar, conn=conn,
                      collection=collection, using=using)

        need = bias_field(nz.params, fp)

        def page(recs: list[Any]) -> None:
            todo = select_todo(recs, key, fp, using, collection, force, rep, vectors=conn is None, need=need)
            bar.update(len(recs) - len(todo))
            if todo:
                run.submit(todo)

        yield from scroll_pages(collection, page, page_size=chunk_size, with_payload=[key],
                                with_vectors=False if conn is not None else vector_selector(using))
        run.finish()
    rep.chunks = len(run.chunks)
    # every task succeeded: now, and only now, the statistics are written
    with tqdm(total=sum(len(ids) for ids, _ in run.chunks), desc=f"dbnorm write {collection}", unit="pt",
              disable=not progress) as wbar:
        for ids, res in run.chunks:
            if conn is not None:
                found = res[0]
                rep.without_vector += int((~found).sum())
                ids = [i for i, f in zip(ids, found) if f]
            st = res[-3]
            keys = point_keys(ids)
            for j in range(0, len(ids), WRITE_BATCH):
                sl = np.arange(j, min(j + WRITE_BATCH, len(ids)))
                yield from write_stats_logic(core, collection, nz, ids[j : j + WRITE_BATCH], keys[sl], st.take(sl),
                                             sets, rep)
            wbar.update(len(ids))
    core.stored((collection, info.using, fp))
    after = (yield Call("count", dict(collection_name=collection, exact=True))).count
    rep.added_during_run = max(0, after - total)
    if rep.added_during_run:
        log.warning("%d point(s) were added to %r during the run and have no statistics (queries reaching them are "
                    "reranked on the client); run the precompute again: it computes only them.",
                    rep.added_during_run, collection)
    if name is not None:  # the index vector: written by the driver, as the local precompute writes it
        # the vector's name is added only now: once it exists, mode="auto" searches it, so a run that
        # failed before this point must not leave an empty one behind
        yield from create_logic(collection, info, name, core.names(collection))
        rep.index_name = name
        rep.index_written, rep.index_skipped = yield from write_index_logic(
            core, collection, info, nz, name, page_size=chunk_size, progress=progress)
        yield from names_logic(core, collection)
    rep.seconds = time.perf_counter() - t0
    return rep


def precompute_ray(db: Any, collection: str, *, address: str | None = None, num_workers: int | None = None,
                   chunk_size: int = 4096, max_retries: int = 3, progress: bool = True, using: str | None = None,
                   params: Any = None, force: bool = False, index: bool = False, fetch: str = "auto",
                   _hook: Callable[[int], None] | None = None) -> RayPrecomputeReport:
    """Store every point's statistics in its payload, computed on Ray (docs/scale.md).

    The same statistics (to float32 round-off), record format, payload key and fingerprint
    as ``db.precompute(collection)``, so the wrapper's server path reads them. Resumable:
    points already current are skipped (``force=True`` recomputes them). Nothing is written
    unless every chunk succeeded (a worker that dies is retried ``max_retries`` times); a
    failed run raises :class:`~dbnorm_qdrant.scale.RayRunError` (or the task's own
    :class:`InputError`) with the payload as it was.

    Parameters
    ----------
    db:
        A :class:`~dbnorm_qdrant.qdrant.DBNormClient` (banks and method configured) over local
        mode, Qdrant Edge or a server.
    address:
        A Ray cluster (``ray://head:10001``, ``head:6379``, ``auto``); ``None``: the Ray already
        initialised in this process, else a local one with ``num_workers`` CPUs.
    num_workers:
        Tasks run at once (default: the cluster's CPUs).
    chunk_size:
        Points per task (a worker holds the banks, one chunk and its bank x chunk tiles).
    fetch:
        ``"driver"``: the driver scrolls the vectors (the only choice for local mode and Edge);
        ``"workers"``: each task reads its chunk from the server; ``"auto"``: workers for a
        server, else the driver.
    index:
        Also write the index vector of ``mode="index"`` (by the driver, after the statistics).
    """
    chunk_size = check_int(chunk_size, "chunk_size", hint="it is the number of points per Ray task (e.g. 4096).")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise InputError(f"max_retries must be an integer >= 0 (retries of a task whose worker died), "
                         f"got {max_retries!r}.")
    if fetch not in ("auto", "driver", "workers"):
        raise InputError(f"fetch must be 'auto', 'driver' or 'workers', got {fetch!r}.")
    conn = server_options(db.client) if fetch != "driver" else None
    if fetch == "workers" and conn is None:
        raise InputError("fetch='workers' needs a Qdrant server (a client opened with url=): local mode and Qdrant "
                         "Edge are single-process and only the driver can read them; use fetch='driver'.")
    ray = require_ray()
    with ray_session(address, num_workers) as workers:
        return drive(ray_precompute_logic(db.core, collection, ray, workers=workers, using=using, params=params,
                                          chunk_size=chunk_size, max_retries=max_retries, force=force,
                                          progress=progress, index=index, conn=conn, hook=_hook), db.client)
