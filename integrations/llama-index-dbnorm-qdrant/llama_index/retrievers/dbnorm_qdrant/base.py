"""LlamaIndex retriever over a Qdrant-backed ``VectorStoreIndex``, reranked with DBNorm.

One :meth:`DBNormClient.query_points` per query: Qdrant's top-N candidates, reranked by the
core, the top ``similarity_top_k`` returned as nodes (parsed by the store itself). In
``vector_store_query_mode="hybrid"`` (or ``"sparse"``) the store's own query runs, on a copy
of the store whose client is the :class:`DBNormClient`: its dense request is normalised,
its sparse one runs as it is, and the store fuses them with its ``hybrid_fusion_fn``.
"""

from __future__ import annotations

import asyncio
from typing import Any, List, Mapping, Optional

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import MetadataFilters, VectorStoreQuery, VectorStoreQueryMode

from dbnorm_qdrant import InputError
from dbnorm_qdrant.core.methods import Params
from dbnorm_qdrant.core.normalizer import BankNormalizer
from dbnorm_qdrant.qdrant import AsyncDBNormClient, BankSet, DBNormClient, raw_score
from llama_index.postprocessor.dbnorm_qdrant.base import (
    aquery_vector,
    check_db,
    qdrant_target,
    query_mode,
    query_vector,
    resolve_config,
    routed_store,
    store_query,
    with_scores,
)

__all__ = ["DBNormRetriever"]


class DBNormRetriever(BaseRetriever):
    """Retrieves nodes from a Qdrant-backed ``VectorStoreIndex``, reranked by bank normalisation.

    Parameters
    ----------
    index:
        A ``VectorStoreIndex`` on a ``llama_index.vector_stores.qdrant.QdrantVectorStore``
        (or the store itself, with ``embed_model=``).
    similarity_top_k:
        Nodes returned per query.
    candidates:
        N, the raw candidates reranked per query (default: the core's, ``max(4 * k, 100)``).
    normalizer, banks, params:
        The core's configuration: a :class:`BankNormalizer`, or a :class:`BankSet` and
        :class:`Params` (or a dict of its fields).
    query_bank, query_collection, gallery_sample, seed:
        Build the banks from an array, a collection of logged queries, and a seeded sample
        of ``gallery_sample`` points of the store's own collection.
    filters, qdrant_filters:
        LlamaIndex ``MetadataFilters`` or a Qdrant ``Filter``, applied to the candidates.
    embed_model:
        Embeds queries that arrive without an embedding (default: the index's).
    db:
        A ready :class:`DBNormClient` over the store's client (its configuration and cache).
    vector_store_query_mode, alpha, sparse_top_k, hybrid_top_k:
        As for ``index.as_retriever``: ``"default"`` (the dense query, normalised), ``"hybrid"``
        (the store's hybrid search, ``enable_hybrid=True``: its dense request normalised,
        fused with the sparse one by the store's ``hybrid_fusion_fn`` weighted by ``alpha``)
        or ``"sparse"`` (the store's sparse query, as it is).

    Each node's ``score`` is the normalised score (hybrid: the fused one);
    ``metadata["dbnorm_score"]`` and ``metadata["raw_score"]`` hold both (excluded from the
    LLM and embedding text; ``raw_score`` is ``None`` in the hybrid and sparse modes).
    """

    def __init__(
        self,
        index: Any,
        *,
        similarity_top_k: int = 4,
        candidates: int | None = None,
        normalizer: BankNormalizer | None = None,
        banks: BankSet | None = None,
        params: Params | Mapping[str, Any] | None = None,
        query_bank: Any = None,
        query_collection: str | None = None,
        gallery_sample: int | None = None,
        seed: int = 0,
        filters: MetadataFilters | None = None,
        qdrant_filters: Any = None,
        embed_model: Any = None,
        db: DBNormClient | None = None,
        vector_store_query_mode: str | VectorStoreQueryMode = "default",
        alpha: float | None = None,
        sparse_top_k: int | None = None,
        hybrid_top_k: int | None = None,
        callback_manager: Optional[CallbackManager] = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(similarity_top_k, int) or similarity_top_k < 1:
            raise InputError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}.")
        if filters is not None and qdrant_filters is not None:
            raise InputError("pass filters= (MetadataFilters) or qdrant_filters= (a Qdrant Filter), not both.")
        self._target = t = qdrant_target(index, embed_model=embed_model)
        self._similarity_top_k = similarity_top_k
        self._candidates = candidates
        self._adb = None
        if db is not None:
            self._db = check_db(db, t)
        else:
            cfg = resolve_config(t, normalizer=normalizer, banks=banks, params=params, query_bank=query_bank,
                                 query_collection=query_collection, gallery_sample=gallery_sample, seed=seed)
            self._db = DBNormClient(t.client, candidates=candidates, **cfg)
            if t.aclient is not None:  # the async path: the store's async client, the same (built) banks
                self._adb = AsyncDBNormClient(t.aclient, candidates=candidates, **cfg)
        self._filter = (qdrant_filters if filters is None
                        else t.store._build_query_filter(VectorStoreQuery(filters=filters)))
        self._mode = query_mode(t, vector_store_query_mode)
        self._hybrid = dict(alpha=alpha, sparse_top_k=sparse_top_k, hybrid_top_k=hybrid_top_k)
        self._store = None if self._mode == "default" else routed_store(t, self._db, self._adb)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def dbnorm_client(self) -> DBNormClient:
        """The :class:`DBNormClient` the retriever queries (e.g. to ``precompute`` statistics)."""
        return self._db

    def _kwargs(self, vector: list[float]) -> dict[str, Any]:
        kw: dict[str, Any] = dict(query=vector, using=self._target.using, limit=self._similarity_top_k,
                                  query_filter=self._filter, with_payload=True, with_raw_score=True)
        if self._candidates is not None:
            kw["candidates"] = self._candidates
        return kw

    def _nodes(self, points: list[Any]) -> List[NodeWithScore]:
        key = self._db.payload_key
        raws = [raw_score(p, key) for p in points]
        for p in points:  # the layer's key out of the payload before the store parses it (our own objects)
            if p.payload and key in p.payload:
                p.payload = {k: v for k, v in p.payload.items() if k != key}
        parsed = self._target.store.parse_to_query_result(points)
        return [with_scores(node, p.score, r) for node, p, r in zip(parsed.nodes, points, raws)]

    def _store_query(self, query_bundle: QueryBundle, vector: list[float]) -> VectorStoreQuery:
        return store_query(vector, query_bundle.query_str, self._mode, self._similarity_top_k, **self._hybrid)

    @staticmethod
    def _fused(res: Any) -> List[NodeWithScore]:
        return [with_scores(n, s, None) for n, s in zip(res.nodes or [], res.similarities or [])]

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        vector = query_vector(query_bundle, self._target.embed_model)
        query_bundle.embedding = vector  # as VectorIndexRetriever does: later postprocessors reuse it
        if self._store is not None:
            return self._fused(self._store.query(self._store_query(query_bundle, vector), qdrant_filters=self._filter))
        res = self._db.query_points(self._target.collection_name, **self._kwargs(vector))
        return self._nodes(res.points)

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        vector = await aquery_vector(query_bundle, self._target.embed_model)
        query_bundle.embedding = vector
        if self._store is not None:
            q = self._store_query(query_bundle, vector)
            if self._adb is not None:
                return self._fused(await self._store.aquery(q, qdrant_filters=self._filter))
            return self._fused(await asyncio.to_thread(self._store.query, q, qdrant_filters=self._filter))
        if self._adb is not None:
            res = await self._adb.query_points(self._target.collection_name, **self._kwargs(vector))
        else:  # no async client: the sync client, off the event loop
            res = await asyncio.to_thread(self._db.query_points, self._target.collection_name, **self._kwargs(vector))
        return self._nodes(res.points)
