"""The Qdrant layer: a drop-in reranking wrapper, bank sets, statistics cache and store.

>>> from qdrant_client import QdrantClient
>>> from dbnorm_qdrant.qdrant import DBNormClient, BankSet
>>> banks = BankSet.from_npy("query_bank.npy", "gallery_bank.npy")            # doctest: +SKIP
>>> db = DBNormClient(QdrantClient(":memory:"), banks=banks, params={"method": "dualis"})  # doctest: +SKIP
>>> db.query_points("docs", query=vector, limit=10).points                       # doctest: +SKIP
"""

from ._core import CollectionConfig, RerankedPoint
from ..banks import BankSet
from .sources import point_key
from .cache import StatsCache
from .client import AsyncDBNormClient, DBNormClient
from .store import PrecomputeReport

__all__ = [
    "DBNormClient",
    "AsyncDBNormClient",
    "CollectionConfig",
    "BankSet",
    "RerankedPoint",
    "StatsCache",
    "PrecomputeReport",
    "point_key",
]
