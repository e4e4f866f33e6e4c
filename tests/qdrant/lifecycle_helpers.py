"""Helpers of the lifecycle tests (``test_lifecycle*.py``): storage, collections, logging and
measuring through a wrapper (a uniquely named module, importable from every test file)."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from dbnorm_qdrant.qdrant import DBNormClient
from dbnorm_qdrant.qdrant.lifecycle import state

#: the storages that persist in a folder (reopen, close-and-reopen tests)
PERSISTENT = ["local-path", "edge-path"]


def open_store(kind: str, path: Path) -> Any:
    """A client over the folder ``path``: local mode on disk, or Qdrant Edge."""
    if kind == "local-path":
        return QdrantClient(path=str(path))
    import pytest

    pytest.importorskip("qdrant_edge", reason='qdrant-edge-py is not installed: pip install "dbnorm-qdrant[edge]"')
    from dbnorm_qdrant.edge import EdgeClient

    return EdgeClient(path)


def names() -> tuple[str, str]:
    """A fresh (collection, query log) pair of names (shared clients live for the session)."""
    tag = uuid.uuid4().hex[:8]
    return f"lc_{tag}", f"lc_{tag}_log"


def load(client: Any, name: str, G: np.ndarray) -> str:
    """``G`` as a Cosine collection: point id ``i``, payload ``{"i": i, "g": i % 50}``."""
    client.create_collection(name, vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    client.upload_collection(name, vectors=G, ids=list(range(len(G))),
                             payload=[{"i": i, "g": i % 50} for i in range(len(G))], wait=True)
    return name


@contextmanager
def logged(client: Any, G: np.ndarray, **options: Any) -> Iterator[tuple[DBNormClient, str, str]]:
    """``(wrapper, collection, log)``: a fresh collection of ``G`` and a wrapper with a query log
    (``options``: the wrapper's); the wrapper's background writer is stopped after."""
    name, log = names()
    load(client, name, G)
    db = DBNormClient(client, query_log=log, **options)
    try:
        yield db, name, log
    finally:
        stop(db)


def log_queries(db: DBNormClient, name: str, X: np.ndarray, batch: int = 250) -> None:
    """Send ``X`` through the wrapper as plain queries (``rerank=False``: logged, quick), then flush."""
    for i in range(0, len(X), batch):
        db.query_batch_points(name, [models.QueryRequest(query=q.tolist(), limit=1) for q in X[i:i + batch]],
                              rerank=False)
    db.flush()


def ranked(db: Any, name: str, Q: np.ndarray, **kwargs: Any) -> tuple[int, list[list[int]], np.ndarray]:
    """R@1 (query ``i`` answers item ``i``), the top-10 ids and their scores of ``Q``."""
    res = db.query_batch_points(name, [models.QueryRequest(query=q.tolist(), limit=10) for q in Q], **kwargs)
    top = [[int(p.id) for p in r.points] for r in res]
    scores = np.asarray([[p.score for p in r.points] for r in res], dtype=np.float64)
    return sum(int(t[0] == i) for i, t in enumerate(top)), top, scores


def stop(*wrappers: DBNormClient) -> None:
    """Stop the background writers of wrappers over a shared client (``close()`` would close it)."""
    for db in wrappers:
        w = getattr(db, "_worker", None)
        if w is not None:
            w.stop()


def log_points(client: Any, log: str) -> dict[int, tuple[np.ndarray, Any]]:
    """``{id: (vector, payload)}`` of every point of a query log collection."""
    out = {}
    offset = None
    while True:
        recs, offset = client.scroll(log, limit=256, offset=offset, with_payload=True, with_vectors=True)
        out.update({int(r.id): (np.asarray(r.vector, dtype=np.float32), r.payload) for r in recs})
        if offset is None:
            return out


def bank_rows(client: Any, log: str, version: int) -> int:
    """How many bank rows of ``version`` the state collection of ``log`` holds."""
    flt = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value="bank")),
                              models.FieldCondition(key="version", match=models.MatchValue(value=version))])
    return client.count(state.state_name(log), count_filter=flt, exact=True).count


def head(client: Any, log: str) -> dict[str, Any]:
    """The payload of the state's head point (``{}`` before any)."""
    got = client.retrieve(state.state_name(log), ids=[state.HEAD], with_payload=True)
    return dict(got[0].payload) if got else {}
