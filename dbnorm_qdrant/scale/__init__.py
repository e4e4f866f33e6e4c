"""Scale-out on Ray (the ``ray`` extra; docs/scale.md): the statistics precompute with one Ray
task per chunk of a collection (:func:`precompute_ray`), and batch rerank with Ray Data, a
normaliser actor per worker (:func:`rerank_ray`). Ray is imported only when they run;
without it they raise an :class:`~dbnorm_qdrant.errors.InputError` naming the extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._ray import RAY_EXTRA, RayRunError, require_ray
from .precompute import RayPrecomputeReport, precompute_ray
from .rerank import rerank_ray

__all__ = ["RAY_EXTRA", "RayEngine", "RayRunError", "RayPrecomputeReport", "precompute_ray", "rerank_ray",
           "require_ray"]


@dataclass(frozen=True)
class RayEngine:
    """Ray as the compute engine of ``DBNormClient.precompute(name, engine=RayEngine(...))``:
    the options of :func:`precompute_ray` (``address`` of a running cluster, ``None``: a local
    one; ``num_workers``; ``chunk_size`` points per task; ``max_retries`` per task; ``fetch``)."""

    address: str | None = None
    num_workers: int | None = None
    chunk_size: int = 4096
    max_retries: int = 3
    fetch: str = "auto"

    def precompute(self, db: Any, collection: str, **kw: Any) -> RayPrecomputeReport:
        """:func:`precompute_ray` of ``db``'s collection with these options (``kw``: using, params,
        force, progress, index)."""
        return precompute_ray(db, collection, address=self.address, num_workers=self.num_workers,
                              chunk_size=self.chunk_size, max_retries=self.max_retries, fetch=self.fetch, **kw)
