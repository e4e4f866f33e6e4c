"""Helpers of the framework-adapter tests: WordNet gloss vectors, their texts, the core's result.

The gallery is the first ``NG`` G_test items (local-mode Qdrant costs ~20 ms per reranked query
on 5,000 points; 2,000 keeps the suite short), the queries the first ``NQ`` Q_test items (query
i's match is gallery item i). Point ids are UUIDs derived from the gallery index, identical in
the LangChain and the LlamaIndex collections, so one core run serves both (each test checks on a subset that the
core gives the same on its own store).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from support import WORDNET
NQ, NG, NB = 1000, 2000, 1000
PARAMS = {"method": "dualis", "beta_q": 20.0, "beta_g": 3.0}
N = 100  # candidates
NQ_PP = 200  # queries for the LlamaIndex postprocessor (its input: N parsed nodes per query, ~80 ms each)


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
