"""LangChain integration of dbnorm-qdrant: a retriever that reranks Qdrant results with bank
normalisation (dense, or the dense branch of a hybrid search), and a document compressor that
reorders a Qdrant retriever's documents the same way inside a ``ContextualCompressionRetriever``."""

from .compressors import DBNormCompressor
from .retrievers import RAW_SCORE_KEY, SCORE_KEY, DBNormRetriever

__all__ = ["DBNormRetriever", "DBNormCompressor", "SCORE_KEY", "RAW_SCORE_KEY"]
