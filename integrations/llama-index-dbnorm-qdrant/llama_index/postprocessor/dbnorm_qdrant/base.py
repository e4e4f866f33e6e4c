"""LlamaIndex node postprocessor that reranks nodes from a Qdrant-backed retriever with DBNorm.

It only translates: the nodes' ids become a Qdrant ``HasIdCondition`` over the same
collection, :class:`~dbnorm_qdrant.qdrant.DBNormClient` fetches their raw scores and
statistics (vectors by id, batched, computed once and cached), reranks them, and the
nodes come back in the new order with the normalised score. All the maths lives in
:mod:`dbnorm_qdrant`.

Hybrid search (``QdrantVectorStore(enable_hybrid=True, ...)`` queried in
``vector_store_query_mode="hybrid"``) is the store's own: it sends a dense and a sparse
``QueryRequest`` in one ``query_batch_points`` and fuses the two results on the client
with its ``hybrid_fusion_fn`` (``relative_score_fusion`` by default, weighted by
``alpha``). The adapters run that very code on a copy of the store whose client is the
:class:`DBNormClient` (:func:`routed_store`): the dense request comes back normalised,
the sparse one as it is, and the store fuses them as it always does.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, List, Mapping, Optional

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
from qdrant_client import QdrantClient, models

from dbnorm_qdrant import InputError
from dbnorm_qdrant.core.params import Params, as_params
from dbnorm_qdrant.core.normalizer import BankNormalizer
from dbnorm_qdrant.qdrant import BankSet, DBNormClient, raw_score, vector_info

__all__ = ["DBNormPostprocessor", "QdrantTarget", "qdrant_target", "routed_store", "query_mode", "store_query",
           "SCORE_KEY", "RAW_SCORE_KEY"]

SCORE_KEY = "dbnorm_score"
"""Node metadata key of the normalised score (hidden from the LLM and the embedder)."""
RAW_SCORE_KEY = "raw_score"
"""Node metadata key of Qdrant's score for the plain query (hidden from the LLM and the embedder)."""


class QdrantTarget:
    """What the adapters need from a LlamaIndex Qdrant store: clients, collection, vector name."""

    def __init__(self, client: QdrantClient, collection_name: str, using: str | None, store: Any = None,
                 aclient: Any = None, embed_model: Any = None) -> None:
        self.client, self.collection_name, self.using = client, collection_name, using or None
        self.store, self.aclient, self.embed_model = store, aclient, embed_model


def _dense_vector(client: QdrantClient, store: Any) -> str | None:
    """The collection's dense vector the store writes: ``None`` for the unnamed one (what the
    store creates without hybrid search, whatever its ``dense_vector_name`` says)."""
    desc = client.get_collection(store.collection_name)
    vectors = desc.config.params.vectors
    name = store.dense_vector_name if isinstance(vectors, dict) and store.dense_vector_name in vectors else None
    try:
        return vector_info(desc, store.collection_name, name).using
    except InputError as exc:
        raise InputError(f"{exc} (LlamaIndex: create the store with dense_vector_name= one of them)") from None


def qdrant_target(obj: Any, *, embed_model: Any = None) -> QdrantTarget:
    """The Qdrant collection behind a ``VectorStoreIndex`` or a LlamaIndex ``QdrantVectorStore``."""
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    index_embed = None
    store = obj
    if hasattr(obj, "vector_store") and not isinstance(obj, QdrantVectorStore):  # an index
        store = obj.vector_store
        index_embed = getattr(obj, "_embed_model", None)
    if not isinstance(store, QdrantVectorStore):
        raise InputError(
            f"DBNorm needs a Qdrant-backed index or store (llama_index.vector_stores.qdrant.QdrantVectorStore), "
            f"got {type(store).__name__}; build the VectorStoreIndex on a QdrantVectorStore."
        )
    client = store.client
    if client is None:
        raise InputError("the QdrantVectorStore has no synchronous client; create it with client=QdrantClient(...).")
    if not client.collection_exists(store.collection_name):
        raise InputError(
            f"collection {store.collection_name!r} does not exist: the store is empty (add nodes to the index first)."
        )
    return QdrantTarget(client, store.collection_name, _dense_vector(client, store), store=store,
                        aclient=getattr(store, "_aclient", None), embed_model=embed_model or index_embed)


def resolve_config(
    target: QdrantTarget,
    *,
    normalizer: BankNormalizer | None,
    banks: BankSet | None,
    params: Params | Mapping[str, Any] | None,
    query_bank: Any = None,
    query_collection: str | None = None,
    gallery_sample: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Checked ``DBNormClient`` arguments (``normalizer``, ``banks``, ``params``), with banks
    built from the collections when asked."""
    if normalizer is not None and not isinstance(normalizer, BankNormalizer):
        raise InputError(f"normalizer must be a BankNormalizer, got {type(normalizer).__name__}; build one with "
                         "dbnorm_qdrant.BankNormalizer(query_bank, gallery_bank, method=...).")
    if banks is not None and not isinstance(banks, BankSet):
        raise InputError(f"banks must be a dbnorm_qdrant.qdrant.BankSet, got {type(banks).__name__}; build one "
                         "with BankSet.from_arrays(query_bank, gallery_bank).")
    if params is not None:
        params = as_params(params)  # a Params or a dict of its fields; anything else is an InputError
    if query_bank is not None or query_collection is not None or gallery_sample is not None:
        if normalizer is not None:
            params = normalizer.params if params is None else params
        banks = DBNormClient(target.client).build_banks(
            target.collection_name, banks=banks, normalizer=normalizer, query_bank=query_bank,
            query_collection=query_collection, gallery_sample=gallery_sample, using=target.using, seed=seed,
        )
        normalizer = None
    if normalizer is None and banks is None:
        raise InputError("no banks configured: pass normalizer=, banks= (with params=), query_bank= or db=.")
    return dict(normalizer=normalizer, banks=banks, params=params)


def query_mode(target: QdrantTarget, mode: Any, allowed: tuple[str, ...] = ("default", "hybrid", "sparse")) -> str:
    """A ``vector_store_query_mode`` (a ``VectorStoreQueryMode`` or its value) the adapters run:
    ``"default"`` (the dense query, normalised), ``"hybrid"`` (the store's hybrid search, its
    dense branch normalised) or ``"sparse"`` (the store's sparse query, as it is)."""
    value = str(getattr(mode, "value", mode))
    if value not in allowed:
        raise InputError(f"vector_store_query_mode must be one of {list(allowed)}, got {value!r}.")
    if value != "default" and not target.store.enable_hybrid:
        raise InputError(f"vector_store_query_mode={value!r} needs a store with a sparse vector: create the "
                         "QdrantVectorStore with enable_hybrid=True (and sparse_doc_fn= / sparse_query_fn=).")
    return value


def routed_store(target: QdrantTarget, db: DBNormClient, adb: Any = None) -> Any:
    """A copy of the LlamaIndex store whose (async) client is the :class:`DBNormClient`: its
    own ``query`` / ``aquery`` (hybrid, sparse) then run with every dense request normalised.
    The user's store is left as it was."""
    store = target.store.model_copy()
    store._client, store._aclient = db, adb
    return store


def store_query(vector: list[float], query_str: str | None, mode: str, top_k: int, *, alpha: float | None = None,
                sparse_top_k: int | None = None, hybrid_top_k: int | None = None,
                node_ids: list[Any] | None = None) -> VectorStoreQuery:
    """The ``VectorStoreQuery`` the adapters send a :func:`routed_store` (``node_ids``: restricted
    to those points, as the store restricts a query to them)."""
    if mode != "default" and query_str is None:
        raise InputError(f"vector_store_query_mode={mode!r} needs the query text for its sparse branch: pass "
                         "a QueryBundle with query_str.")
    return VectorStoreQuery(query_embedding=vector, similarity_top_k=top_k, mode=VectorStoreQueryMode(mode),
                            query_str=query_str, alpha=alpha, sparse_top_k=sparse_top_k, hybrid_top_k=hybrid_top_k,
                            node_ids=node_ids)


def check_db(db: Any, target: QdrantTarget) -> DBNormClient:
    if not isinstance(db, DBNormClient) or db.client is not target.client:
        raise InputError("db must be a DBNormClient wrapping the store's client.")
    return db


def point_id(node_id: str) -> int | str:
    """A LlamaIndex node id as a Qdrant point id (an unsigned integer or a UUID)."""
    s = str(node_id)
    if s.isdigit():
        return int(s)
    try:
        return str(uuid.UUID(s))
    except ValueError:
        raise InputError(
            f"node id {s!r} is not a Qdrant point id (an unsigned integer or a UUID): the nodes must come from "
            "a retriever over the Qdrant collection this postprocessor reranks."
        ) from None


def query_vector(query_bundle: Optional[QueryBundle], embed_model: Any) -> list[float]:
    """The query's vector: ``QueryBundle.embedding``, else embedded with ``embed_model``."""
    if query_bundle is None:
        raise InputError("DBNorm reranking needs the query: pass query_bundle= (or query_str=).")
    if query_bundle.embedding is not None:
        return list(query_bundle.embedding)
    if embed_model is None:
        raise InputError(
            "the query has no embedding (QueryBundle.embedding is None) and no embed_model was given; pass "
            "embed_model= (the model that embedded the collection) or a QueryBundle with its embedding."
        )
    return embed_model.get_agg_embedding_from_queries(query_bundle.embedding_strs)


async def aquery_vector(query_bundle: Optional[QueryBundle], embed_model: Any) -> list[float]:
    if query_bundle is not None and query_bundle.embedding is None and embed_model is not None:
        return await embed_model.aget_agg_embedding_from_queries(query_bundle.embedding_strs)
    return query_vector(query_bundle, embed_model)


def with_scores(node: Any, score: float, raw: float | None) -> NodeWithScore:
    """A copy of ``node`` scored with the normalised ``score``; both scores also in its
    (hidden) metadata. The node given is left as it was (it may be the caller's)."""
    hide = (SCORE_KEY, RAW_SCORE_KEY)
    node = node.model_copy(update={
        "metadata": {**node.metadata, SCORE_KEY: float(score), RAW_SCORE_KEY: raw},
        "excluded_llm_metadata_keys": node.excluded_llm_metadata_keys
        + [k for k in hide if k not in node.excluded_llm_metadata_keys],
        "excluded_embed_metadata_keys": node.excluded_embed_metadata_keys
        + [k for k in hide if k not in node.excluded_embed_metadata_keys],
    })
    return NodeWithScore(node=node, score=float(score))


class DBNormPostprocessor(BaseNodePostprocessor):
    """Reranks nodes from any retriever over a Qdrant collection with bank normalisation.

    Give it the ``VectorStoreIndex`` (or the ``QdrantVectorStore``) the nodes come from and
    the core's configuration (a :class:`BankNormalizer`, or a :class:`BankSet` and
    :class:`Params`; ``gallery_sample=n`` samples the gallery bank from the collection). The
    candidates are the incoming nodes (retrieve N of them, e.g. ``similarity_top_k=100``);
    ``top_n`` keeps the best after the rerank. The query vector is ``QueryBundle.embedding``
    (set by the synchronous vector retrievers) or is embedded with ``embed_model`` (default:
    the index's).

    ``vector_store_query_mode="hybrid"`` (with ``alpha``, as the retriever that produced the
    nodes) reranks as the store's hybrid search ranks, restricted to the given nodes: the
    dense scores normalised, fused with the sparse ones by the store's ``hybrid_fusion_fn``;
    the node's score is the fused one and ``raw_score`` is ``None``.
    """

    top_n: Optional[int] = Field(default=None, description="How many nodes to keep after the rerank (None: all).")

    _target: QdrantTarget = PrivateAttr()
    _db: DBNormClient = PrivateAttr()
    _mode: str = PrivateAttr(default="default")
    _alpha: Optional[float] = PrivateAttr(default=None)
    _store: Any = PrivateAttr(default=None)

    def __init__(
        self,
        index_or_store: Any,
        *,
        normalizer: BankNormalizer | None = None,
        banks: BankSet | None = None,
        params: Params | Mapping[str, Any] | None = None,
        query_bank: Any = None,
        query_collection: str | None = None,
        gallery_sample: int | None = None,
        seed: int = 0,
        top_n: int | None = None,
        embed_model: BaseEmbedding | None = None,
        db: DBNormClient | None = None,
        vector_store_query_mode: str | VectorStoreQueryMode = "default",
        alpha: float | None = None,
        **kwargs: Any,
    ) -> None:
        if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
            raise InputError(f"top_n must be a positive integer or None, got {top_n!r}.")
        super().__init__(top_n=top_n, **kwargs)
        self._target = qdrant_target(index_or_store, embed_model=embed_model)
        if db is not None:
            self._db = check_db(db, self._target)
        else:
            cfg = resolve_config(self._target, normalizer=normalizer, banks=banks, params=params, query_bank=query_bank,
                                 query_collection=query_collection, gallery_sample=gallery_sample, seed=seed)
            self._db = DBNormClient(self._target.client, **cfg)
        # a sparse-only ranking has no dense scores to normalise, and leaves out nodes without shared terms
        self._mode = query_mode(self._target, vector_store_query_mode, ("default", "hybrid"))
        self._alpha = alpha
        if self._mode == "hybrid":
            self._store = routed_store(self._target, self._db)

    @classmethod
    def class_name(cls) -> str:
        return "DBNormPostprocessor"

    @property
    def dbnorm_client(self) -> DBNormClient:
        """The :class:`DBNormClient` that reranks (e.g. to ``precompute`` statistics)."""
        return self._db

    def _ranked(self, ids: list[Any], vector: list[float], query_str: str | None) -> list[tuple[Any, float, Any]]:
        """(point id, score, raw score) of the points ``ids``, all of them, in the order the
        adapter's query ranks them: the dense query normalised, or the store's hybrid search
        over them (:func:`routed_store`)."""
        if self._mode == "default":
            res = self._db.query_points(
                self._target.collection_name, query=vector, using=self._target.using, limit=len(ids),
                candidates=len(ids), query_filter=models.Filter(must=[models.HasIdCondition(has_id=ids)]),
                with_payload=False, with_raw_score=True,
            )
            key = self._db.payload_key
            return [(p.id, p.score, raw_score(p, key)) for p in res.points]
        q = store_query(vector, query_str, self._mode, len(ids), alpha=self._alpha, sparse_top_k=len(ids),
                        hybrid_top_k=len(ids), node_ids=ids)
        res = self._store.query(q)
        return [(point_id(n.node_id), s, None) for n, s in zip(res.nodes or [], res.similarities or [])]

    def _rerank(self, nodes: List[NodeWithScore], vector: list[float], query_str: str | None = None
                ) -> List[NodeWithScore]:
        if not nodes:
            return []
        by_id: dict[Any, NodeWithScore] = {}
        for n in nodes:
            by_id.setdefault(point_id(n.node.node_id), n)
        ids = list(by_id)
        ranked = self._ranked(ids, vector, query_str)
        found = {i for i, _, _ in ranked}
        missing = [i for i in ids if i not in found]
        if missing:  # a node whose point an audit quarantined is left out (the wrapper does not serve it)
            gone = self._db.quarantined(self._target.collection_name, missing)
            missing = [i for i in missing if i not in gone]
        if missing:
            raise InputError(
                f"{len(missing)} node(s) are not points of collection {self._target.collection_name!r} "
                f"(e.g. {missing[:3]}); rerank only nodes retrieved from this collection."
            )
        out = [with_scores(by_id[i].node, score, raw) for i, score, raw in ranked]
        return out if self.top_n is None else out[: self.top_n]

    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if not nodes:
            return []
        return self._rerank(nodes, query_vector(query_bundle, self._target.embed_model), query_bundle.query_str)

    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        if not nodes:
            return []
        vector = await aquery_vector(query_bundle, self._target.embed_model)
        return await asyncio.to_thread(self._rerank, nodes, vector, query_bundle.query_str)
