"""The nodes of a request tree (the outer query and its prefetches) and Qdrant's filter merge.

Shared by the planner (:mod:`.tree`) and the code that runs a planned tree (:mod:`.tree_run`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

from .planning import Plan

__all__ = ["Node", "merge_filters", "and_filter"]


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
        return and_filter(self.filter, models.HasIdCondition(has_id=self.exclude), True) if self.exclude else self.filter

    def spec_filter(self) -> Any:
        """The filter in force when this node runs on its own (ancestors' filters merged in)."""
        return and_filter(self.effective, models.HasIdCondition(has_id=self.exclude), True) if self.exclude \
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


def and_filter(flt: Any, cond: Any, negate: bool = False) -> models.Filter:
    extra = models.Filter(must_not=[cond]) if negate else models.Filter(must=[cond])
    return merge_filters(flt, extra)


