"""LlamaIndex integration of dbnorm-qdrant: a retriever over a Qdrant-backed VectorStoreIndex
that reranks Qdrant's candidates with bank normalisation."""

from llama_index.retrievers.dbnorm_qdrant.base import DBNormRetriever

__all__ = ["DBNormRetriever"]
