"""LangChain integration of dbnorm-qdrant: a retriever that reranks Qdrant results with bank normalisation."""

from .retrievers import RAW_SCORE_KEY, SCORE_KEY, DBNormRetriever, build_banks

__all__ = ["DBNormRetriever", "build_banks", "SCORE_KEY", "RAW_SCORE_KEY"]
