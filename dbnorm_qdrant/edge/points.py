"""The points :class:`~.shard.DBNormEdgeShard` returns: the engine's ``ScoredPoint``, rescored.

The engine's ``ScoredPoint`` cannot be built (nor changed) from Python, so reranked
results are :class:`ScoredPoint` objects of this module with the same attributes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["ScoredPoint", "edge_id"]


@dataclass(slots=True)
class ScoredPoint:
    """A reranked point: the attributes of the engine's ``ScoredPoint``; ``score`` is the normalised score."""

    id: Any
    version: int
    score: float
    vector: Any = None
    payload: dict[str, Any] | None = None
    order_value: Any = None


def edge_id(pid: Any) -> Any:
    """A point id as the engine gives it back: a UUID string as a ``uuid.UUID``."""
    return uuid.UUID(pid) if isinstance(pid, str) else pid
