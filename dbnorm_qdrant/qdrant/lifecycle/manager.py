"""One logged collection's lifecycle: which banks serve it now, and when that changes.

A :class:`Lifecycle` is what a wrapper built with ``query_log=`` keeps per collection.
Before a query it makes sure the collection is served by the right banks
(:meth:`Lifecycle.prepare_logic`), reading the state collection (:mod:`.state`) at most
every :attr:`Lifecycle.check_s` seconds:

* the **active version** named by the state's head (written by a rebuild, here or in
  another process): its banks and parameters, read from the state collection once;
* else the banks given to the wrapper (``banks=`` / ``normalizer=``), a warm start;
* else the **cold start**: CSLS (k = 10) with a sample of the collection's own items as
  pseudo-queries, each item left out of its own neighbourhood (docs/lifecycle.md has
  the measurements); a collection with fewer than 11 points passes through.

The banks are handed to :class:`~..core.Core` as the collection's configuration; a
switch replaces them at once, and the statistics cache is keyed by the normaliser's
fingerprint, so no query mixes versions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Sequence

from ...banks import BankSet
from ...core.params import Params, as_params
from ...errors import InputError
from .._io import Call, Logic
from ..config import VectorInfo, vector_info
from ..sources import sample_gallery_bank
from . import state
from .log import QueryLog

if TYPE_CHECKING:
    from ..core import Core

__all__ = ["Lifecycle", "LifecycleStatus", "COLD_SAMPLE", "COLD_K"]

logger = logging.getLogger(__name__)

#: the most items sampled as the cold start's pseudo-queries
COLD_SAMPLE = 10_000
#: CSLS's neighbourhood size in the cold start
COLD_K = 10


@dataclass
class LifecycleStatus:
    """What :meth:`DBNormClient.status` reports for one logged collection."""

    collection: str
    query_log: str
    serving: str
    active_version: int | None = None
    params: dict[str, Any] | None = None
    query_bank: int = 0
    gallery_bank: int = 0
    built_at: float | None = None
    age_s: float | None = None
    log_size: int = 0
    logged: int = 0
    pending: int = 0
    tuning: dict[str, Any] = field(default_factory=dict)
    index_name: str | None = None
    versions: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Lifecycle:
    """The lifecycle of one collection logged to ``log`` (see the module docs)."""

    #: seconds between two reads of the state's head (another process may have switched)
    check_s: float = 5.0

    def __init__(self, collection: str, log: QueryLog, *, min_log: int = 200,
                 rebuild_every: int | timedelta | None = None, given: bool = False) -> None:
        self.collection = collection
        self.log = log
        self.min_log = min_log
        self.rebuild_every = rebuild_every
        self.started = time.time()
        self.given = given  # the wrapper was given banks for this collection (warm start)
        self.serving: str | None = None  # "version", "given", "cold", "pass-through"
        self.version: int | None = None
        self.manifest: dict[str, Any] | None = None
        self.banks: BankSet | None = None
        self.params: Params | None = None
        self.info: VectorInfo | None = None
        self.checked_at = 0.0
        self.cold_count = 0
        self.logged_at_build = 0

    @property
    def state_name(self) -> str:
        return state.state_name(self.log.name)

    # --------------------------------------------------------------- serving
    def prepare_logic(self, core: Core, force: bool = False, usings: Sequence[str | None] = ()) -> Logic:
        """Logic: make ``core`` serve the collection with the banks it should have now.

        ``usings``: the vectors a request's queries name. The log serves one vector: the active
        version's, else the one the first query named; a reranked query on another is refused."""
        self.check_using(core, usings)
        if not force and self.serving is not None and time.monotonic() - self.checked_at < self.check_s:
            return
        heads = yield from state.read_logic(self.state_name, [state.HEAD])
        head = heads.get(state.HEAD)
        state.check_schema(head, f"the state of query log {self.log.name!r}")  # before its "using" is read
        bound = self.info.using if self.info else (head or {}).get("using") or next((u for u in usings if u), None)
        info = yield from self.info_logic(core, bound)
        self.check_head(head, info)
        self.check_using(core, usings)
        active = None if head is None else head.get("active")
        if active is not None:
            if self.version is None or int(active) > self.version:  # never back to an older version
                yield from self._load_version_logic(core, int(active))
        elif self.given:
            if self.serving != "given":  # what status and export_banks report: the wrapper's banks
                nz = core.normalizer(self.collection, info)
                self.banks = BankSet(nz.query_bank, nz.gallery_bank, nz.gallery_bank_keys, nz.query_bank_keys)
                self.params = nz.params
            self.serving = "given"
        elif self.serving not in ("cold", "pass-through") or (yield from self._cold_stale_logic()):
            yield from self._cold_logic(core)
        self.checked_at = time.monotonic()

    def bind_logic(self, core: Core, usings: Sequence[str | None]) -> Logic:
        """Logic: :meth:`prepare_logic` for a query that is not reranked (so that it is logged); one
        the lifecycle cannot serve (e.g. on another vector) still runs, unlogged."""
        if self.log.sample_rate == 0.0:  # nothing to log (e.g. an evaluation wrapper's plain baseline)
            return
        try:
            yield from self.prepare_logic(core, usings=usings)
        except InputError as exc:
            logger.info("query log %r: a query not reranked is not logged (%s)", self.log.name, exc)

    def check_using(self, core: Core, usings: Sequence[str | None]) -> None:
        """Refuse a query on another dense vector than the logged one (its banks belong to that
        one); a sparse query runs as it is."""
        for u in usings:
            if u and self.info is not None and u != self.info.using and u in core.names(self.collection):
                raise InputError(
                    f"query log {self.log.name!r} serves vector {self.info.using!r} of collection "
                    f"{self.collection!r}; a query on {u!r} would be normalised with that vector's banks. Query "
                    f"{self.info.using!r}, pass rerank=False, or use another wrapper (its own query_log) for {u!r}."
                )

    def info_logic(self, core: Core, using: str | None = None) -> Logic:
        """Logic: the logged vector's :class:`VectorInfo` (``using`` until one is bound), read afresh
        (the collection may have been recreated: then its cached statistics are dropped); the log
        takes its size and distance."""
        desc = yield from core.describe_logic(self.collection)
        info = vector_info(desc, self.collection, self.info.using if self.info else using)
        if self.info is not None and info != self.info:
            logger.warning("collection %r changed under its query log (%s -> %s): cached statistics dropped",
                           self.collection, self.info, info)
            core.forget(self.collection)
        self.info = info
        self.log.dim, self.log.distance = info.size, info.distance
        return info

    def changed_logic(self, core: Core) -> Logic:
        """Logic: read the state's head and the collection's vector names afresh; True when the
        active version or the names changed (a query that just failed is worth one more try)."""
        before = self.version, dict(core.names(self.collection))
        yield from self.prepare_logic(core, force=True)
        return (self.version, core.names(self.collection)) != before

    def check_head(self, head: dict[str, Any] | None, info: VectorInfo) -> None:
        """Refuse a head of a newer package, of another collection, or of vectors the
        collection no longer has (emptied and recreated with another model)."""
        if head is None:
            return
        state.check_schema(head, f"the state of query log {self.log.name!r}")
        if head.get("collection") not in (None, self.collection):
            raise InputError(
                f"query log {self.log.name!r} serves collection {head['collection']!r}, not {self.collection!r}; "
                f"pass query_log={{{self.collection!r}: 'another_name', ...}} to log this collection separately."
            )
        if head.get("using") not in (None, info.using):
            raise InputError(
                f"query log {self.log.name!r} holds banks of vector {head['using']!r} of collection "
                f"{self.collection!r}, not of {info.using!r}; query {head['using']!r}, or use another query_log "
                "name for this vector."
            )
        if head.get("dim") not in (None, info.size) or head.get("distance") not in (None, info.distance):
            raise InputError(
                f"collection {self.collection!r} now has {info.size}-dimensional {info.distance} vectors, but the "
                f"active banks of query log {self.log.name!r} were built for {head.get('dim')}-dimensional "
                f"{head.get('distance')} ones (the collection was recreated with another model?); nothing was "
                "served. Use a new query_log name for the new model (the old log and state are left as they are)."
            )

    def _load_version_logic(self, core: Core, version: int) -> Logic:
        got = yield from state.read_logic(self.state_name, [state.manifest_id(version)])
        manifest = got.get(state.manifest_id(version))
        state.check_schema(manifest, f"version {version} of query log {self.log.name!r}")
        if manifest is not None and manifest.get("status") == "retired":  # switched again under this read
            heads = yield from state.read_logic(self.state_name, [state.HEAD])
            newer = (heads.get(state.HEAD) or {}).get("active")
            if newer is not None and int(newer) > version:
                return (yield from self._load_version_logic(core, int(newer)))
        if manifest is None or manifest.get("status") != "ready":
            raise InputError(f"the state of query log {self.log.name!r} names version {version} as active, but its "
                             "manifest is missing or not ready; run rebuild() to write a new version.")
        state.check_schema(manifest, f"version {version} of query log {self.log.name!r}")
        banks = yield from state.read_banks_logic(self.state_name, version, manifest)
        self.apply(core, version, manifest, banks, as_params(manifest["params"]))

    def apply(self, core: Core, version: int | None, manifest: dict[str, Any] | None, banks: BankSet | None,
              params: Params | None) -> None:
        """Serve the collection with ``banks`` / ``params`` (``None``: pass through) from now on."""
        if banks is None or params is None or params.method == "none":
            core.configure(self.collection, enabled=False, banks=None, params=None, normalizer=None)
            self.serving = "pass-through" if version is None else "version"
        else:
            core.configure(self.collection, enabled=True, banks=banks, params=params, normalizer=None)
            self.serving = "version" if version is not None else "cold"
        self.version, self.manifest, self.banks, self.params = version, manifest, banks, params
        if manifest is not None:
            self.logged_at_build = int(manifest.get("log_seen", 0))
        logger.info("collection %r now served by %s", self.collection, self.describe())

    def _cold_logic(self, core: Core) -> Logic:
        """Logic: the cold start's banks (or pass-through for a collection too small for CSLS)."""
        count = (yield Call("count", dict(collection_name=self.collection, exact=True))).count
        if count <= COLD_K:
            self.apply(core, None, None, None, None)
            self.cold_count = count
            return
        X, keys = yield from sample_gallery_bank(self.collection, min(count, COLD_SAMPLE), using=self.info.using)
        self.cold_count = count
        self.apply(core, None, None, BankSet(X, query_bank_keys=keys), Params(method="csls", k=COLD_K))

    def _cold_stale_logic(self) -> Logic:
        """Logic: whether the cold sample should be drawn again (the collection grew past the
        sample, or doubled, or shrank below it)."""
        count = (yield Call("count", dict(collection_name=self.collection, exact=True))).count
        small = min(count, COLD_SAMPLE) != min(self.cold_count, COLD_SAMPLE)
        return count != self.cold_count and (small or count > 2 * self.cold_count)

    def describe(self) -> str:
        """What serves the collection, in words."""
        if self.serving == "version":
            p = self.params.method if self.params else "none"
            return f"version {self.version} ({p})"
        if self.serving == "cold":
            return f"the cold start (csls over {len(self.banks.query_bank)} of the collection's items)"
        if self.serving == "given":
            return "the banks given to the wrapper"
        return "plain Qdrant (pass-through)"

    def due(self) -> bool:
        """Whether ``rebuild_every`` (queries logged, or time with new queries logged) has passed
        since the active version was built (or since this process started, before any)."""
        every, seen = self.rebuild_every, self.log.seen
        if every is None or seen is None:
            return False
        if isinstance(every, timedelta):
            since = (self.manifest or {}).get("created", self.started)
            return time.time() - since >= every.total_seconds() and seen > self.logged_at_build
        return seen - self.logged_at_build >= every

    # ---------------------------------------------------------------- status
    def status_logic(self, core: Core) -> Logic:
        """Logic: the :class:`LifecycleStatus` (reads the state and the log's size)."""
        yield from self.prepare_logic(core, force=True)
        exists = yield Call("collection_exists", dict(collection_name=self.log.name))
        size = (yield Call("count", dict(collection_name=self.log.name, exact=True))).count if exists else 0
        got = yield from state.read_logic(self.state_name, [state.COUNTER])
        logged = int(got.get(state.COUNTER, {}).get("seen", 0))
        versions = {}
        if (yield Call("collection_exists", dict(collection_name=self.state_name))):
            versions = yield from state.versions_logic(self.state_name)
        m = self.manifest or {}
        st = LifecycleStatus(
            collection=self.collection, query_log=self.log.name, serving=self.describe(), active_version=self.version,
            params=None if self.params is None else self.params.to_dict(),
            query_bank=0 if self.banks is None else len(self.banks.query_bank),
            gallery_bank=0 if self.banks is None or self.banks.gallery_bank is None else len(self.banks.gallery_bank),
            built_at=m.get("created"), age_s=None if "created" not in m else max(0.0, state.now() - m["created"]),
            log_size=size, logged=logged, pending=self.log.pending, tuning=dict(m.get("tuning") or {}),
            index_name=m.get("index_name"), versions={v: p.get("status", "?") for v, p in sorted(versions.items())},
        )
        return st
