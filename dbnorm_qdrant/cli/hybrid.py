"""Hybrid search for the demo and the hybrid benchmark: a BM25 sparse branch next to the dense one.

A hybrid collection has a dense vector :data:`DENSE` and a sparse vector :data:`SPARSE`
(``Modifier.IDF``: Qdrant adds the inverse document frequency at query time) holding the
BM25 vector of each item's text (:class:`dbnorm_qdrant.edge.BM25Encoder`, offline). A hybrid
request prefetches both branches and fuses them (``RRF`` or ``DBSF``, :data:`FUSIONS`);
:class:`~dbnorm_qdrant.qdrant.DBNormClient` normalises its dense branch (docs/qdrant.md).

BM25's length normalisation divides by the collection's average document length
``avg_len``; the encoder's default (256 tokens) suits long documents, not the short gallery
texts here (a lemma list has ~2 tokens), so :func:`fitted_bm25` measures it on the texts.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["DENSE", "SPARSE", "FUSIONS", "PREFETCH", "fitted_bm25", "hybrid_config", "hybrid_points", "hybrid_request",
           "fill_collection", "hybrid_lists"]

#: the names of the two vectors of a hybrid collection
DENSE, SPARSE = "dense", "words"

#: the fusions of a hybrid request, by the name the demo and the benchmark print
FUSIONS = ("RRF", "DBSF")


def fitted_bm25(texts: Sequence[str]) -> tuple[Any, float]:
    """A :class:`~dbnorm_qdrant.edge.BM25Encoder` fitted to ``texts`` (:meth:`BM25Encoder.fit`),
    and its ``avg_len``."""
    from ..edge import BM25Encoder  # without the edge extra: an InputError naming it

    enc = BM25Encoder.fit(texts)
    return enc, enc.avg_len


def hybrid_config(dim: int) -> dict[str, Any]:
    """``create_collection`` keywords: dense :data:`DENSE` (Cosine) + sparse :data:`SPARSE` (IDF)."""
    from qdrant_client import models

    return {"vectors_config": {DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            "sparse_vectors_config": {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}}


def hybrid_points(vectors: np.ndarray, sparse: Sequence[Any], payloads: Sequence[dict], start: int = 0) -> list[Any]:
    """``PointStruct``s with ids ``start, start + 1, ...``, both vectors and a payload each."""
    from qdrant_client import models

    return [models.PointStruct(id=start + i, vector={DENSE: v.tolist(), SPARSE: s}, payload=p)
            for i, (v, s, p) in enumerate(zip(vectors, sparse, payloads))]


def hybrid_request(dense: Any, sparse: Any, fusion: str, prefetch: int = 100, limit: int = 10) -> dict[str, Any]:
    """``query_points`` keywords of a hybrid request: a dense and a sparse prefetch of
    ``prefetch`` points each, fused by ``fusion`` (``"RRF"`` or ``"DBSF"``) into ``limit``."""
    from qdrant_client import models

    dense = dense.tolist() if isinstance(dense, np.ndarray) else dense
    return {"prefetch": [models.Prefetch(query=dense, using=DENSE, limit=prefetch),
                         models.Prefetch(query=sparse, using=SPARSE, limit=prefetch)],
            "query": models.FusionQuery(fusion=models.Fusion[fusion.upper()]), "limit": limit}


# -------------------------------------------------------------------- the demo's hybrid runs
#: the limit of each prefetch branch of the demo's hybrid requests
PREFETCH = 100


def fill_collection(client: Any, name: str, vectors: np.ndarray, sparse: Sequence[Any], payloads: Sequence[dict],
                    bar: Any = None, batch: int = 500) -> None:
    """Create hybrid collection ``name`` (:func:`hybrid_config`) and upsert the points, ids from 0."""
    client.create_collection(name, **hybrid_config(vectors.shape[1]))
    for i in range(0, len(vectors), batch):
        j = min(i + batch, len(vectors))
        client.upsert(name, points=hybrid_points(vectors[i:j], sparse[i:j], payloads[i:j], i), wait=True)
        if bar is not None:
            bar.update(j - i)


def hybrid_lists(searcher: Any, collection: str, Q: np.ndarray, sparse: Sequence[Any], fusion: str, *, top_k: int,
                 bar: Any = None) -> list[list[Any]]:
    """The id lists of a hybrid request per query (``searcher``: a plain client, or a
    ``DBNormClient`` that normalises the dense branch)."""
    lists = []
    for q, s in zip(Q, sparse):
        resp = searcher.query_points(collection, **hybrid_request(q, s, fusion, PREFETCH, top_k), with_payload=False)
        lists.append([p.id for p in resp.points])
        if bar is not None:
            bar.update(1)
    return lists
