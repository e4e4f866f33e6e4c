"""A LangChain document compressor that reorders a Qdrant retriever's documents with DBNorm.

LangChain's slot for a reranker is a ``BaseDocumentCompressor`` inside a
``ContextualCompressionRetriever`` (where ``CohereRerank`` and ``FlashrankRerank`` sit).
:class:`DBNormCompressor` fills it, so an existing chain over a
``langchain_qdrant.QdrantVectorStore`` gains bank normalisation without being rebuilt::

    from langchain_classic.retrievers import ContextualCompressionRetriever

    compressor = DBNormCompressor.from_vector_store(store, banks=banks, params={"method": "dualis"}, top_n=4)
    chain = ContextualCompressionRetriever(base_compressor=compressor,
                                           base_retriever=store.as_retriever(search_kwargs={"k": 100}))

It reranks the given documents as the LlamaIndex node postprocessor reranks nodes: the
documents' points (``metadata["_id"]``, set by the store) become a ``HasIdCondition``,
and :meth:`DBNormRetriever.rerank` runs the retriever's own request (dense, or the
store's hybrid prefetch + fusion with its dense branch normalised) over exactly them.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict

from dbnorm_qdrant import InputError

from .retrievers import DBNormRetriever

__all__ = ["DBNormCompressor"]


class DBNormCompressor(BaseDocumentCompressor):
    """Reorders documents retrieved from a Qdrant collection by the normalised score.

    ``retriever`` is a :class:`DBNormRetriever` over the collection the documents come
    from (build both at once with :meth:`from_vector_store` / :meth:`from_client`); its
    retrieval mode, configuration and search options apply. ``top_n`` keeps the best
    after the rerank (``None``: all). Each returned document is a copy of the given one
    with ``metadata["dbnorm_score"]`` and ``metadata["raw_score"]`` set.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: DBNormRetriever
    top_n: Optional[int] = None

    def __init__(self, **data: Any) -> None:
        top_n = data.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or top_n < 1):  # as an InputError, not a ValidationError
            raise InputError(f"top_n must be a positive integer or None, got {top_n!r}.")
        if not isinstance(data.get("retriever"), DBNormRetriever):
            raise InputError("retriever must be a DBNormRetriever over the documents' collection; or build both with "
                             "DBNormCompressor.from_vector_store(store, banks=..., params=...).")
        if data["retriever"].retrieval_mode == "sparse":
            raise InputError("the retriever is sparse-only (retrieval_mode='sparse'): there is no dense score to "
                             "normalise; use a store in RetrievalMode.DENSE or HYBRID.")
        super().__init__(**data)

    @classmethod
    def from_vector_store(cls, vector_store: Any, *, top_n: int | None = None, **kwargs: Any) -> "DBNormCompressor":
        """A compressor over a ``langchain_qdrant.QdrantVectorStore`` (``kwargs``: those of
        :meth:`DBNormRetriever.from_vector_store`)."""
        return cls(retriever=DBNormRetriever.from_vector_store(vector_store, **kwargs), top_n=top_n)

    @classmethod
    def from_client(cls, client: Any, collection_name: str, embeddings: Any, *, top_n: int | None = None,
                    **kwargs: Any) -> "DBNormCompressor":
        """A compressor over ``collection_name`` of ``client`` (``kwargs``: those of
        :meth:`DBNormRetriever.from_client`)."""
        return cls(retriever=DBNormRetriever.from_client(client, collection_name, embeddings, **kwargs), top_n=top_n)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """``documents`` in the normalised order for ``query`` (the best ``top_n``)."""
        return self.retriever.rerank(documents, query)[: self.top_n]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        return (await self.retriever.arerank(documents, query))[: self.top_n]
