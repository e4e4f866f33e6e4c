"""Helpers shared by the Qdrant-layer tests (a uniquely named module: ``conftest`` is not
importable by name when several test folders have one)."""

from __future__ import annotations

import numpy as np
from qdrant_client import models


def make_collection(client, name, G, *, distance=models.Distance.COSINE, named=False, ids=None, payload=None):
    vp = models.VectorParams(size=G.shape[1], distance=distance)
    client.create_collection(name, vectors_config={"text": vp, "other": vp} if named else vp)
    ids = list(range(len(G))) if ids is None else ids
    payload = payload if payload is not None else [{"i": i, "odd": i % 2, "tags": ["a", str(i)], "nested": {"x": i / 3}} for i in range(len(G))]
    vecs = [{"text": g.tolist(), "other": (-g).tolist()} if named else g.tolist() for g in G]
    client.upsert(name, [models.PointStruct(id=i, vector=v, payload=p) for i, v, p in zip(ids, vecs, payload)], wait=True)
    return name


def top_order(S_row, k=5):
    """The first ``k`` item indices of a score row, best first, ties in index order."""
    return [int(i) for i in np.argsort(-S_row, kind="stable")[:k]]
