"""Rebuild: new banks from the query log, tuned, written as a new version, then switched to.

:func:`rebuild_logic` takes the query bank from the log and the gallery bank from a
seeded sample of the collection, tunes the method and parameters without labels on a
held-out part of both (:func:`~dbnorm_qdrant.core.tuning.tune`, k-skewness; the test
queries of a benchmark are never in the log), and hands the result to
:func:`publish_logic`, which is also what :meth:`DBNormClient.import_banks` runs:

1. a manifest ``building`` for version ``v`` and the banks' rows (state collection);
2. the statistics in the payload (the reserved key, tagged with the new fingerprint)
   and, where the method has one, the index vector ``_dbnorm_<fingerprint>``;
3. the manifest ``ready``; then **the switch**: one upsert of the state's head;
4. only then the old versions' rows are deleted and their index vectors dropped.

Until step 3 the old version stays active: a rebuild that fails or is killed leaves it
serving, and nothing of the new version is reachable (the payload records carry the new
fingerprint, which the old version's queries never accept; they compute those points'
statistics from the vectors instead). The next rebuild removes what the failed one left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from os import PathLike

from ...banks import BankSet, load_banks, save_banks
from ...core.index import index_form
from ...core.params import Params, as_params
from ...core.tuning import tune
from ...errors import InputError
from ...core.centering import unit_rows
from .._io import Call, Logic
from ..config import Settings
from ..core import Core
from ..index_store import check_index_logic, drop_index_logic, names_logic
from ..sources import query_bank_from_collection, sample_gallery_bank
from ..store import PrecomputeReport, precompute_logic
from . import state
from .manager import Lifecycle

__all__ = ["RebuildReport", "rebuild_logic", "publish_logic", "export_logic", "import_logic", "REBUILD_METHODS", "GALLERY_SAMPLE"]

logger = logging.getLogger(__name__)

#: the methods a rebuild tunes over (with and without centering): the query-bank softmax
#: methods the log is for; docs/lifecycle.md has the measurements behind the choice
REBUILD_METHODS: tuple[str, ...] = ("is", "dualis")
#: the most points sampled from the collection as the gallery bank
GALLERY_SAMPLE = 10_000


@dataclass
class RebuildReport:
    """What a rebuild (or an import) did."""

    collection: str
    version: int
    previous: int | None
    params: dict[str, Any]
    fingerprint: str | None
    query_bank: int
    gallery_bank: int
    tuning: dict[str, Any] = field(default_factory=dict)
    index_name: str | None = None
    precompute: PrecomputeReport | None = None
    removed: list[int] = field(default_factory=list)
    seconds: float = 0.0


def rebuild_logic(core: Core, lc: Lifecycle, *, methods: Sequence[str] = REBUILD_METHODS,
                  gallery_sample: int = GALLERY_SAMPLE, seed: int = 0, progress: bool = True) -> Logic:
    """Logic: rebuild the banks of ``lc``'s collection from its log (see the module docs)."""
    t0 = time.perf_counter()
    yield from lc.prepare_logic(core, force=True)
    info = lc.info
    exists = yield Call("collection_exists", dict(collection_name=lc.log.name))
    n_log = (yield Call("count", dict(collection_name=lc.log.name, exact=True))).count if exists else 0
    if n_log < lc.min_log:
        raise InputError(
            f"query log {lc.log.name!r} holds {n_log} queries; a rebuild needs at least min_log={lc.min_log}. "
            f"Nothing was changed: {lc.collection!r} stays served by {lc.describe()}. Rebuild after more traffic "
            "(or lower min_log=)."
        )
    count = (yield Call("count", dict(collection_name=lc.collection, exact=True))).count
    if count < 2:
        raise InputError(f"collection {lc.collection!r} holds {count} point(s): a rebuild needs a gallery sample; "
                         f"nothing was changed ({lc.describe()} keeps serving).")
    Q = yield from query_bank_from_collection(lc.log.name)
    G, keys = yield from sample_gallery_bank(lc.collection, min(gallery_sample, count), seed=seed, using=info.using)
    if info.distance == "Euclid":  # tuning assumes dot/cosine similarities (docs/lifecycle.md)
        params = Params(method="is", beta_q=1.0)
        tuning = {"objective": "none", "reason": "Euclid collection: is with beta_q=1 (tuning needs dot/cosine)"}
    else:
        unit = info.distance == "Cosine"
        res = tune(unit_rows(Q) if unit else Q, unit_rows(G) if unit else G, paired=False, methods=methods,
                   seed=seed, backend=core.backend)
        params = res.params
        tuning = {"objective": res.objective, "raw_value": res.raw_value, "value": res.value, "reason": res.reason,
                  "n_validation": res.n_validation, "logged": n_log}
    logger.info("rebuild of %r: %s", lc.collection, tuning["reason"])
    banks = BankSet(Q, G if params.method != "none" else None, keys if params.method != "none" else None)
    rep = yield from publish_logic(core, lc, banks, params, tuning=tuning, progress=progress)
    rep.seconds = time.perf_counter() - t0
    return rep


def publish_logic(core: Core, lc: Lifecycle, banks: BankSet, params: Params, *, tuning: dict[str, Any],
                  progress: bool = True) -> Logic:
    """Logic: write ``banks`` / ``params`` as a new version and switch to it (steps 1-4 of the
    module docs); returns a :class:`RebuildReport`."""
    info = lc.info
    sname = lc.state_name
    yield from state.ensure_logic(sname, info.size)
    heads = yield from state.read_logic(sname, [state.HEAD])
    lc.check_head(heads.get(state.HEAD), info)
    previous = (heads.get(state.HEAD) or {}).get("active")
    versions = yield from state.versions_logic(sname)
    v = max(versions, default=0) + 1
    counter = (yield from state.read_logic(sname, [state.COUNTER])).get(state.COUNTER) or {}
    logged = int(counter.get("seen", lc.log.seen or 0))
    live = params.method != "none"
    fp = name = None
    if live:  # the new version is prepared on its own Core; the live one is untouched until the switch
        tmp = Core(Settings(banks=banks, params=params, payload_key=core.payload_key, backend=core.backend,
                            cache_size=0))
        nz = tmp.normalizer(lc.collection, info)
        fp = nz.fingerprint
        try:  # checked before anything is written (a zero vector under Cosine has no index row)
            index_form(params, info.distance)
            name = yield from check_index_logic(tmp, lc.collection, info, nz)
        except InputError as exc:  # centering, Euclid, a zero vector: no index vector, the statistics serve
            logger.info("version %d of %r gets no index vector: %s", v, lc.collection, exc)
            name = None
    manifest = {
        "kind": "version", "version": v, "status": "building", "params": params.to_dict(), "fingerprint": fp,
        "index_name": name, "query_bank": len(banks.query_bank),
        "gallery_bank": 0 if banks.gallery_bank is None else len(banks.gallery_bank), "tuning": tuning,
        "created": state.now(), "log_seen": logged,
        "collection": lc.collection,
    }
    yield from state.write_logic(sname, info.size, {state.manifest_id(v): manifest})
    yield from state.write_banks_logic(sname, v, banks)
    pre = None
    if live:
        pre = yield from precompute_logic(tmp, lc.collection, using=info.using, progress=progress,
                                          index=name is not None)
    manifest["status"] = "ready"
    yield from state.write_logic(sname, info.size, {state.manifest_id(v): manifest})
    head = {"kind": "head", "collection": lc.collection, "using": info.using, "dim": info.size,
            "distance": info.distance, "active": v, "switched_at": state.now()}
    yield from state.write_logic(sname, info.size, {state.HEAD: head})  # the switch
    lc.apply(core, v, manifest, banks, params)
    yield from names_logic(core, lc.collection)  # the live core sees the new index vector
    if live and pre is not None:
        core.stored((lc.collection, info.using, fp))
    removed = yield from _retire_logic(core, lc, versions, keep=name)
    return RebuildReport(lc.collection, v, previous, params.to_dict(), fp, manifest["query_bank"],
                         manifest["gallery_bank"], tuning, name, pre, removed)


def _retire_logic(core: Core, lc: Lifecycle, versions: dict[int, dict[str, Any]], keep: str | None) -> Logic:
    """Logic: delete the rows and index vectors of every version but the active one (ready,
    building or failed alike); their manifests stay, marked ``retired`` (the history)."""
    removed = []
    for ver, m in sorted(versions.items()):
        if m.get("status") == "retired":
            continue
        yield from state.delete_version_logic(lc.state_name, ver)
        old = m.get("index_name")
        if old and old != keep:
            yield from drop_index_logic(core, lc.collection, old)
        m["status"] = "retired"
        yield from state.write_logic(lc.state_name, lc.info.size, {state.manifest_id(ver): m})
        removed.append(ver)
    return removed


def export_logic(core: Core, lc: Lifecycle, path: str | PathLike[str]) -> Logic:
    """Logic: write the banks and parameters serving ``lc``'s collection to a bank file
    (:func:`~dbnorm_qdrant.banks.save_banks`, with the version and its tuning as metadata)."""
    yield from lc.prepare_logic(core, force=True)
    if lc.banks is None or lc.params is None:
        raise InputError(f"collection {lc.collection!r} is served by {lc.describe()}: there are no banks to export "
                         "yet; run rebuild() first.")
    meta = {"collection": lc.collection, "query_log": lc.log.name, "version": lc.version, "serving": lc.serving,
            "tuning": (lc.manifest or {}).get("tuning", {})}
    return save_banks(path, lc.banks, params=lc.params, meta=meta)


def import_logic(core: Core, lc: Lifecycle, path: str | PathLike[str], params: Any = None,
                 progress: bool = True) -> Logic:
    """Logic: publish the banks of a bank file as a new version (:func:`publish_logic`) with
    the file's parameters, or ``params``."""
    banks, stored, meta = load_banks(path)
    p = params if params is not None else stored
    if p is None:
        raise InputError(f"bank file {path} holds no parameters; pass params= (e.g. {{'method': 'dualis'}}).")
    yield from lc.prepare_logic(core, force=True)
    if banks.dim != lc.info.size:
        raise InputError(f"bank file {path} holds {banks.dim}-dimensional banks but collection {lc.collection!r} "
                         f"has {lc.info.size}-dimensional vectors; nothing was changed.")
    tuning = {"source": "import", "file": str(path), "from": {k: meta.get(k) for k in ("collection", "version")}}
    return (yield from publish_logic(core, lc, banks, as_params(p), tuning=tuning, progress=progress))
