"""LlamaIndex integration of dbnorm-qdrant: a node postprocessor that reranks nodes from a
Qdrant-backed retriever with bank normalisation (the retriever lives in
``llama_index.retrievers.dbnorm_qdrant``)."""

from llama_index.postprocessor.dbnorm_qdrant.base import RAW_SCORE_KEY, SCORE_KEY, DBNormPostprocessor

__all__ = ["DBNormPostprocessor", "SCORE_KEY", "RAW_SCORE_KEY"]
