"""The query planner for Query API requests: prefetch trees, fusion, MMR and recommend.

A request is a tree: the outer query and its ``Prefetch`` branches, nested to any depth.
:func:`tree_logic` walks it and normalises every *dense nearest-neighbour node* on a vector
that has statistics (a vector of the banks' dimension): a plain vector, a ``NearestQuery``,
a point id, a query ``lookup_from`` another collection, or an ``average_vector``
``RecommendQuery`` (its vector is computed as Qdrant computes it). Whatever sits above it
(``RRF`` with its ``k`` and weights, ``DBSF``, a formula, a re-scoring query) then runs over
the normalised branch, as Qdrant runs it over the raw one; branches that cannot be
normalised (sparse, multivector, a vector of another dimension, order-by, sample) run as
they are. A tree without any normalisable node runs unchanged (a debug log says so).

Which path a request takes (:func:`explain_logic` returns it; a debug log states it per request):

- **engine** -- every normalised node can run inside Qdrant: on the index vector
  (``precompute(index=True)``; the node's query becomes ``[q/|q|, 1]`` on it) or as a
  formula over its stored statistics (a prefetch of N raw candidates under a
  ``FormulaQuery``, the server path). The whole request is then **one** Qdrant query.
- **client** -- otherwise (statistics not stored, ``dis``/``dualdis``, centering, MMR):
  each normalised leaf runs on the client path (:mod:`.paths`), the raw branches run in
  one batch, and the nodes above them are evaluated here: fusion with qdrant-client's own
  ``reciprocal_rank_fusion`` / ``distribution_based_score_fusion`` (Qdrant's formulas),
  a re-scoring query over the union of its branches' points (a ``HasId`` filter), MMR with
  :func:`~dbnorm_qdrant.core.mmr.mmr` on the normalised relevance. A formula over a
  normalised branch needs the engine path (it reads each branch's ``$score``) and is refused
  there with an :class:`InputError` naming ``precompute``.

Filters follow Qdrant: a level's filter applies to every prefetch below it (merged as the
server's ``Filter::merge_opts``). A ``score_threshold`` on a normalised branch applies to
its normalised score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
from qdrant_client import models
from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion

from ..core.index import index_query
from ..core.mmr import mmr
from ..errors import InputError
from ._io import Call, Logic
from .core import Core
from .paths import run_plans
from .planning import Overrides, Plan, Spec, merge_payload
from .results import empty_result, shape_points
from .server_path import formula_query
from .sources import point_key, record_vector

__all__ = ["tree_logic", "explain_logic", "is_tree", "merge_filters"]

logger = logging.getLogger(__name__)

#: queries that rank by a dense similarity the layer cannot see: refused (run them with rerank=False)
_REFUSED = (
    (models.DiscoverQuery, "a discover query"),
    (models.ContextQuery, "a context query"),
    (models.RelevanceFeedbackQuery, "a relevance-feedback query"),
    (models.Document, "a Document (server-side inference)"),
    (models.Image, "an Image (server-side inference)"),
    (models.InferenceObject, "an inference object"),
)
#: queries that do not rank by a dense similarity: run as they are
_AS_IS = (models.OrderByQuery, models.SampleQuery, models.TextQuery)


def is_tree(spec: Spec) -> bool:
    """Whether a request needs the planner (anything but one plain dense nearest query)."""
    if spec.prefetch is not None or spec.lookup_from is not None:
        return True
    q = spec.query
    if type(q) is list or isinstance(q, (np.ndarray, int, str)) or hasattr(q, "hex"):
        return False
    if isinstance(q, models.NearestQuery):
        return q.mmr is not None or isinstance(q.nearest, models.SparseVector)
    return True


@dataclass
class Node:
    """One level of a request: the outer query or a prefetch."""

    path: str
    query: Any
    using: str | None
    filter: Any
    params: Any
    limit: int
    score_threshold: float | None
    children: list["Node"] = field(default_factory=list)
    lookup_from: Any = None
    #: "dense" (normalised), "mmr" (normalised, then MMR), "fusion", "formula" or "raw" (run as it is)
    kind: str = "raw"
    plan: Plan | None = None
    why: str = ""
    #: the filter in force here: the ancestors' filters merged with this one (Qdrant's propagation)
    effective: Any = None
    mmr: Any = None
    #: point ids left out of this node's results (a recommend query's examples, as Qdrant does)
    exclude: list[Any] = field(default_factory=list)
    #: the request's shard key selector (every query the node runs on its own carries it)
    shard_key: Any = None

    def own_filter(self) -> Any:
        """This level's filter as sent to Qdrant (which propagates the ancestors' itself)."""
        return _and(self.filter, models.HasIdCondition(has_id=self.exclude), True) if self.exclude else self.filter

    def spec_filter(self) -> Any:
        """The filter in force when this node runs on its own (ancestors' filters merged in)."""
        return _and(self.effective, models.HasIdCondition(has_id=self.exclude), True) if self.exclude \
            else self.effective

    def normalised(self) -> bool:
        """Whether this node or one below it is normalised."""
        return self.plan is not None or any(c.normalised() for c in self.children)

    def walk(self) -> list["Node"]:
        return [self] + [n for c in self.children for n in c.walk()]


def merge_filters(outer: Any, inner: Any) -> Any:
    """A propagated filter merged with a level's own, as Qdrant's ``Filter::merge_opts``:
    the clauses are concatenated field by field (so ``should`` clauses of both become
    alternatives of each other)."""
    if outer is None:
        return inner
    if inner is None:
        return outer

    def cat(a: Any, b: Any) -> list | None:
        if a is None and b is None:
            return None
        return [*(a if isinstance(a, list) else [] if a is None else [a]),
                *(b if isinstance(b, list) else [] if b is None else [b])]

    ms = outer.min_should or inner.min_should
    if outer.min_should is not None and inner.min_should is not None:
        ms = models.MinShould(conditions=[*outer.min_should.conditions, *inner.min_should.conditions],
                              min_count=max(outer.min_should.min_count, inner.min_should.min_count))
    return models.Filter(must=cat(outer.must, inner.must), must_not=cat(outer.must_not, inner.must_not),
                         should=cat(outer.should, inner.should), min_should=ms)


def _and(flt: Any, cond: Any, negate: bool = False) -> models.Filter:
    extra = models.Filter(must_not=[cond]) if negate else models.Filter(must=[cond])
    return merge_filters(flt, extra)


def _nodes(p: Any, path: str, outer_filter: Any, shard_key: Any) -> Node:
    pf = p.prefetch
    kids = [] if pf is None else (pf if isinstance(pf, list) else [pf])
    eff = merge_filters(outer_filter, p.filter)
    limit = p.limit if p.limit is not None else 10
    node = Node(path, p.query, p.using, p.filter, p.params, limit, p.score_threshold, lookup_from=p.lookup_from,
                effective=eff, shard_key=shard_key)
    base = path[: -len("query")] if path.endswith("query") else f"{path}."  # "requests[3].query" -> "requests[3]."
    node.children = [_nodes(c, f"{base}prefetch[{i}]", eff, shard_key) for i, c in enumerate(kids)]
    return node


# ------------------------------------------------------------------ classification
def _shown(kinds: dict[str, str]) -> str:
    return ", ".join(f"{k or '(unnamed)'!r} ({v})" for k, v in sorted(kinds.items())) or "none"


def _classify(core: Core, collection: str, node: Node, root: Spec, ov: Overrides, is_root: bool) -> Logic:
    """Logic: set ``node.kind`` (and its plan when it is normalised), below it first."""
    for c in node.children:
        yield from _classify(core, collection, c, root, ov, False)
    q = node.query
    if q is None and node.children:
        raise InputError(f"{node.path} has prefetch branches but no query to rank them (Qdrant refuses it too); pass "
                         "query= (a FusionQuery to fuse them, or a vector to re-score them).")
    if isinstance(q, (models.FusionQuery, models.RrfQuery)):
        if not node.children:
            raise InputError(f"{node.path}: a fusion query fuses the results of prefetch branches, and there are none; "
                             "add prefetch=[...] (one Prefetch per branch).")
        if node.using:
            raise InputError(f"{node.path}: a fusion query does not use a vector (Qdrant refuses using= with it); drop "
                             f"using={node.using!r} or move it to the prefetch branches.")
        node.kind = "fusion"
        return
    if isinstance(q, models.FormulaQuery):
        node.kind, node.why = "formula", "a formula"
        return
    if q is None or isinstance(q, _AS_IS):
        node.why = "no query" if q is None else type(q).__name__
        return
    kinds = yield from core.kinds_logic(collection)
    using = node.using or None
    if using is not None and using not in kinds:
        raise InputError(f"{node.path} uses vector {using!r}, which collection {collection!r} does not have; its "
                         f"vectors are {_shown(kinds)}. Fix using=.")
    for typ, form in _REFUSED:
        if isinstance(q, typ):
            if using is not None and kinds.get(using) == "sparse":  # a sparse similarity: nothing to normalise
                node.why = f"{form} on a sparse vector"
                return
            raise InputError(f"{node.path}: cannot normalise {form} (it ranks by a dense similarity the layer does "
                             "not see); pass rerank=False to run the request as it is.")
    if isinstance(q, models.SparseVector) or (isinstance(q, models.NearestQuery)
                                              and isinstance(q.nearest, models.SparseVector)):
        if kinds.get(using or "") != "sparse":
            raise InputError(f"{node.path} is a sparse vector but {using or '(no using=)'!r} is not a sparse vector "
                             f"of collection {collection!r} (its vectors: {_shown(kinds)}); pass using= a sparse one.")
        node.why = "a sparse vector"
        return
    target = using if using is not None else ("" if "" in kinds else None)
    if target is not None and kinds.get(target) != "dense":
        node.why = f"a {kinds.get(target)} vector"
        return
    info = yield from core.info_logic(collection, using)
    if core.bank_dim(collection) != info.size:
        node.why = f"vector {info.using or '(unnamed)'!r} has size {info.size}, the banks {core.bank_dim(collection)}"
        return
    mmr = None
    if isinstance(q, models.RecommendQuery):
        q, node.exclude = yield from _recommend(core, collection, node, info.using)
    elif isinstance(q, models.NearestQuery):
        mmr, q = q.mmr, q.nearest
    if node.lookup_from is not None:
        same = node.lookup_from.collection == collection
        q0 = q
        q = yield from _lookup(core, node, q, info.using)
        if same and (isinstance(q0, (int, str)) or hasattr(q0, "hex")):
            node.exclude = [*node.exclude, q0]  # Qdrant never returns the point a query names
    if ov.with_raw_score and not is_root:
        raise InputError("with_raw_score applies to one dense query, not to a request with prefetch; drop it.")
    limit = node.limit
    if mmr is not None:
        limit = mmr.candidates_limit if mmr.candidates_limit is not None else node.limit
        if limit < node.limit + ((root.offset or 0) if is_root else 0):
            raise InputError(f"{node.path}: the MMR candidates_limit ({limit}) is below the limit ({node.limit}); "
                             "MMR selects from the candidates: raise candidates_limit.")
    spec = Spec(query=q, using=info.using, filter=node.spec_filter(), params=node.params, limit=limit,
                score_threshold=node.score_threshold, shard_key=root.shard_key)
    if is_root:  # the outer query: the user's offset and selectors
        spec = replace(spec, offset=root.offset if mmr is None else None, with_payload=root.with_payload,
                       with_vector=root.with_vector)
    node.plan = core.plan(collection, spec, info, ov, node.path)
    node.kind, node.mmr = ("mmr" if mmr is not None else "dense"), mmr


def _example_vectors(core: Core, collection: str, examples: Sequence[Any], using: str | None,
                     lookup: Any) -> Logic:
    """Logic: the vectors of recommend examples (vectors as given; ids retrieved) and the ids."""
    ids = [e for e in examples if isinstance(e, (int, str)) or hasattr(e, "hex")]
    vecs: dict[Any, Any] = {}
    if ids:
        coll = lookup.collection if lookup is not None else collection
        name = (lookup.vector if lookup is not None and lookup.vector is not None else using) or ""
        got = yield Call("retrieve", dict(collection_name=coll, ids=ids, with_payload=False,
                                          with_vectors=[name] if name else True))
        vecs = {point_key(r.id): record_vector(r, name or None) for r in got}
        missing = [i for i in ids if vecs.get(point_key(i)) is None]
        if missing:
            raise InputError(f"recommend example(s) {missing} not found in collection {coll!r} (or without vector "
                             f"{name or '(unnamed)'!r}); check the ids.")
    out = [np.asarray(vecs[point_key(e)] if e in ids else e, dtype=np.float64) for e in examples]
    return out, ids


def _recommend(core: Core, collection: str, node: Node, using: str | None) -> Logic:
    """Logic: an ``average_vector`` recommend query as Qdrant computes it (mean of the
    positives, plus ``mean(pos) - mean(neg)`` with negatives), and the filter leaving out
    the example points of this collection."""
    r = node.query.recommend
    if r.strategy not in (None, models.RecommendStrategy.AVERAGE_VECTOR):
        raise InputError(f"{node.path}: a recommend query with strategy {r.strategy.value!r} ranks by a sum or best of "
                         "similarities, not one dense query: it cannot be normalised; use strategy 'average_vector' "
                         "or pass rerank=False.")
    pos, neg = list(r.positive or []), list(r.negative or [])
    if not pos:
        raise InputError(f"{node.path}: an average_vector recommend query needs positive examples; add some.")
    lookup = node.lookup_from
    node.lookup_from = None
    pv, pids = yield from _example_vectors(core, collection, pos, using, lookup)
    nv, nids = yield from _example_vectors(core, collection, neg, using, lookup)
    mean = np.mean(np.stack(pv), axis=0)
    vec = mean + mean - np.mean(np.stack(nv), axis=0) if nv else mean
    same = lookup is None or lookup.collection == collection
    return vec.tolist(), (pids + nids if same else [])


def _lookup(core: Core, node: Node, q: Any, using: str | None) -> Logic:
    """Logic: a point-id query ``lookup_from`` another collection, as the vector it names."""
    lk = node.lookup_from
    node.lookup_from = None
    if not (isinstance(q, (int, str)) or hasattr(q, "hex")):
        return q
    name = lk.vector if lk.vector is not None else using
    got = yield Call("retrieve", dict(collection_name=lk.collection, ids=[q], with_payload=False,
                                      with_vectors=[name] if name else True))
    v = record_vector(got[0], name) if got else None
    if v is None:
        raise InputError(f"{node.path}: point {q!r} (lookup_from {lk.collection!r}) does not exist there or has no "
                         f"vector {name or '(unnamed)'!r}; check the id and lookup_from.vector.")
    return list(map(float, v))


# --------------------------------------------------------------------- the engine path
def _engine_ok(nodes: list[Node], ov: Overrides) -> bool:
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


def _engine_node(core: Core, collection: str, n: Node, server: list[tuple[Plan, models.Prefetch]]) -> models.Prefetch:
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
    out = _prefetch(query=formula_query(p.nz.params, core.payload_key, p.info.sign, fingerprint=p.nz.fingerprint),
                    prefetch=[inner], **common)
    server.append((p, out))
    return out


def _engine_logic(core: Core, collection: str, root: Node, spec: Spec, extra: dict[str, Any]) -> Logic:
    """Logic: the whole request as one Qdrant query; ``None`` when a server-path branch holds a
    point without current statistics (then the client path serves the request).

    Each server-path branch is probed in the same batch: its formula query with ``limit=1``.
    The formula lifts a candidate without current statistics to the top of its branch, so the
    probe's top point says whether the branch is sound, even when such a point does not reach
    the fused result (where it would still have displaced the others)."""
    server: list[tuple[Plan, models.Prefetch]] = []
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
                   shard_key_selector=spec.shard_key) for _, pf in server]
    res = yield from core.batch_call(collection, [req, *probes], extra)
    for (p, _), r in zip(server, res[1:]):
        rec = (r.points[0].payload or {}).get(key) if r.points else {"fp": p.nz.fingerprint}
        if not (isinstance(rec, dict) and rec.get("fp") == p.nz.fingerprint):
            core.mark_payload_ready((collection, p.info.using, p.nz.fingerprint), False)
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
        p.spec = replace(p.spec, filter=_and(p.spec.filter, has))
        p.n = max(p.n, len(ids))
        yield from run_plans(core, collection, [p], extra)
        pts = p.result.points
        return (yield from _mmr_logic(core, collection, p, n, pts, limit)) if n.kind == "mmr" else pts
    if n.kind == "formula":
        raise InputError(f"{n.path}: a formula over a normalised branch reads the branch's $score, so it runs inside "
                         f"Qdrant only: store the statistics first (DBNormClient.precompute({collection!r}), with "
                         "index=True for the index vector), or pass rerank=False.")
    res = yield Call("query_batch_points", dict(collection_name=collection, requests=[
        _raw_request(n, limit=limit, flt=_and(n.effective, has), children=False)], **extra))
    return res[0].points


def _client_logic(core: Core, collection: str, root: Node, spec: Spec, extra: dict[str, Any]) -> Logic:
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


# ------------------------------------------------------------------------ entry points
def _planned(core: Core, collection: str, spec: Spec, ov: Overrides, what: str = "query") -> Logic:
    root = _nodes(spec, what, None, spec.shard_key)
    root.limit = spec.limit
    yield from _classify(core, collection, root, spec, ov, True)
    nodes = root.walk()
    if ov.with_raw_score and not (root.plan is not None and root.kind == "dense"):
        raise InputError("with_raw_score applies to a dense query (alone or re-scoring its prefetch), not to a fusion, "
                         "MMR or a request without a normalised outer query; drop it.")
    if not root.normalised():
        return root, "as-is"
    return root, "engine" if _engine_ok(nodes, ov) else "client"


def _describe(root: Node, path: str) -> dict[str, Any]:
    branches = []
    for n in root.walk():
        d: dict[str, Any] = {"at": n.path, "query": type(n.query).__name__, "using": n.using}
        if n.plan is not None:
            d.update(normalised=True, mode=n.plan.mode, method=n.plan.nz.params.method, kind=n.kind)
        elif n.kind == "fusion":
            d.update(normalised=False, fuses=len(n.children))
        else:
            d.update(normalised=False, runs="as it is" if not n.normalised() else "over normalised branches",
                     why=n.why or n.kind)
        branches.append(d)
    return {"path": path, "nodes": branches}


def explain_logic(core: Core, collection: str, spec: Spec, ov: Overrides) -> Logic:
    """Logic: how a request would run, without running it: ``{"path": "engine" | "client" |
    "as-is" | "single", "nodes": [{"at", "query", "using", "normalised", "mode", ...}]}``."""
    if not is_tree(spec):
        info = yield from core.info_logic(collection, spec.using)
        p = core.plan(collection, spec, info, ov)
        return {"path": "single", "nodes": [{"at": "query", "query": type(spec.query).__name__, "using": info.using,
                                             "normalised": True, "mode": p.mode, "method": p.nz.params.method,
                                             "kind": "dense"}]}
    root, path = yield from _planned(core, collection, spec, ov)
    return _describe(root, path)


def tree_logic(core: Core, collection: str, spec: Spec, ov: Overrides, extra: dict[str, Any],
               what: str = "query") -> Logic:
    """Logic: run one request with prefetch / fusion / MMR / recommend (module docstring);
    returns its ``QueryResponse``. ``what`` names the request in errors (``requests[3].query``)."""
    root, path = yield from _planned(core, collection, spec, ov, what)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("query on %r runs on the %s path: %s", collection, path, _describe(root, path)["nodes"])
    if path == "as-is":
        res = yield Call("query_batch_points", dict(collection_name=collection, requests=[spec.to_request()],
                                                    **extra))
        return shape_points(res[0].points, spec, core.payload_key)  # index vectors out unless named
    if path == "engine":
        out = yield from _engine_logic(core, collection, root, spec, extra)
        if out is not None:
            return out
        logger.debug("a point without current statistics: the request on %r goes to the client path", collection)
        for n in root.walk():
            if n.plan is not None:
                n.plan.mode = "client"
    return (yield from _client_logic(core, collection, root, spec, extra))
