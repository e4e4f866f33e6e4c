"""The rows of a batch rerank, one per query: ``{query, ids, scores}`` against a gallery matrix,
plus ``raw_scores`` through a collection. The one definition, used by the local engine
(``dbnorm-qdrant rerank``) and by the Ray actors (:mod:`.rerank`), so both write the same rows.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.normalizer import BankNormalizer
from ..core.stats import GalleryStats
from ..validation import as_matrix

__all__ = ["matrix_rows", "collection_rows"]


def matrix_rows(nz: BankNormalizer, G: np.ndarray, stats: GalleryStats, qids: Sequence[Any], vecs: np.ndarray, *,
                top_k: int, what: str = "queries") -> list[dict[str, Any]]:
    """The top ``top_k`` gallery rows of each query of a batch (``G``'s row numbers as ids)."""
    Q = as_matrix(np.asarray(vecs, dtype=np.float32), what, ncols=G.shape[1])
    scores, ids = nz.search(Q, G, stats, top_k=min(top_k, len(G)))
    return [{"query": q, "ids": i.tolist(), "scores": v.tolist()} for q, i, v in zip(qids, ids, scores)]


def collection_rows(db: Any, collection: str, qids: Sequence[Any], vecs: np.ndarray, *, top_k: int,
                    using: str | None = None, candidates: int | None = None) -> list[dict[str, Any]]:
    """The reranked top ``top_k`` points of each query of a batch through ``db`` (a
    :class:`~dbnorm_qdrant.qdrant.DBNormClient`): one ``query_batch_points``; point ids,
    normalised scores and raw scores."""
    from qdrant_client import models

    from ..qdrant import raw_score

    kw: dict[str, Any] = {"with_raw_score": True}
    if candidates is not None:
        kw["candidates"] = candidates
    reqs = [models.QueryRequest(query=np.asarray(v, dtype=np.float32).tolist(), limit=top_k, using=using,
                                with_payload=False) for v in vecs]
    resp = db.query_batch_points(collection, reqs, **kw)
    return [{"query": q, "ids": [p.id for p in r.points], "scores": [p.score for p in r.points],
             "raw_scores": [raw_score(p, db.payload_key) for p in r.points]} for q, r in zip(qids, resp)]
