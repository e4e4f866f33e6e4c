"""Run a planned request tree: as one Qdrant query (the engine path) or here (the client path).

See :mod:`.tree` for the planner and what each path does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from qdrant_client import models
from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion

from ..core.index import index_query
from ..core.mmr import mmr
from ..errors import InputError
from ._io import Call, Logic
from .core import Core
from .paths import run_plans
from .planning import Overrides, Plan, Spec
from .results import empty_result, shape_points
from .server_path import formula_query, soundness
from .sources import record_vector
from .tree_nodes import Node, and_filter

__all__ = ["engine_ok", "run_engine", "run_client"]


# --------------------------------------------------------------------- the engine path
def engine_ok(nodes: list[Node], ov: Overrides) -> bool:
    plans = [n.plan for n in nodes if n.plan is not None]
    return bool(plans) and not ov.with_raw_score and all(
        n.kind != "mmr" for n in nodes) and all(
        p.mode in ("index", "server") and not p.nz.params.gated and not p.nz.params.center and p.qvec is not None
        for p in plans)


_PREFETCH_FIELDS = dict.fromkeys(models.Prefetch.model_fields)


def _construct(**fields: Any) -> models.Prefetch:
    """What ``Prefetch.model_construct`` builds (no validation), without its per-field default
    lookups: the engine path builds three per hybrid query."""
    m = object.__new__(models.Prefetch)
    object.__setattr__(m, "__dict__", {**_PREFETCH_FIELDS, **fields})
    object.__setattr__(m, "__pydantic_fields_set__", set(fields))
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


def _same_as_pydantic() -> bool:
    try:
        a, b = _construct(query=[1.0], limit=3), models.Prefetch.model_construct(query=[1.0], limit=3)
        return a.__dict__ == b.__dict__ and a.model_fields_set == b.model_fields_set and a == b
    except Exception:  # pragma: no cover - a pydantic whose internals differ
        return False


#: the fast constructor where it builds exactly pydantic's object, else pydantic's own
_PREFETCH = _construct if _same_as_pydantic() else models.Prefetch.model_construct


def _prefetch(**fields: Any) -> models.Prefetch:
    """A ``Prefetch`` of values already checked (the user's models, or the layer's own): built
    without pydantic's validation, which costs more than the rest of the engine path's planning."""
    return _PREFETCH(**{k: v for k, v in fields.items() if v is not None})


def _engine_node(core: Core, collection: str, n: Node,
                 server: list[tuple[Plan, models.Prefetch, bool]]) -> models.Prefetch:
    kids = [_engine_node(core, collection, c, server) for c in n.children] or None
    p = n.plan
    common = dict(filter=n.own_filter(), params=n.params, limit=n.limit, score_threshold=n.score_threshold)
    if p is None:
        return _prefetch(query=n.query, using=n.using, prefetch=kids, lookup_from=n.lookup_from, **common)
    if p.mode == "index":
        name = core.index_status(collection, p.info, p.nz)[1]
        return _prefetch(query=index_query(p.qvec, unit=p.info.distance == "Cosine"), using=name, prefetch=kids,
                         **common)
    inner_limit = p.n if kids is None else sum(c.limit or 10 for c in kids)
    inner = _prefetch(query=p.spec.query, using=p.info.using, prefetch=kids, filter=common.pop("filter"),
                      params=common.pop("params"), limit=inner_limit)
    bias = core.bias_stored((collection, p.info.using, p.nz.fingerprint))
    out = _prefetch(query=formula_query(p.nz.params, core.payload_key, p.info.sign, fingerprint=p.nz.fingerprint,
                                        bias=bias), prefetch=[inner], **common)
    server.append((p, out, bias))
    return out


def run_engine(core: Core, collection: str, root: Node, spec: Spec, extra: dict[str, Any]) -> Logic:
    """Logic: the whole request as one Qdrant query; ``None`` when a server-path branch holds a
    point without current statistics (then the client path serves the request).

    Each server-path branch is probed in the same batch: its formula query with ``limit=1``.
    The formula lifts a candidate without current statistics to the top of its branch, so the
    probe's top point says whether the branch is sound, even when such a point does not reach
    the fused result (where it would still have displaced the others)."""
    server: list[tuple[Plan, models.Prefetch, bool]] = []
    top = _engine_node(core, collection, root, server)
    key = core.payload_key
    g = top.__dict__.get  # (built without validation: unset fields are absent)
    req = dict(query=g("query"), using=g("using"), prefetch=g("prefetch"), query_filter=g("filter"),
               search_params=g("params"), limit=spec.limit, offset=spec.offset, score_threshold=g("score_threshold"),
               with_payload=spec.with_payload, with_vectors=spec.with_vector, lookup_from=g("lookup_from"),
               shard_key_selector=spec.shard_key)
    if not server:
        resp = yield Call("query_points", dict(collection_name=collection, **req, **extra))
        return shape_points(resp.points, spec, key)
    probes = [dict(query=pf.query, prefetch=pf.prefetch, limit=1, with_payload=[key], with_vectors=False,
                   shard_key_selector=spec.shard_key) for _, pf, _ in server]
    res = yield from core.batch_call(collection, [req, *probes], extra)
    for (p, _, bias), r in zip(server, res[1:]):
        if not r.points:
            continue
        sk = (collection, p.info.using, p.nz.fingerprint)
        state = soundness((r.points[0].payload or {}).get(key), p.nz.params, p.nz.fingerprint, bias)
        if state != "ok":
            if state == "legacy":
                core.mark_legacy(sk)
            else:
                core.mark_payload_ready(sk, False)
            return None
    return shape_points(res[0].points, spec, key)


# --------------------------------------------------------------------- the client path
def _raw_request(n: Node, limit: int | None = None, flt: Any = None, children: bool = True) -> models.QueryRequest:
    return models.QueryRequest(
        query=n.query, using=n.using, filter=n.effective if flt is None else flt, params=n.params,
        limit=n.limit if limit is None else limit, score_threshold=n.score_threshold,
        prefetch=_prefetch_models(n.children) if children and n.children else None, lookup_from=n.lookup_from,
        with_payload=False, with_vector=False, shard_key=n.shard_key)


def _prefetch_models(nodes: list[Node]) -> list[models.Prefetch]:
    return [models.Prefetch(query=c.query, using=c.using, filter=c.filter, params=c.params, limit=c.limit,
                            score_threshold=c.score_threshold, lookup_from=c.lookup_from,
                            prefetch=_prefetch_models(c.children) or None) for c in nodes]


def _fuse(n: Node, lists: list[list[Any]], limit: int) -> list[Any]:
    q = n.query
    if isinstance(q, models.RrfQuery):
        out = reciprocal_rank_fusion(lists, limit=limit, ranking_constant_k=q.rrf.k, weights=q.rrf.weights)
    elif q.fusion == models.Fusion.RRF:
        out = reciprocal_rank_fusion(lists, limit=limit)
    else:
        out = distribution_based_score_fusion(lists, limit=limit)
    if n.score_threshold is not None:
        out = [p for p in out if p.score >= n.score_threshold]
    return out


def _mmr_logic(core: Core, collection: str, p: Plan, n: Node, pts: list[Any], limit: int) -> Logic:
    """Logic: Qdrant's MMR over the normalised candidates ``pts`` (their score is the relevance);
    their vectors are retrieved for these candidates only (the candidate query of N points
    does not carry them: converting a vector costs more than scoring it)."""
    if not pts:
        return []
    name = p.info.using or ""
    got = yield Call("retrieve", dict(collection_name=collection, ids=[pt.id for pt in pts], with_payload=False,
                                      with_vectors=[name] if name else True, shard_key_selector=n.shard_key))
    by = {r.id: record_vector(r, p.info.using) for r in got}
    keep = [pt for pt in pts if by.get(pt.id) is not None]  # a point deleted meanwhile drops out
    if not keep:
        return []
    vecs = np.asarray([by[pt.id] for pt in keep], dtype=np.float64)
    rel = np.asarray([pt.score for pt in keep], dtype=np.float64)
    order, scores = mmr(rel, vecs, p.info.distance, n.mmr.diversity, limit)
    out = [keep[i] for i in order]
    for pt, s in zip(out, scores):
        pt.score = float(s)
    return out


def _eval(core: Core, collection: str, n: Node, done: dict[int, list[Any]], limit: int,
          extra: dict[str, Any]) -> Logic:
    """Logic: the ranked points of node ``n`` (at most ``limit``), from ``done`` or evaluated."""
    if id(n) in done:
        pts = done[id(n)]
        return (yield from _mmr_logic(core, collection, n.plan, n, pts, limit)) if n.kind == "mmr" else pts
    lists = []
    for c in n.children:
        lists.append((yield from _eval(core, collection, c, done, c.limit, extra)))
    if n.kind == "fusion":
        return _fuse(n, lists, limit)
    ids = list(dict.fromkeys(pt.id for lst in lists for pt in lst))
    if not ids:
        return []
    has = models.HasIdCondition(has_id=ids)
    if n.plan is not None:  # a normalised query re-scoring its branches' points
        p = n.plan
        p.spec = replace(p.spec, filter=and_filter(p.spec.filter, has))
        p.n = max(p.n, len(ids))
        yield from run_plans(core, collection, [p], extra)
        pts = p.result.points
        return (yield from _mmr_logic(core, collection, p, n, pts, limit)) if n.kind == "mmr" else pts
    if n.kind == "formula":
        raise InputError(f"{n.path}: a formula over a normalised branch reads the branch's $score, so it runs inside "
                         f"Qdrant only: store the statistics first (DBNormClient.precompute({collection!r}), with "
                         "index=True for the index vector), or pass rerank=False.")
    res = yield Call("query_batch_points", dict(collection_name=collection, requests=[
        _raw_request(n, limit=limit, flt=and_filter(n.effective, has), children=False)], **extra))
    return res[0].points


def run_client(core: Core, collection: str, root: Node, spec: Spec, extra: dict[str, Any]) -> Logic:
    nodes = root.walk()
    # independent work first, batched: normalised leaves (one run per path) and raw subtrees (one batch)
    leaves = [n for n in nodes if n.plan is not None and not n.children]
    raw = [n for n in nodes if not n.normalised() and n is not root and _parent_normalised(root, n)]
    done: dict[int, list[Any]] = {}
    if leaves:
        for n in leaves:
            n.plan.result = None
        yield from run_plans(core, collection, [n.plan for n in leaves], extra)
        done.update({id(n): n.plan.result.points for n in leaves})
    if raw:
        res = yield Call("query_batch_points", dict(collection_name=collection,
                                                    requests=[_raw_request(n) for n in raw], **extra))
        done.update({id(n): r.points for n, r in zip(raw, res)})
    off = spec.offset or 0
    if root.plan is not None and root.kind == "dense":  # the root's plan shaped its result (offset, selectors)
        if id(root) not in done:
            root.plan.result = None
            yield from _eval(core, collection, root, done, spec.limit, extra)
        return root.plan.result if root.plan.result is not None else empty_result()  # None: no branch point
    pts = yield from _eval(core, collection, root, done, spec.limit + off, extra)
    pts = pts[off:]
    wp, wv = spec.with_payload, spec.with_vector
    if pts and (wp not in (False, None) or wv not in (False, None)) and root.kind != "mmr":
        got = yield Call("retrieve", dict(collection_name=collection, ids=[pt.id for pt in pts], with_payload=wp,
                                          with_vectors=wv, shard_key_selector=spec.shard_key))
        by = {r.id: r for r in got}
        for pt in pts:
            r = by.get(pt.id)
            pt.payload, pt.vector = (r.payload, r.vector) if r is not None else (None, None)
    return shape_points(pts, spec, core.payload_key)


def _parent_normalised(root: Node, n: Node) -> bool:
    """Whether ``n``'s parent has a normalised node below it (then ``n`` is a maximal raw subtree)."""
    for m in root.walk():
        if n in m.children:
            return m.normalised()
    return False


