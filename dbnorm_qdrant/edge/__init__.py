"""Qdrant Edge (``qdrant-edge-py``, Qdrant's engine in process) as a driver of the reranking layer.

- :class:`DBNormEdgeShard` wraps an ``EdgeShard``: ``.query`` / ``.query_batch`` take what
  ``EdgeShard.query`` / ``query_batch`` take and return the same shape of results, reranked.
- :class:`EdgeClient` is a ``QdrantClient`` look-alike over edge shards, so
  ``DBNormClient(EdgeClient(path), ...)`` works too (and the CLI's ``--engine edge``).
- :class:`BM25Encoder` embeds text as BM25 sparse vectors offline (the sparse branch of hybrid search).

Needs the ``edge`` extra: ``pip install "dbnorm-qdrant[edge]"``. See docs/edge.md.
"""

from __future__ import annotations

from ..errors import InputError

try:
    import qdrant_edge  # noqa: F401
except ImportError as exc:  # the optional dependency is missing
    raise InputError(
        "dbnorm_qdrant.edge needs Qdrant Edge (the qdrant-edge-py package, Python >= 3.10): "
        'pip install "dbnorm-qdrant[edge]"'
    ) from exc

from .bm25 import BM25Encoder  # noqa: E402
from .client import EdgeClient  # noqa: E402
from .shard import DBNormEdgeShard, ScoredPoint  # noqa: E402

__all__ = ["EdgeClient", "DBNormEdgeShard", "ScoredPoint", "BM25Encoder"]
