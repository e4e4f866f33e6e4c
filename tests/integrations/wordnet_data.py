"""Helpers of the framework-adapter tests: the shipped WordNet sample's vectors, texts, the core's result.

The gallery is the sample's 1,500 test gallery items (``dbnorm_qdrant/data/demo_wordnet.npz``,
texts in ``demo_wordnet_texts.json``; runs on any clone), the queries its first ``NQ`` test
queries (query i's match is gallery item i), the banks the first ``NB`` bank rows. Point ids
are UUIDs derived from the gallery index, identical in the LangChain and the LlamaIndex
collections, so one core run serves both (each test checks on a subset that the core gives
the same on its own store). Measured with these settings: R@1 plain 0.478, reranked 0.499 on
the 1,000 queries; 0.455 and 0.475 on the first 200.
"""

from __future__ import annotations

import uuid

import numpy as np

NQ, NB = 1000, 1000
PARAMS = {"method": "dualis", "beta_q": 20.0, "beta_g": 3.0}
N = 100  # candidates
NQ_PP = 200  # queries for the LlamaIndex postprocessor (its input: N parsed nodes per query, ~80 ms each)
#: the smallest R@1 gain over plain retrieval the adapters must show (measured: 0.021 and 0.020)
MIN_GAIN = 0.01
#: hybrid tests (dense + a BM25 sparse branch on the gallery texts, dbnorm_qdrant.edge.BM25Encoder): the first
#: NQ_H queries, K_H per branch. Measured on the 1,000 queries (K_H = 10): R@1 plain / normalised hybrid 0.426 /
#: 0.440 with RRF (langchain-qdrant), 0.390 / 0.404 with relative-score fusion, alpha 0.5 (LlamaIndex); the
#: sparse branch is weak here (a gloss against a list of lemmas), so the gain is the dense branch's, diluted.
NQ_H, K_H = 100, 10


def point_uuid(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"wordnet-gloss-{i}"))


def core_top1(client, collection, Q, banks, using=None, n=NQ):
    """The core layer's top-1 ids for the same settings as the adapters."""
    from qdrant_client import models

    from dbnorm_qdrant.qdrant import DBNormClient

    db = DBNormClient(client, banks=banks, params=PARAMS, candidates=N)
    reqs = [models.QueryRequest(query=q.tolist(), using=using, limit=1) for q in Q[:n]]
    return [r.points[0].id for r in db.query_batch_points(collection, reqs)]


def r_at_1(ids, wn) -> float:
    return float(np.mean([a == b for a, b in zip(ids, wn["ids"])]))
