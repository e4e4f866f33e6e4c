"""A batch of requests through the pipeline: one dense query each, or a request tree.

A plain dense nearest-neighbour request (a vector, a ``NearestQuery``, a point id) is
planned by :meth:`.core.Core.plan` and run with the others of its batch on the index,
server-side or client-side path (:mod:`.paths`). Any other request (prefetch, fusion, MMR,
recommend, sparse, ``lookup_from``) goes through the query planner (:mod:`.tree`), which
normalises its dense branches and runs the rest as Qdrant would.
"""

from __future__ import annotations

from typing import Any, Sequence

from ._io import Call, Logic
from .core import Core
from .paths import run_plans
from .planning import Overrides, Spec
from .tree import is_tree, tree_logic

__all__ = ["query_logic"]


def query_logic(
    core: Core, collection: str, specs: Sequence[Spec], ov: Overrides, extra: dict[str, Any], batch: bool = False
) -> Logic:
    """Normalise a batch of requests on one collection; returns a list of QueryResponse."""
    if not core.enabled(collection, ov):
        res = yield Call(
            "query_batch_points", dict(collection_name=collection, requests=[s.to_request() for s in specs], **extra)
        )
        return res
    yield from core.names_fresh_logic(collection)  # an index vector added or dropped by another process
    results: list[Any] = [None] * len(specs)
    plans, where = [], []
    for i, s in enumerate(specs):
        what = f"requests[{i}].query" if batch else "query"
        if is_tree(s):
            results[i] = yield from tree_logic(core, collection, s, ov, extra, what)
            continue
        info = yield from core.info_logic(collection, s.using)
        plans.append(core.plan(collection, s, info, ov, what))
        where.append(i)
    if plans:
        yield from run_plans(core, collection, plans, extra)
    for i, p in zip(where, plans):
        results[i] = p.result
    return results
