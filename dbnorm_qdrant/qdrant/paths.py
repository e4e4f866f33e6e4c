"""Run planned dense queries on the index, server-side and client-side paths.

Each :class:`~.planning.Plan` (one dense nearest-neighbour query, planned by
:meth:`.core.Core.plan`) whose collection has a current index vector (``mode="index"``,
or ``"auto"``) runs on the index path (:mod:`.index_path`, one Qdrant query;
``dis``/``dualdis`` take their candidates from it and go on to the client path), those
whose payload holds current statistics on the server-side path (:mod:`.server_path`, a
formula inside Qdrant), the rest on the client-side path (:mod:`.client_path`, a rerank
in this process). This module is the only one that knows the three paths, so neither a
path nor :class:`~.core.Core` imports another.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import client_path, index_path, server_path
from ._io import Logic
from .core import Core
from .planning import Plan

__all__ = ["run_plans"]


def run_plans(core: Core, collection: str, plans: Sequence[Plan], extra: dict[str, Any]) -> Logic:
    """Logic: run ``plans`` (all on ``collection``), batched per path; sets each ``plan.result``."""
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
