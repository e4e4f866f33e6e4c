"""A LangChain retriever that reranks Qdrant's results with bank normalisation (DBNorm).

It only translates: LangChain queries become ``DBNormClient.query_points`` calls, and the
reranked points become :class:`~langchain_core.documents.Document` objects. All the
maths lives in :mod:`dbnorm_qdrant`.

>>> from langchain_dbnorm_qdrant import DBNormRetriever
>>> retriever = DBNormRetriever.from_vector_store(store, banks=banks, params={"method": "dualis"})  # doctest: +SKIP
>>> retriever.invoke("a large feline of the savannah")                                            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr
from qdrant_client import AsyncQdrantClient, QdrantClient

from dbnorm_qdrant import InputError
from dbnorm_qdrant.core.params import Params, as_params
from dbnorm_qdrant.core.normalizer import BankNormalizer
from dbnorm_qdrant.qdrant import AsyncDBNormClient, BankSet, DBNormClient, raw_score

__all__ = ["DBNormRetriever", "SCORE_KEY", "RAW_SCORE_KEY"]

SCORE_KEY = "dbnorm_score"
"""``Document.metadata`` key of the normalised score (higher is better)."""
RAW_SCORE_KEY = "raw_score"
"""``Document.metadata`` key of the score Qdrant returned for the plain query."""

# search_kwargs that map onto query_points arguments (the names langchain_qdrant uses)
_SEARCH_KWARGS = {"filter": "query_filter", "search_params": "search_params", "score_threshold": "score_threshold",
                  "consistency": "consistency", "offset": "offset"}


class DBNormRetriever(BaseRetriever):
    """Retrieves documents from a Qdrant collection, reranked by bank normalisation.

    Build it with :meth:`from_vector_store` (over a ``langchain_qdrant.QdrantVectorStore``)
    or :meth:`from_client` (a Qdrant client, a collection and an ``Embeddings``). Each
    returned document carries ``metadata["dbnorm_score"]`` (the normalised score),
    ``metadata["raw_score"]`` (Qdrant's score), ``_id`` and ``_collection_name``.

    Configuration is the core's: a :class:`BankNormalizer`, or a :class:`BankSet` with
    :class:`Params` (or a dict of its fields), and ``candidates`` (N, the raw candidates
    reranked per query). ``search_kwargs`` takes ``k`` and the vector store's query options
    (``filter``, ``search_params``, ``score_threshold`` on the normalised score, ...).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Any
    """The ``QdrantClient`` (wrapped by a :class:`DBNormClient`)."""
    collection_name: str
    embeddings: Embeddings
    vector_name: str | None = None
    """The dense vector to search (``None``: the collection's unnamed vector)."""
    content_payload_key: str = "page_content"
    metadata_payload_key: str = "metadata"
    k: int = 4
    candidates: int | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    async_client: Any = None
    """Optional ``AsyncQdrantClient`` for ``ainvoke`` (else the sync client runs in a thread)."""
    normalizer: Any = None
    banks: Any = None
    params: Any = None
    db: Any = None
    """A ready :class:`DBNormClient` over ``client`` (its configuration and cache are used)."""

    _db: DBNormClient = PrivateAttr()
    _adb: AsyncDBNormClient | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._setup()  # after pydantic, so errors reach the caller as they are (not as a ValidationError)

    def _setup(self) -> None:
        if not isinstance(self.client, QdrantClient):
            raise InputError(f"client must be a qdrant_client.QdrantClient, got {type(self.client).__name__}; "
                             "pass the QdrantClient that holds the collection.")
        if self.embeddings is None or not hasattr(self.embeddings, "embed_query"):
            raise InputError("an Embeddings is required to embed the queries; pass embeddings=.")
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
        unknown = set(self.search_kwargs) - set(_SEARCH_KWARGS) - {"k"}
        if unknown:
            raise InputError(f"unknown search_kwargs {sorted(unknown)}; use k, {', '.join(_SEARCH_KWARGS)}.")
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
        if self.async_client is not None:
            self._adb = AsyncDBNormClient(self.async_client, self.normalizer, banks=self.banks, params=self.params,
                                          candidates=self.candidates)

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
        """A retriever over a ``langchain_qdrant.QdrantVectorStore`` (dense retrieval mode).

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
        if vector_store.retrieval_mode != RetrievalMode.DENSE:
            raise InputError(
                f"the store uses retrieval_mode={vector_store.retrieval_mode.value!r}; bank normalisation reranks "
                "dense retrieval only (RetrievalMode.DENSE)."
            )
        if vector_store.embeddings is None:
            raise InputError("the vector store has no dense embedding; create it with embedding=<an Embeddings>.")
        return cls.from_client(
            vector_store.client, vector_store.collection_name, vector_store.embeddings,
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
        embeddings: Embeddings,
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
        """A retriever over ``collection_name`` of ``client``, embedding queries with ``embeddings``."""
        if not isinstance(client, QdrantClient):
            raise InputError(f"client must be a qdrant_client.QdrantClient, got {type(client).__name__}; "
                             "pass the QdrantClient that holds the collection.")
        if embeddings is None:
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

    def _query_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        opts = {**self.search_kwargs, **kwargs}
        k = opts.pop("k", self.k)
        out: dict[str, Any] = {"limit": k, "using": self.vector_name, "with_payload": True, "with_raw_score": True}
        for key, value in opts.items():
            if key not in _SEARCH_KWARGS:
                raise InputError(f"unknown search option {key!r}; use k, {', '.join(_SEARCH_KWARGS)}.")
            if value is not None:
                out[_SEARCH_KWARGS[key]] = value
        if self.candidates is not None:
            out["candidates"] = self.candidates
        return out

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
        vector = self.embeddings.embed_query(query)
        res = self._db.query_points(self.collection_name, query=vector, **self._query_kwargs(kwargs))
        return self._documents(res.points, self._db.payload_key)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        if self._adb is None:  # no async client: the sync path, off the event loop
            return await run_in_executor(None, self._get_relevant_documents, query,
                                         run_manager=run_manager.get_sync(), **kwargs)
        vector = await self.embeddings.aembed_query(query)
        res = await self._adb.query_points(self.collection_name, query=vector, **self._query_kwargs(kwargs))
        return self._documents(res.points, self._adb.payload_key)
