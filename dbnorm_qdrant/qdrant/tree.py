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
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
from qdrant_client import models

from ..errors import InputError
from ._io import Call, Logic
from .core import Core
from .planning import Overrides, Spec
from .results import shape_points
from .sources import point_key, record_vector
from .tree_nodes import Node, merge_filters
from .tree_run import engine_ok, run_client, run_engine

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
    return root, "engine" if engine_ok(nodes, ov) else "client"


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
    yield from core.names_fresh_logic(collection)  # as a query would see the collection
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
        out = yield from run_engine(core, collection, root, spec, extra)
        if out is not None:
            return out
        logger.debug("a point without current statistics: the request on %r goes to the client path", collection)
        for n in root.walk():
            if n.plan is not None:
                n.plan.mode = "client"
    return (yield from run_client(core, collection, root, spec, extra))
