"""Fixtures of the Ray tests: ONE small local Ray cluster for the whole session (2 CPUs, a
500 MB object store, no dashboard), shut down at the end; skipped with the reason when Ray
is not installed. The package's Ray entry points use the running Ray as it is."""

from __future__ import annotations

import importlib.util
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

NO_RAY = "Ray is not installed: pip install 'dbnorm-qdrant[ray]'"
NO_EDGE = 'qdrant-edge-py is not installed: pip install "dbnorm-qdrant[edge]"'


@pytest.fixture(scope="session")
def ray_cluster():
    if importlib.util.find_spec("ray") is None:
        pytest.skip(NO_RAY)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=500 * 1024 * 1024)
    yield ray
    ray.shutdown()


def _make_collection(client, G: np.ndarray, ids=None) -> str:
    name = f"s_{uuid.uuid4().hex[:8]}"
    ids = list(range(len(G))) if ids is None else list(ids)
    client.create_collection(name, vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    client.upload_collection(name, vectors=G, ids=ids, payload=[{"i": int(i)} for i in ids], wait=True)
    return name


@pytest.fixture(scope="session")
def make_collection():
    """``make_collection(client, G, ids=None)``: a Cosine collection of ``G`` (point ids ``ids``,
    default 0..n-1, payload ``{"i": id}``); returns its name."""
    return _make_collection


@pytest.fixture(params=["local", "edge"])
def driver_client(request, tmp_path):
    """A single-process Qdrant the Ray workers cannot open: local mode, or Qdrant Edge."""
    if request.param == "local":
        c = QdrantClient(":memory:")
    else:
        if importlib.util.find_spec("qdrant_edge") is None:
            pytest.skip(NO_EDGE)
        from dbnorm_qdrant.edge import EdgeClient

        c = EdgeClient(tmp_path / "edge")
    yield c
    c.close()
