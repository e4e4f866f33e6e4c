"""The client-side path: rerank Qdrant's raw top-N candidates in this process.

For each query: one candidate query (N points, the user's payload plus the reserved key,
and the candidates' vectors while the cache is cold), then each candidate's statistics
from the cache, else the payload (when its fingerprint is current), else computed from
its vector with the kernels (one batch per normalizer, vectors retrieved by id when the
candidate query did not bring them) and cached; then the scores
(:meth:`BankNormalizer.rerank`, or ``s - bias`` of an additive method), the sort, and
the result (:mod:`.results`). The common case, every candidate cached with its bias, is
one compiled call (:meth:`StatsCache.additive_topk`).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from qdrant_client import models

from ..core.normalizer import BankNormalizer
from ..core.stats import GalleryStats
from ._io import Call, Logic
from .cache import BIAS, COLUMN, FIELDS, record_to_row
from .planning import Plan, merge_payload, merge_vectors
from .results import build_result, empty_result
from .sources import point_key, record_vector, vector_selector

if TYPE_CHECKING:
    from .core import Core

__all__ = ["client_logic"]

_ACT_Q, _ACT_G = COLUMN["act_q"], COLUMN["act_g"]
#: one query's statistics while they are gathered: (rows, positions still missing, keys); None: done
State = "tuple[np.ndarray, set[int], list[Any]] | None"
#: fingerprint -> point key -> (point id, vector or None): statistics still to compute
Todo = dict[str, dict[int, tuple[Any, Any]]]


def keys_of(pts: Sequence[Any]) -> list[int]:
    """The point keys (:func:`~.sources.point_key`) of the points: their ids when all are
    non-negative int64 integers (checked in one numpy conversion), else one by one."""
    ids = [pt.id for pt in pts]
    if ids and type(ids[0]) is int:  # (no array of UUID strings built just to be refused)
        a = np.array(ids)
        if a.dtype == np.int64 and a.min() >= 0:
            return ids
    return [point_key(i) for i in ids]


def client_logic(core: Core, collection: str, plans: list[Plan], extra: dict[str, Any]) -> Logic:
    """Logic: run ``plans`` on the client side; sets each plan's result."""
    key = core.payload_key
    reqs = []
    for p in plans:
        s = p.spec
        warm = core.is_warm((collection, p.info.using, p.nz.fingerprint))
        reqs.append(
            dict(
                query=s.query, using=s.using, query_filter=s.filter, search_params=s.params, limit=p.n,
                # mode="client" with a warm cache: the candidates' statistics are cached, so the
                # reserved key is not read (on Qdrant's engine it costs ~5 us per candidate)
                with_payload=merge_payload(s.with_payload, key) if not (warm and p.pinned) else s.with_payload,
                with_vectors=merge_vectors(s.with_vector, p.info.using) if not warm else s.with_vector,
                shard_key_selector=s.shard_key,
            )
        )
    responses = yield from core.batch_call(collection, reqs, extra)
    todo: Todo = {}
    states = [_gather(core, collection, p, resp, todo) for p, resp in zip(plans, responses)]
    computed = yield from _compute(core, collection, plans, todo)
    for p, resp, st in zip(plans, responses, states):
        if st is None:  # reranked from the cache already
            continue
        rows, miss, keys = st
        fp = p.nz.fingerprint
        if miss and fp in computed:
            pos, new = computed[fp]
            for j in sorted(miss):
                i = pos.get(keys[j])
                if i is not None:
                    rows[j] = new[i]
                    miss.discard(j)
        yield from _finish(core, p, resp, rows, miss)


def _gather(core: Core, collection: str, p: Plan, resp: models.QueryResponse, todo: Todo) -> State:
    """One query's candidates' statistics, from the cache, then the payload; what is
    still missing goes into ``todo``. ``None``: reranked from the cache already."""
    key, cache = core.payload_key, core.cache
    fp = p.nz.fingerprint
    sk = (collection, p.info.using, fp)
    pts = resp.points
    # a hit by the raw ids is exact: an int id in [0, 2**63) is its own key, and the
    # keys of other ids (UUID strings) are ints, never equal to them
    keys: list[Any] = [pt.id for pt in pts]
    scan0 = False
    if pts:
        # the payload is scanned only when a candidate is missing from the cache, or
        # (to notice a precompute and switch "auto" to the server path) when the
        # best candidate carries current statistics
        pr0 = (pts[0].payload or {}).get(key)
        scan0 = isinstance(pr0, dict) and pr0.get("fp") == fp
        params = p.nz.params
        # the common case: every candidate cached (under an integer id) with its bias;
        # the cache reranks them in one compiled call
        if not scan0 and params.additive and not params.center and _cached_top(core, collection, p, resp, keys):
            return None
    rows, missing = cache.get_rows(collection, keys, fp)
    if missing:
        keys = keys_of(pts)
        rows, missing = cache.get_rows(collection, keys, fp)
    if rows is None:
        rows = np.full((len(pts), len(FIELDS)), np.nan)
    miss = set(missing)
    if not (miss or scan0):
        if pts:
            core.set_warm(sk, True)
        return rows, miss, keys
    found: list[int] = []
    n_payload = 0
    for j, pt in enumerate(pts):
        pr = (pt.payload or {}).get(key)
        if isinstance(pr, dict) and pr.get("fp") == fp:
            n_payload += 1
            if j in miss and all(f in pr for f in p.fields):
                rows[j] = record_to_row(pr)
                miss.discard(j)
                found.append(j)
        if j in miss:
            vec = record_vector(pt, p.info.using) if pt.vector is not None else None
            todo.setdefault(fp, {})[keys[j]] = (pt.id, vec)
    if found:
        sub = core.fill_bias(p.nz, rows[found])
        rows[found] = sub
        cache.put_rows(collection, [keys[j] for j in found], sub, fp)
    if n_payload == len(pts) and not p.nz.params.center:
        core.mark_payload_ready(sk)
    core.set_warm(sk, not miss)
    return rows, miss, keys


def _compute(core: Core, collection: str, plans: list[Plan], todo: Todo) -> Logic:
    """Logic: compute and cache the statistics in ``todo`` (vectors retrieved by id where
    the candidate query did not bring them); returns fp -> (key -> row, rows)."""
    computed: dict[str, tuple[dict[int, int], np.ndarray]] = {}
    for fp, items in todo.items():
        p0 = next(p for p in plans if p.nz.fingerprint == fp)
        nz: BankNormalizer = p0.nz
        using = p0.info.using
        need = [(k, pid) for k, (pid, v) in items.items() if v is None]
        vecs = {k: v for k, (pid, v) in items.items() if v is not None}
        if need:
            got = yield Call(
                "retrieve",
                dict(collection_name=collection, ids=[pid for _, pid in need], with_payload=False,
                     with_vectors=vector_selector(using)),
            )
            for r in got:
                v = record_vector(r, using)
                if v is not None:
                    vecs[point_key(r.id)] = v
        if not vecs:
            continue
        kl = list(vecs)
        ks = np.asarray(kl, dtype=np.int64)
        st = nz.gallery_stats(np.asarray(list(vecs.values()), dtype=np.float32), gallery_keys=ks, activation=False,
                              nonzero=False)  # stored vectors: a zero one is not refused
        new = core.put_stats(collection, nz, kl, st)
        computed[fp] = ({k: i for i, k in enumerate(kl)}, new)
    return computed


def _cached_top(core: Core, collection: str, p: Plan, resp: models.QueryResponse, keys: list[Any]) -> bool:
    """Rerank the candidates ``resp.points`` (``keys``: their ids) from the cached biases
    (:meth:`StatsCache.additive_topk`) and set ``p.result``; False (nothing done)
    unless every candidate is cached with its bias."""
    pts = resp.points
    if type(keys[0]) is not int:  # UUIDs: their point keys
        keys = keys_of(pts)
    s = p.spec
    top = core.cache.additive_topk(
        collection, keys, [pt.score for pt in pts], p.nz.fingerprint, p.info.sign, s.offset or 0, s.limit
    )
    if top is None:
        return False
    sk = (collection, p.info.using, p.nz.fingerprint)
    if not core.is_warm(sk):
        core.set_warm(sk, True)
    build_result(p, pts, *top, core.payload_key)
    return True


def _finish(core: Core, p: Plan, resp: models.QueryResponse, rows: np.ndarray, miss: set[int]) -> Logic:
    """Logic: score the candidates from their statistics ``rows`` (``miss``: positions
    without any, dropped), sort and build the result."""
    s = p.spec
    pts = resp.points
    if miss:  # a point deleted meanwhile drops out
        keep = [j for j in range(len(pts)) if j not in miss]
        pts = [pts[j] for j in keep]
        rows = rows[keep]
    if not pts:
        p.result = empty_result()
        return
    n = len(pts)
    raw = np.array([pt.score for pt in pts], dtype=np.float64)
    sim = raw if p.info.sign > 0 else -raw
    params = p.nz.params
    b = rows[:, BIAS] if params.additive and not params.center else None
    if b is not None and b.sum() == b.sum():  # not NaN: every bias filled at insertion
        norm = sim - b  # an additive method: s - bias(g) (methods.score)
    else:
        norm = yield from _scores(core, p, pts, sim, rows)
    off = s.offset or 0
    # best first, ties by candidate order (nlargest is a stable sort, reversed);
    # only the top (offset + limit) are kept
    if norm.sum() == norm.sum():  # no NaN: a stable argsort of -norm orders like nlargest
        top = np.argsort(-norm, kind="stable")[off : off + s.limit]
        order, scores = top.tolist(), norm[top].tolist()
    else:
        nl = norm.tolist()
        order = heapq.nlargest(off + s.limit, range(n), key=nl.__getitem__)[off:]
        scores = [nl[j] for j in order]
    build_result(p, pts, order, scores, core.payload_key)


def _scores(core: Core, p: Plan, pts: list[Any], sim: np.ndarray, rows: np.ndarray) -> Logic:
    """Logic: the normalised scores of a gated or centered method (or one whose biases are
    not all cached): :meth:`BankNormalizer.rerank` on the candidates' statistics; the
    gates of ``dis``/``dualdis`` are those of the raw top-1."""
    n = len(pts)
    params = p.nz.params
    top1 = int(np.argmax(sim))
    st = GalleryStats(n=n, fingerprint=p.nz.fingerprint, **{f: rows[:, COLUMN[f]] for f in p.fields})
    if params.gated:
        a_q, a_g = rows[top1, _ACT_Q], rows[top1, _ACT_G]
        a_q = None if a_q != a_q else bool(a_q)  # NaN: not in the record
        a_g = None if a_g != a_g else bool(a_g)
        if a_q is None or (params.gated and params.uses_gallery_bank and a_g is None):
            sets = yield from core.activation_logic(p.info.collection, p.info, p.nz)
            k1 = point_key(pts[top1].id)
            a_q, a_g = k1 in sets[0], k1 in sets[1]
        st.act_q = np.zeros(n, dtype=bool)
        st.act_g = np.zeros(n, dtype=bool)
        st.act_q[top1], st.act_g[top1] = bool(a_q), bool(a_g)
    # the query vector matters only to centering; a Cosine collection scores the unit
    # query, so centering must see the unit query too (users may send unnormalised vectors)
    q = None
    if params.center:
        q = np.asarray(p.qvec, dtype=np.float64)
        if p.info.distance == "Cosine":
            q = q / max(float(np.linalg.norm(q)), 1e-12)
    return p.nz.rerank(q, sim, st, top1=top1)
