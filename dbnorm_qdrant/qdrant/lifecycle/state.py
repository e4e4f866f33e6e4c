"""The lifecycle's state, kept in Qdrant itself (docs/lifecycle.md).

A query log ``NAME`` has one state collection, ``NAME__dbnorm_state`` (the log's
dimension, ``Dot``), beside the log collection ``NAME``. Its points:

========================  ============================================================
id ``0`` (head)           ``{"kind": "head", "schema", "package", "collection", "using",
                          "dim", "distance", "active": version | None, "switched_at"}``
id ``1`` (log counter)    ``{"kind": "log", "seen"}``: queries logged so far (the ring's
                          next slot is ``seen % capacity``)
id ``16 + v`` (manifest)  ``{"kind": "version", "version": v, "status": "building" |
                          "ready" | "retired", "params", "fingerprint", "index_name",
                          "query_bank", "gallery_bank", "tuning", "created", ...}``
id ``v << 32 | ...``      one bank row of version ``v``: ``{"kind": "bank", "version": v,
                          "part": "q" | "g", "row": i, "key": point key}`` (its vector
                          is the row)
========================  ============================================================

The head is the only pointer to the active version, and one point upsert is atomic:
switching versions is writing the head. A version's rows and manifest are written
before the head names it, and removed only after the head names another, so a reader
never meets a half-written active version. Metadata points carry a zero vector.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from qdrant_client import models

from ... import __version__
from ...banks import BankSet
from ...errors import InputError
from .._io import Call, Logic
from ..sources import scroll_pages

__all__ = ["SCHEMA", "state_name", "HEAD", "COUNTER", "manifest_id", "ensure_logic", "read_logic", "write_logic",
           "versions_logic", "write_banks_logic", "read_banks_logic", "delete_version_logic", "check_schema"]

#: layout version of the state points this package writes (a newer one is refused, never rewritten)
SCHEMA = 1
HEAD, COUNTER = 0, 1
_MANIFEST0 = 16
_PART = {"q": 0, "g": 1}


def state_name(log: str) -> str:
    """The state collection of query log ``log``."""
    return f"{log}__dbnorm_state"


def manifest_id(version: int) -> int:
    return _MANIFEST0 + int(version)


def _row_id(version: int, part: str, i: int) -> int:
    return (int(version) << 32) | (_PART[part] << 31) | int(i)


def check_schema(payload: dict[str, Any] | None, where: str) -> None:
    """Refuse state written by a newer package (its layout may mean something else)."""
    if payload is None:
        return
    schema = payload.get("schema", SCHEMA)
    if not isinstance(schema, int) or schema > SCHEMA:
        raise InputError(
            f"{where} was written by a newer dbnorm-qdrant (state schema {schema!r}, this package reads up to "
            f"{SCHEMA}, package {payload.get('package', '?')}); nothing was changed. Upgrade dbnorm-qdrant "
            f"(this is {__version__}), or use another query_log name."
        )


def ensure_logic(name: str, dim: int) -> Logic:
    """Logic: create the state collection (``dim``, Dot) unless it exists; an existing one of
    another dimension is refused (it belongs to a log of another model)."""
    exists = yield Call("collection_exists", dict(collection_name=name))
    if not exists:
        yield Call("create_collection", dict(collection_name=name, vectors_config=models.VectorParams(
            size=int(dim), distance=models.Distance.DOT)))
        return
    desc = yield Call("get_collection", dict(collection_name=name))
    size = getattr(desc.config.params.vectors, "size", None)
    if size != dim:
        raise InputError(f"the state collection {name!r} exists with vectors of size {size}, not {dim}; it belongs "
                         "to another query log. Use another query_log name (nothing was changed).")


def read_logic(name: str, ids: list[int]) -> Logic:
    """Logic: ``{id: payload}`` of the state points ``ids`` that exist (``{}`` without a state collection)."""
    exists = yield Call("collection_exists", dict(collection_name=name))
    if not exists:
        return {}
    recs = yield Call("retrieve", dict(collection_name=name, ids=ids, with_payload=True, with_vectors=False))
    return {int(r.id): dict(r.payload or {}) for r in recs}


def write_logic(name: str, dim: int, points: dict[int, dict[str, Any]]) -> Logic:
    """Logic: upsert metadata points (``{id: payload}``) in one call (atomic per point)."""
    zero = [0.0] * int(dim)
    pts = [models.PointStruct(id=i, vector=zero, payload={"schema": SCHEMA, "package": __version__, **p})
           for i, p in points.items()]
    yield Call("upsert", dict(collection_name=name, points=pts, wait=True))


def versions_logic(name: str) -> Logic:
    """Logic: every version manifest, ``{version: payload}``."""
    out: dict[int, dict[str, Any]] = {}

    def page(recs: list[Any]) -> None:
        for r in recs:
            p = dict(r.payload or {})
            check_schema(p, f"version manifest {r.id} of {name!r}")
            out[int(p["version"])] = p

    flt = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value="version"))])
    yield from scroll_pages(name, page, page_size=256, scroll_filter=flt, with_payload=True)
    return out


def write_banks_logic(name: str, version: int, banks: BankSet, page: int = 512) -> Logic:
    """Logic: the rows of ``banks`` as points of version ``version`` (query bank, gallery bank
    with its keys)."""
    parts = [("q", banks.query_bank, banks.query_bank_keys)]
    if banks.gallery_bank is not None:
        parts.append(("g", banks.gallery_bank, banks.gallery_bank_keys))
    for part, X, keys in parts:
        for i0 in range(0, len(X), page):
            pts = [models.PointStruct(
                id=_row_id(version, part, i), vector=np.asarray(X[i], dtype=np.float32).tolist(),
                payload={"kind": "bank", "version": int(version), "part": part, "row": i,
                         "key": -1 if keys is None else int(keys[i])})
                for i in range(i0, min(i0 + page, len(X)))]
            yield Call("upsert", dict(collection_name=name, points=pts, wait=True))


def _version_filter(version: int, kind: str = "bank") -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value=kind)),
                               models.FieldCondition(key="version", match=models.MatchValue(value=int(version)))])


def read_banks_logic(name: str, version: int, manifest: dict[str, Any]) -> Logic:
    """Logic: the :class:`BankSet` of version ``version``, checked against its manifest's sizes."""
    rows: dict[str, list[tuple[int, Any, int]]] = {"q": [], "g": []}

    def page(recs: list[Any]) -> None:
        for r in recs:
            p = r.payload
            rows[p["part"]].append((int(p["row"]), r.vector, int(p["key"])))

    yield from scroll_pages(name, page, page_size=1024, scroll_filter=_version_filter(version), with_payload=True,
                            with_vectors=True)
    want = {"q": int(manifest.get("query_bank", 0)), "g": int(manifest.get("gallery_bank", 0))}
    got = {k: len(v) for k, v in rows.items()}
    if got != want:
        raise InputError(f"version {version} in {name!r} is incomplete ({got} bank rows, its manifest says {want}); "
                         "run rebuild() to write a new version.")
    arrays = {}
    for part, rs in rows.items():
        rs.sort(key=lambda t: t[0])
        arrays[part] = (np.asarray([t[1] for t in rs], dtype=np.float32), np.asarray([t[2] for t in rs], dtype=np.int64))
    qb, qk = arrays["q"]
    gb, gk = arrays["g"] if rows["g"] else (None, None)
    return BankSet(qb, gb, None if gk is None or (gk < 0).all() else gk, None if (qk < 0).all() else qk)


def delete_version_logic(name: str, version: int) -> Logic:
    """Logic: delete the bank rows of ``version`` (its manifest stays, marked by the caller)."""
    yield Call("delete", dict(collection_name=name, points_selector=models.FilterSelector(
        filter=_version_filter(version)), wait=True))


def now() -> float:
    """Wall-clock seconds (state timestamps)."""
    return time.time()
