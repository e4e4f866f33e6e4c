"""LangChain integration of dbnorm-qdrant: a retriever that reranks Qdrant results with bank normalisation."""

from .retrievers import RAW_SCORE_KEY, SCORE_KEY, DBNormRetriever

__all__ = ["DBNormRetriever", "SCORE_KEY", "RAW_SCORE_KEY"]
