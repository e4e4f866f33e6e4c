"""What a wrapper built with ``query_log=`` keeps: one :class:`Lifecycle` per logged
collection, and the background writer of :class:`~..client.DBNormClient`.

:class:`Lifecycles` maps collections to their logs (a name binds to the first collection
queried; a mapping names several), offers each served query's vectors to the right log,
and says when a batch is ready. :class:`Worker` is the sync wrapper's background thread:
it writes ready batches (and, every second, whatever is buffered) and runs the
``rebuild_every`` policy. A failing write is logged, never raised into a query.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ...errors import InputError
from .._io import Logic, drive
from .log import QueryLog, query_vectors
from .manager import Lifecycle

if TYPE_CHECKING:
    from ..config import Settings
    from ..core import Core
    from ..planning import Spec

__all__ = ["Lifecycles", "Worker", "flush_all_logic"]

logger = logging.getLogger(__name__)


class Lifecycles:
    """The logged collections of one wrapper (see the module docs)."""

    def __init__(self, settings: Settings, core: Core) -> None:
        self.settings = settings
        self.core = core
        log = settings.query_log
        self._bound: str | None = None  # the collection a single log name serves
        self._names: dict[str, str] = dict(log) if isinstance(log, dict) or hasattr(log, "items") else {}
        self._single = log if isinstance(log, str) else None
        self.by_collection: dict[str, Lifecycle] = {}
        self._lock = threading.Lock()
        for coll in self._names:
            self.get(coll)  # checks the options now, not at the first query
        if self._single is not None:
            self._new_log(self._single)  # the same check for a single name (bound at the first query)

    def _new_log(self, name: str) -> QueryLog:
        s = self.settings
        return QueryLog(name, capacity=s.log_capacity, sample_rate=s.log_sample_rate, policy=s.log_policy)

    def __bool__(self) -> bool:
        return self._single is not None or bool(self._names)

    def get(self, collection: str) -> Lifecycle | None:
        """The lifecycle of ``collection`` (created on first use; ``None``: not logged)."""
        lc = self.by_collection.get(collection)
        if lc is not None:
            return lc
        user = self.core.collections.get(collection)
        if user is not None and not user.enabled:  # the user said: do not normalise it (nor log it)
            return None
        with self._lock:
            lc = self.by_collection.get(collection)
            if lc is not None:  # created by a concurrent first query
                return lc
            name = self._names.get(collection)
            if name is None and self._single is not None:
                if self._bound is not None and self._bound != collection:
                    raise InputError(
                        f"query_log={self._single!r} already logs collection {self._bound!r}; one log serves one "
                        f"collection. Pass query_log={{{self._bound!r}: {self._single!r}, {collection!r}: "
                        f"'{collection}_log'}} to log both."
                    )
                self._bound, name = collection, self._single
            if name is None:
                return None
            if name == collection or name in self._names:
                raise InputError(f"query_log {name!r} is the name of a collection this wrapper serves; a log must be "
                                 "a collection of its own: pick another name.")
            s = self.settings
            log = self._new_log(name)
            lc = Lifecycle(collection, log, min_log=s.min_log, rebuild_every=s.rebuild_every,
                           given=self.core.bank_dim(collection) is not None)
            self.by_collection[collection] = lc
            return lc

    def offer(self, lc: Lifecycle, specs: Iterable[Spec]) -> bool:
        """Buffer the dense query vectors of ``specs`` (on the logged vector); True when a batch is ready."""
        info = lc.info
        if info is None:
            return False
        vecs = []
        for s in specs:
            if s.using in (None, "", info.using):
                vecs += query_vectors(s.query, s.prefetch, info.size, info.using)
        return lc.log.offer(vecs) if vecs else False

    def all(self) -> list[Lifecycle]:
        return list(self.by_collection.values())


def flush_all_logic(lifecycles: Lifecycles, raise_errors: bool) -> Logic:
    """Logic: write the buffered vectors of every log of a wrapper; returns how many. With
    ``raise_errors=False`` (background writes) a failed write is logged, never raised."""
    n = 0
    for lc in lifecycles.all():
        try:
            n += yield from lc.log.flush_logic()
        except Exception as exc:  # noqa: BLE001 (a log write must never fail a query)
            if raise_errors:
                raise
            logger.warning("query log %r: a write failed (%s: %s); those queries are not logged",
                           lc.log.name, type(exc).__name__, exc)
    return n


class Worker(threading.Thread):
    """The sync wrapper's background writer (a daemon thread, started with the first log)."""

    def __init__(self, lifecycles: Lifecycles, client: Any, rebuild: Callable[[str], Any],
                 interval_s: float = 1.0) -> None:
        super().__init__(name="dbnorm-query-log", daemon=True)
        self.lifecycles, self.client, self.rebuild = lifecycles, client, rebuild
        self.interval_s = interval_s
        self.wake = threading.Event()
        self.stopping = False
        self.io = threading.Lock()  # one flush at a time (the worker's or an explicit flush())

    def flush(self, raise_errors: bool = True) -> int:
        """Write every buffered query vector now; returns how many."""
        with self.io:
            return drive(flush_all_logic(self.lifecycles, raise_errors), self.client)

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait(self.interval_s)
            self.wake.clear()
            self.flush(raise_errors=False)
            for lc in self.lifecycles.all():
                if not self.stopping and lc.due():
                    try:
                        self.rebuild(lc.collection)
                    except InputError as exc:
                        logger.info("background rebuild of %r skipped: %s", lc.collection, exc)
                    except Exception:  # noqa: BLE001 (the old version keeps serving)
                        logger.exception("background rebuild of %r failed; the active version keeps serving",
                                         lc.collection)
                    finally:  # the next attempt waits for another rebuild_every, not the next second
                        lc.logged_at_build = int(lc.log.seen or 0)
                        lc.started = time.time()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=30)
