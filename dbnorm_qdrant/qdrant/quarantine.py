"""The wrappers' side of the quarantine (docs/audit.md): whether a collection has points an
audit quarantined, and the filter that leaves them out of the requests the wrappers serve."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from qdrant_client import models

from ._io import Call, Logic
from .planning import Spec

__all__ = ["MARK_FIELDS", "QUARANTINE_MODES", "Quarantine", "kept", "marked_logic", "ours"]

#: what the wrappers do with quarantined points
QUARANTINE_MODES = ("exclude", "ignore")
#: the fields of the reserved payload key that are the audit's mark, not statistics
MARK_FIELDS = ("quarantined", "audit")


def ours(value: Any) -> bool:
    """Whether a value found under the reserved payload key is the layer's own: statistics
    (they carry ``fp``) or an audit's quarantine mark."""
    return isinstance(value, dict) and ("fp" in value or "quarantined" in value)


def marked_logic(key: str, collection: str, ids: Any) -> Logic:
    """Logic: which of the points ``ids`` are quarantined (a set of the ids as Qdrant returns them)."""
    ids = list(ids)
    if not ids:
        return set()
    got = yield Call("retrieve", dict(collection_name=collection, ids=ids, with_payload=[key], with_vectors=False))
    return {r.id for r in got if isinstance((r.payload or {}).get(key), dict) and r.payload[key].get("quarantined")}


def kept(value: Any) -> dict[str, Any]:
    """The quarantine mark inside a reserved-key value, which a statistics write carries over."""
    return {f: value[f] for f in MARK_FIELDS if f in value} if isinstance(value, dict) else {}


class Quarantine:
    """Which collections have quarantined points, and the filter that leaves them out.

    ``mode="exclude"`` adds ``must: is_empty({key}.quarantined)`` to every served
    request (and its prefetches) of a collection known to have quarantined points; a
    collection is re-checked every ``check_s`` seconds (one ``scroll`` of limit 1, by one
    thread while the others go on with what is known), so a quarantine set by another process
    (the CLI) is honoured within that time. Without a payload index on the mark (the audit
    creates one where the engine has them) that scroll is a scan of the payloads.
    """

    #: seconds between two checks of a collection for quarantined points (class attribute; tests set 0)
    check_s: float = 30.0

    def __init__(self, key: str, mode: str = "exclude") -> None:  # mode checked by Settings
        self.key, self.mode = key, mode
        self._known: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def field(key: str) -> models.IsEmptyCondition:
        """The condition "not quarantined": ``{key}.quarantined`` absent (an ``IsEmpty``, which every
        engine evaluates alike; a match on a bool value is not converted by Qdrant Edge 0.9)."""
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=f"{key}.quarantined"))

    @classmethod
    def marked(cls, key: str) -> models.Filter:
        """The filter of quarantined points."""
        return models.Filter(must_not=[cls.field(key)])

    def learned(self, collection: str, has: bool) -> None:
        with self._lock:
            self._known[collection] = (has, time.monotonic())

    def forget(self, collection: str) -> None:
        with self._lock:
            self._known.pop(collection, None)

    def known(self, collection: str) -> bool | None:
        """Whether ``collection`` has quarantined points to leave out, as known now without a
        check (``False`` too with ``mode="ignore"``); ``None`` when :meth:`guard_logic` would check."""
        if self.mode != "exclude":
            return False
        known = self._known.get(collection)
        if known is None or time.monotonic() - known[1] >= self.check_s:
            return None
        return known[0]

    def guard_logic(self, collection: str, specs: list[Spec]) -> Logic:
        """Logic: ``specs`` with quarantined points filtered out (unchanged when there are none)."""
        if self.mode != "exclude":
            return specs
        with self._lock:
            known = self._known.get(collection)
            check = known is None or time.monotonic() - known[1] >= self.check_s
            if check and known is not None:  # one thread re-checks; the others go on with what is known
                self._known[collection] = (known[0], time.monotonic())
        if check:
            if not (yield Call("collection_exists", dict(collection_name=collection))):
                return specs  # the query itself says so, in its own words
            recs, _ = yield Call("scroll", dict(collection_name=collection, scroll_filter=self.marked(self.key),
                                                limit=1, with_payload=False, with_vectors=False))
            self.learned(collection, bool(recs))
            known = (bool(recs), 0.0)
        if not known[0]:
            return specs
        cond = self.field(self.key)
        return [dataclasses.replace(s, filter=_without(s.filter, cond), prefetch=_prefetch(s.prefetch, cond))
                for s in specs]


def _without(flt: Any, cond: models.IsEmptyCondition) -> models.Filter:
    """``flt`` AND ``cond`` (not quarantined; the user's filter kept as it is, nested)."""
    if flt is None:
        return models.Filter(must=[cond])
    return models.Filter(must=[flt, cond])


def _prefetch(pf: Any, cond: models.IsEmptyCondition) -> Any:
    """Every prefetch (recursively) with ``cond`` excluded too."""
    if pf is None:
        return None
    if isinstance(pf, list):
        return [_prefetch(p, cond) for p in pf]
    if isinstance(pf, dict):
        pf = models.Prefetch.model_validate(pf)
    return pf.model_copy(update=dict(filter=_without(pf.filter, cond), prefetch=_prefetch(pf.prefetch, cond)))
