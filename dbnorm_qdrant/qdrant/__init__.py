"""The Qdrant layer: a drop-in reranking wrapper, bank sets, statistics cache and store.

>>> from qdrant_client import QdrantClient
>>> from dbnorm_qdrant.qdrant import DBNormClient, BankSet
>>> banks = BankSet.from_npy("query_bank.npy", "gallery_bank.npy")            # doctest: +SKIP
>>> db = DBNormClient(QdrantClient(":memory:"), banks=banks, params={"method": "dualis"})  # doctest: +SKIP
>>> db.query_points("docs", query=vector, limit=10).points                       # doctest: +SKIP

Modules, in the order a query meets them: :mod:`.config` (settings, a collection's
vector), :mod:`.planning` (from a call to a plan), :mod:`.core` (the shared state and
the pipeline), :mod:`.client_path` / :mod:`.server_path` (the rerank in this process or
inside Qdrant), :mod:`.results` (the returned points), with :mod:`.cache` (statistics in
memory), :mod:`.store` (statistics in the payload), :mod:`.sources` (banks from
collections, scrolling) and :mod:`.client` (the wrappers).
"""

from ..banks import BankSet
from .cache import StatsCache
from .client import AsyncDBNormClient, DBNormClient
from .config import CollectionConfig, Settings, VectorInfo, vector_info
from .results import raw_score
from .sources import point_key
from .store import PrecomputeReport

__all__ = [
    "DBNormClient",
    "AsyncDBNormClient",
    "CollectionConfig",
    "Settings",
    "BankSet",
    "StatsCache",
    "PrecomputeReport",
    "point_key",
    "raw_score",
    "VectorInfo",
    "vector_info",
]
