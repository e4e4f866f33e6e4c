"""A LangChain retriever that reranks Qdrant's results with bank normalisation (DBNorm).

It only translates: LangChain queries become ``DBNormClient.query_points`` calls, and the
reranked points become :class:`~langchain_core.documents.Document` objects. All the
maths lives in :mod:`dbnorm_qdrant`.

The retriever keeps the store's retrieval mode and sends the request
``langchain_qdrant.QdrantVectorStore`` sends for it, through :class:`DBNormClient`:
``dense`` (a nearest query, normalised), ``hybrid`` (a dense and a sparse ``Prefetch`` of
``k`` each under a ``FusionQuery``, RRF unless ``hybrid_fusion`` says otherwise: the dense
branch is normalised, the fusion runs over it as Qdrant runs it) and ``sparse`` (run as
it is). :meth:`DBNormRetriever.rerank` runs the same request restricted to given
documents (what :class:`~langchain_dbnorm_qdrant.DBNormCompressor` does).

>>> from langchain_dbnorm_qdrant import DBNormRetriever
>>> retriever = DBNormRetriever.from_vector_store(store, banks=banks, params={"method": "dualis"})  # doctest: +SKIP
>>> retriever.invoke("a large feline of the savannah")                                            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from dbnorm_qdrant import InputError
from dbnorm_qdrant.core.params import Params, as_params
from dbnorm_qdrant.core.normalizer import BankNormalizer
from dbnorm_qdrant.qdrant import AsyncDBNormClient, BankSet, DBNormClient, point_key, raw_score

__all__ = ["DBNormRetriever", "SCORE_KEY", "RAW_SCORE_KEY"]

SCORE_KEY = "dbnorm_score"
"""``Document.metadata`` key of the normalised score (higher is better)."""
RAW_SCORE_KEY = "raw_score"
"""``Document.metadata`` key of the score Qdrant returned for the plain query."""

# search_kwargs that map onto query_points arguments (the names langchain_qdrant uses)
_SEARCH_KWARGS = {"filter": "query_filter", "search_params": "search_params", "score_threshold": "score_threshold",
                  "consistency": "consistency", "offset": "offset"}
#: the retrieval modes (``langchain_qdrant.RetrievalMode`` values)
_MODES = ("dense", "sparse", "hybrid")


def _mode(mode: Any) -> str:
    """A retrieval mode's value (a ``RetrievalMode`` or its string; ``None``: dense)."""
    return "dense" if mode is None else str(getattr(mode, "value", mode))


class DBNormRetriever(BaseRetriever):
    """Retrieves documents from a Qdrant collection, reranked by bank normalisation.

    Build it with :meth:`from_vector_store` (over a ``langchain_qdrant.QdrantVectorStore``)
    or :meth:`from_client` (a Qdrant client, a collection and an ``Embeddings``). Each
    returned document carries ``metadata["dbnorm_score"]`` (the normalised score),
    ``metadata["raw_score"]`` (Qdrant's score), ``_id`` and ``_collection_name``.

    Configuration is the core's: a :class:`BankNormalizer`, or a :class:`BankSet` with
    :class:`Params` (or a dict of its fields), and ``candidates`` (N, the raw candidates
    reranked per query). ``search_kwargs`` takes ``k`` and the vector store's query options
    (``filter``, ``search_params``, ``score_threshold`` on the normalised score, ...,
    and ``hybrid_fusion``, a ``models.FusionQuery`` for the hybrid mode). Or ``db=``, a ready
    :class:`DBNormClient`: one built with ``query_log=`` (no banks needed: its cold start)
    logs every query the retriever and :class:`~langchain_dbnorm_qdrant.DBNormCompressor`
    send (``ainvoke`` too: ``db`` in a thread, or ``async_db=``, an :class:`AsyncDBNormClient`).

    ``retrieval_mode`` is the store's (:meth:`from_vector_store` takes it from the store):
    ``"dense"``; ``"hybrid"`` (needs ``sparse_embeddings`` and ``sparse_vector_name``: the
    dense branch is normalised and fused with the sparse one as the store fuses them; the
    score is the fusion's, ``raw_score`` is ``None``) or ``"sparse"`` (run as it is: no
    dense vector to normalise; the score is Qdrant's, ``raw_score`` is ``None``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    """The ``QdrantClient`` (wrapped by a :class:`DBNormClient`)."""
    collection_name: str
    embeddings: Embeddings | None = None
    """Embeds the queries for the dense vector (not needed in the sparse mode)."""
    vector_name: str | None = None
    """The dense vector to search (``None``: the collection's unnamed vector)."""
    retrieval_mode: Any = "dense"
    """``"dense"``, ``"hybrid"`` or ``"sparse"`` (or a ``langchain_qdrant.RetrievalMode``)."""
    sparse_embeddings: Any = None
    """A ``langchain_qdrant.SparseEmbeddings`` for the sparse branch (hybrid and sparse modes)."""
    sparse_vector_name: str | None = None
    """The collection's sparse vector (hybrid and sparse modes)."""
    content_payload_key: str = "page_content"
    metadata_payload_key: str = "metadata"
    k: int = 4
    candidates: int | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    async_client: Any = None
    """Optional ``AsyncQdrantClient`` for ``ainvoke`` (else the sync client runs in a thread),
    wrapped with the sync wrapper's configuration."""
    normalizer: Any = None
    banks: Any = None
    params: Any = None
    db: Any = None
    """A ready :class:`DBNormClient` over ``client`` (its configuration, cache and query log)."""
    async_db: Any = None
    """A ready :class:`AsyncDBNormClient` for ``ainvoke`` (its client is ``async_client``): the async
    twin of ``db``, e.g. with its own ``query_log=`` (flush or close it yourself)."""

    _db: DBNormClient = PrivateAttr()
    _adb: AsyncDBNormClient | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._setup()  # after pydantic, so errors reach the caller as they are (not as a ValidationError)

    def _setup(self) -> None:
        if not isinstance(self.client, QdrantClient):
            raise InputError(f"client must be a qdrant_client.QdrantClient, got {type(self.client).__name__}; "
                             "pass the QdrantClient that holds the collection.")
        self.retrieval_mode = mode = _mode(self.retrieval_mode)
        if mode not in _MODES:
            raise InputError(f"retrieval_mode must be one of {list(_MODES)}, got {mode!r}.")
        if mode != "sparse" and (self.embeddings is None or not hasattr(self.embeddings, "embed_query")):
            raise InputError("an Embeddings is required to embed the queries; pass embeddings=.")
        if mode != "dense" and (not hasattr(self.sparse_embeddings, "embed_query") or not self.sparse_vector_name):
            raise InputError(f"retrieval_mode={mode!r} needs the sparse branch: pass sparse_embeddings= (a "
                             "langchain_qdrant.SparseEmbeddings) and sparse_vector_name= (the collection's sparse vector).")
        if not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"k must be a positive integer, got {self.k!r}.")
        if self.async_client is not None and not isinstance(self.async_client, AsyncQdrantClient):
            raise InputError(f"async_client must be a qdrant_client.AsyncQdrantClient, got "
                             f"{type(self.async_client).__name__}; pass one, or leave async_client=None.")
        if self.vector_name == "":
            self.vector_name = None
        if self.normalizer is not None and not isinstance(self.normalizer, BankNormalizer):
            raise InputError(f"normalizer must be a BankNormalizer, got {type(self.normalizer).__name__}; build one "
                             "with dbnorm_qdrant.BankNormalizer(query_bank, gallery_bank, method=...).")
        if self.banks is not None and not isinstance(self.banks, BankSet):
            raise InputError(f"banks must be a dbnorm_qdrant.qdrant.BankSet, got {type(self.banks).__name__}; build "
                             "one with BankSet.from_arrays(query_bank, gallery_bank).")
        if self.params is not None:
            as_params(self.params)  # a Params or a dict of its fields; anything else is an InputError
        unknown = set(self.search_kwargs) - set(_SEARCH_KWARGS) - {"k", "hybrid_fusion"}
        if unknown:
            raise InputError(f"unknown search_kwargs {sorted(unknown)}; use k, hybrid_fusion, "
                             f"{', '.join(_SEARCH_KWARGS)}.")
        if not self.client.collection_exists(self.collection_name):
            raise InputError(f"collection {self.collection_name!r} does not exist; create it (add documents) first.")
        if self.db is not None:
            if not isinstance(self.db, DBNormClient) or self.db.client is not self.client:
                raise InputError("db must be a DBNormClient wrapping the same client.")
            self._db = self.db
        else:
            if self.normalizer is None and self.banks is None:
                raise InputError("no banks configured: pass normalizer=, banks= (with params=) or db=.")
            self._db = DBNormClient(self.client, self.normalizer, banks=self.banks, params=self.params,
                                    candidates=self.candidates)
        adb = self.async_db
        if adb is not None:
            if not isinstance(adb, AsyncDBNormClient) or self.async_client not in (None, adb.client):
                raise InputError("async_db must be an AsyncDBNormClient (wrapping async_client, when both are "
                                 "given).")
            self._adb = adb
        elif self.async_client is not None:
            if self._db.settings.query_log is not None:  # a second, hidden log writer that no one flushes
                raise InputError("db= logs its queries (query_log=): pass async_db=AsyncDBNormClient(async_client, "
                                 "query_log=...) for ainvoke, or drop async_client (ainvoke then runs db in a "
                                 "thread).")
            self._adb = AsyncDBNormClient(self.async_client, settings=self._db.settings)  # db's banks, params, N

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_vector_store(
        cls,
        vector_store: Any,
        *,
        normalizer: BankNormalizer | None = None,
        banks: BankSet | None = None,
        params: Params | Mapping[str, Any] | None = None,
        candidates: int | None = None,
        query_bank: Any = None,
        query_collection: str | None = None,
        gallery_sample: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> "DBNormRetriever":
        """A retriever over a ``langchain_qdrant.QdrantVectorStore``, in the store's retrieval mode
        (dense, hybrid or sparse) with its vector names, sparse embeddings and payload keys.

        ``query_bank=``, ``query_collection=`` and ``gallery_sample=`` build the banks from
        arrays and from the store's own collection (see :meth:`DBNormClient.build_banks`).
        """
        try:
            from langchain_qdrant import QdrantVectorStore, RetrievalMode
        except ImportError as exc:  # pragma: no cover - a dependency of this package
            raise ImportError("from_vector_store needs langchain-qdrant: pip install langchain-qdrant") from exc
        if not isinstance(vector_store, QdrantVectorStore):
            raise InputError(
                f"DBNormRetriever needs a Qdrant-backed store (langchain_qdrant.QdrantVectorStore), got "
                f"{type(vector_store).__name__}; for other stores use a QdrantVectorStore, or from_client(client, "
                "collection_name, embeddings)."
            )
        mode = vector_store.retrieval_mode
        if mode != RetrievalMode.SPARSE and vector_store.embeddings is None:
            raise InputError("the vector store has no dense embedding; create it with embedding=<an Embeddings>.")
        return cls.from_client(
            vector_store.client, vector_store.collection_name, vector_store.embeddings, retrieval_mode=mode.value,
            sparse_embeddings=None if mode == RetrievalMode.DENSE else vector_store.sparse_embeddings,
            sparse_vector_name=vector_store.sparse_vector_name,
            vector_name=vector_store.vector_name or None, content_payload_key=vector_store.content_payload_key,
            metadata_payload_key=vector_store.metadata_payload_key, normalizer=normalizer, banks=banks, params=params,
            candidates=candidates, query_bank=query_bank, query_collection=query_collection,
            gallery_sample=gallery_sample, seed=seed, **kwargs,
        )

    @classmethod
    def from_client(
        cls,
        client: QdrantClient,
        collection_name: str,
        embeddings: Embeddings | None,
        *,
        normalizer: BankNormalizer | None = None,
        banks: BankSet | None = None,
        params: Params | Mapping[str, Any] | None = None,
        candidates: int | None = None,
        query_bank: Any = None,
        query_collection: str | None = None,
        gallery_sample: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> "DBNormRetriever":
        """A retriever over ``collection_name`` of ``client``, embedding queries with ``embeddings``
        (``retrieval_mode=``, ``sparse_embeddings=`` and ``sparse_vector_name=`` for the hybrid
        and sparse modes)."""
        if not isinstance(client, QdrantClient):
            raise InputError(f"client must be a qdrant_client.QdrantClient, got {type(client).__name__}; "
                             "pass the QdrantClient that holds the collection.")
        if embeddings is None and _mode(kwargs.get("retrieval_mode")) != "sparse":
            raise InputError("an Embeddings is required to embed the queries; pass embeddings=.")
        if query_bank is not None or query_collection is not None or gallery_sample is not None:
            if normalizer is not None:
                params = normalizer.params if params is None else params
            banks = DBNormClient(client).build_banks(
                collection_name, banks=banks, normalizer=normalizer, query_bank=query_bank,
                query_collection=query_collection, gallery_sample=gallery_sample,
                using=kwargs.get("vector_name") or None, seed=seed,
            )
            normalizer = None
        return cls(client=client, collection_name=collection_name, embeddings=embeddings, normalizer=normalizer,
                   banks=banks, params=params, candidates=candidates, **kwargs)

    # ------------------------------------------------------------------ retrieval
    @property
    def dbnorm_client(self) -> DBNormClient:
        """The :class:`DBNormClient` the retriever queries (e.g. to ``precompute`` statistics)."""
        return self._db

    def _request(self, dense: Any, sparse: Any, kwargs: dict[str, Any],
                 ids: Sequence[Any] | None = None) -> dict[str, Any]:
        """The ``query_points`` arguments of one query: the request ``QdrantVectorStore``
        sends in this retrieval mode, plus the layer's options. ``ids`` restricts it to
        those points, all of them ranked (``k``, ``candidates`` = their number; no offset, no
        threshold): how :meth:`rerank` orders given documents."""
        opts = {**self.search_kwargs, **kwargs}
        k = opts.pop("k", self.k)
        fusion = opts.pop("hybrid_fusion", None)
        out: dict[str, Any] = {"limit": k, "with_payload": ids is None}
        for key, value in opts.items():
            if key not in _SEARCH_KWARGS:
                raise InputError(f"unknown search option {key!r}; use k, hybrid_fusion, {', '.join(_SEARCH_KWARGS)}.")
            if value is not None:
                out[_SEARCH_KWARGS[key]] = value
        if self.candidates is not None:
            out["candidates"] = self.candidates
        if ids is not None:
            out.update(limit=len(ids), candidates=len(ids))
            out.pop("offset", None)
            out.pop("score_threshold", None)
            user = out.get("query_filter")
            out["query_filter"] = models.Filter(must=[models.HasIdCondition(has_id=list(ids))] + ([user] if user else []))
        if sparse is not None:
            sparse = models.SparseVector(indices=list(sparse.indices), values=list(sparse.values))
        if self.retrieval_mode == "dense":
            out.update(query=dense, using=self.vector_name, with_raw_score=True)
        elif self.retrieval_mode == "sparse":
            out.update(query=sparse, using=self.sparse_vector_name)
        else:  # hybrid: langchain_qdrant's prefetch pair (each of k, the outer filter and params) under a fusion
            branch = dict(filter=out.get("query_filter"), limit=out["limit"], params=out.get("search_params"))
            out.update(prefetch=[models.Prefetch(using=self.vector_name, query=dense, **branch),
                                 models.Prefetch(using=self.sparse_vector_name, query=sparse, **branch)],
                       query=fusion or models.FusionQuery(fusion=models.Fusion.RRF))
        return out

    def _vectors(self, query: str) -> tuple[Any, Any]:
        """The query's dense and sparse vectors (``None`` where the mode has no such branch)."""
        dense = None if self.retrieval_mode == "sparse" else self.embeddings.embed_query(query)
        sparse = None if self.retrieval_mode == "dense" else self.sparse_embeddings.embed_query(query)
        return dense, sparse

    async def _avectors(self, query: str) -> tuple[Any, Any]:
        dense = None if self.retrieval_mode == "sparse" else await self.embeddings.aembed_query(query)
        sparse = None if self.retrieval_mode == "dense" else await self.sparse_embeddings.aembed_query(query)
        return dense, sparse

    def _documents(self, points: list[Any], payload_key: str) -> list[Document]:
        docs = []
        for p in points:
            payload = p.payload or {}
            metadata = dict(payload.get(self.metadata_payload_key) or {})
            metadata.update({"_id": p.id, "_collection_name": self.collection_name,
                             SCORE_KEY: float(p.score), RAW_SCORE_KEY: raw_score(p, payload_key)})
            docs.append(Document(page_content=payload.get(self.content_payload_key, ""), metadata=metadata))
        return docs

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        res = self._db.query_points(self.collection_name, **self._request(*self._vectors(query), kwargs))
        return self._documents(res.points, self._db.payload_key)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self._adb is None:  # no async client: the sync path, off the event loop
            return await run_in_executor(None, self._get_relevant_documents, query,
                                         run_manager=run_manager.get_sync(), **kwargs)
        request = self._request(*await self._avectors(query), kwargs)
        res = await self._adb.query_points(self.collection_name, **request)
        return self._documents(res.points, self._adb.payload_key)

    # ------------------------------------------------------------------ rerank given documents
    def _by_id(self, documents: Sequence[Document]) -> dict[int, Document]:
        """The documents by point key (the first of duplicates), checked to be points of this collection."""
        by_key: dict[int, Document] = {}
        for i, d in enumerate(documents):
            meta = d.metadata or {}
            coll = meta.get("_collection_name", self.collection_name)
            if "_id" not in meta or coll != self.collection_name:
                raise InputError(
                    f"documents[{i}] is not from collection {self.collection_name!r} (metadata _id "
                    f"{meta.get('_id')!r}, _collection_name {coll!r}); rerank documents retrieved from this "
                    "collection (langchain_qdrant.QdrantVectorStore sets both keys)."
                )
            try:
                by_key.setdefault(point_key(meta["_id"]), d)
            except (ValueError, TypeError, AttributeError):
                raise InputError(f"documents[{i}] has metadata _id {meta['_id']!r}, not a Qdrant point id (an "
                                 "unsigned integer or a UUID).") from None
        return by_key

    @staticmethod
    def _missing(by_key: dict[int, Document], points: list[Any]) -> list[Any]:
        """The ids of the documents the rerank did not return."""
        found = {point_key(p.id) for p in points}
        return [d.metadata["_id"] for k, d in by_key.items() if k not in found]

    def _reranked(self, by_key: dict[int, Document], points: list[Any], payload_key: str,
                  quarantined: set[Any] = frozenset()) -> list[Document]:
        """The reranked documents; a document whose point an audit quarantined is left out
        (the wrapper does not serve it); one that is no point of the collection is an error."""
        gone = {point_key(i) for i in quarantined}
        missing = [i for i in self._missing(by_key, points) if point_key(i) not in gone]
        if missing:
            raise InputError(f"{len(missing)} document(s) are not points of collection {self.collection_name!r} "
                             f"(e.g. {missing[:3]}); rerank only documents retrieved from this collection.")
        out = []
        for p in points:
            d = by_key[point_key(p.id)]
            meta = {**d.metadata, SCORE_KEY: float(p.score), RAW_SCORE_KEY: raw_score(p, payload_key)}
            out.append(Document(page_content=d.page_content, metadata=meta, id=d.id))
        return out

    def rerank(self, documents: Sequence[Document], query: str, **kwargs: Any) -> list[Document]:
        """``documents`` (retrieved from this collection, by any retriever) in the order this
        retriever gives them for ``query``: its own request, restricted to their points.

        Returns copies (the caller's documents are left as they were) with the normalised
        (in the hybrid mode: fused) score in ``metadata["dbnorm_score"]`` and Qdrant's in
        ``metadata["raw_score"]``. ``kwargs``: per-call search options (``filter``, ...).
        """
        by_key = self._by_id(documents)
        if not by_key:
            return []
        ids = [d.metadata["_id"] for d in by_key.values()]
        res = self._db.query_points(self.collection_name, **self._request(*self._vectors(query), kwargs, ids))
        missing = self._missing(by_key, res.points)
        skip = self._db.quarantined(self.collection_name, missing) if missing else set()
        return self._reranked(by_key, res.points, self._db.payload_key, skip)

    async def arerank(self, documents: Sequence[Document], query: str, **kwargs: Any) -> list[Document]:
        """:meth:`rerank` on the async client (else the sync one, off the event loop)."""
        if self._adb is None:
            return await run_in_executor(None, self.rerank, documents, query, **kwargs)
        by_key = self._by_id(documents)
        if not by_key:
            return []
        ids = [d.metadata["_id"] for d in by_key.values()]
        res = await self._adb.query_points(self.collection_name, **self._request(*await self._avectors(query),
                                                                                kwargs, ids))
        missing = self._missing(by_key, res.points)
        skip = await self._adb.quarantined(self.collection_name, missing) if missing else set()
        return self._reranked(by_key, res.points, self._adb.payload_key, skip)
