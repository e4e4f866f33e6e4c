"""A batch of queries through the pipeline: plan, then the index, server-side and client-side paths.

Each query is planned by :meth:`.core.Core.plan`; those whose collection has a current index
vector (``mode="index"``, or ``"auto"``) run on the index path (:mod:`.index_path`, one
Qdrant query; ``dis``/``dualdis`` take their candidates from it and go on to the client
path), those whose payload holds current statistics on the server-side path
(:mod:`.server_path`, a formula inside Qdrant), the rest on the client-side path
(:mod:`.client_path`, a rerank in this process). This module is the only one that knows the
paths, so neither path nor :class:`~.core.Core` imports another.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import client_path, index_path, server_path
from ._io import Call, Logic
from .core import Core
from .planning import Overrides, Spec

__all__ = ["query_logic"]


def query_logic(
    core: Core, collection: str, specs: Sequence[Spec], ov: Overrides, extra: dict[str, Any], batch: bool = False
) -> Logic:
    """Rerank a batch of queries on one collection; returns a list of QueryResponse."""
    if not core.enabled(collection, ov):
        res = yield Call(
            "query_batch_points", dict(collection_name=collection, requests=[s.to_request() for s in specs], **extra)
        )
        return res
    plans = []
    for i, s in enumerate(specs):
        info = yield from core.info_logic(collection, s.using)
        plans.append(core.plan(collection, s, info, ov, f"requests[{i}].query" if batch else "query"))
    index_plans = [p for p in plans if p.mode == "index"]
    exact = [p for p in index_plans if not p.nz.params.gated]
    if exact:
        yield from index_path.index_logic(core, collection, exact, extra)
    gated = [p for p in index_plans if p.nz.params.gated]
    if gated:
        yield from index_path.candidates_logic(core, collection, gated, extra)
    server_plans = [p for p in plans if p.mode == "server"]
    if server_plans:
        yield from server_path.server_logic(core, collection, server_plans, extra)
    client_plans = [p for p in plans if p.result is None]
    if client_plans:
        yield from client_path.client_logic(core, collection, client_plans, extra)
    return [p.result for p in plans]
