"""Fixtures of the Qdrant-layer tests: clients (local mode always, a server when reachable) and data.

Tests that take ``qclient`` run three times: on local-mode Qdrant, on Qdrant's own engine in
process (``edge``: :class:`dbnorm_qdrant.edge.EdgeClient` over a temporary folder; skipped
with the reason when ``qdrant-edge-py`` is not installed), and (marked ``server``) on a real
Qdrant server when one is reachable (``QDRANT_URL``, or Docker for testcontainers); without
one the server third skips with the reason. ``-m "not server"`` leaves it out.
"""

from __future__ import annotations

import importlib.util
import os
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from dbnorm_qdrant.core.centering import unit_rows

NO_SERVER = "no Qdrant server: set QDRANT_URL or run Docker for testcontainers"
NO_EDGE = 'qdrant-edge-py is not installed: pip install "dbnorm-qdrant[edge]" (Python >= 3.10)'


def _server_url() -> str | None:
    url = os.environ.get("QDRANT_URL")
    if url:
        return url
    try:
        import docker  # noqa: F401  (testcontainers needs it)
        from testcontainers.community.qdrant import QdrantContainer  # noqa: F401

        docker.from_env().ping()
    except Exception:
        return None
    return "testcontainers"


@pytest.fixture(scope="session")
def server_client():
    url = _server_url()
    if url is None:
        pytest.skip(NO_SERVER)
    if url == "testcontainers":
        from testcontainers.community.qdrant import QdrantContainer

        container = QdrantContainer()
        try:
            container.start()
        except Exception as exc:  # Docker answers but cannot pull or start the image (no network, ...)
            pytest.skip(f"{NO_SERVER} (Docker is reachable but the Qdrant container did not start: {exc})")
        try:
            yield container.get_client()
        finally:
            container.stop()
        return
    client = QdrantClient(url=url)
    try:
        client.get_collections()
    except Exception as exc:
        pytest.skip(f"{NO_SERVER} (QDRANT_URL={url} is not reachable: {exc})")
    yield client


@pytest.fixture(scope="session")
def edge_client(tmp_path_factory):
    """An EdgeClient (Qdrant Edge, the engine in process) over a temporary folder."""
    if importlib.util.find_spec("qdrant_edge") is None:
        pytest.skip(NO_EDGE)
    from dbnorm_qdrant.edge import EdgeClient

    client = EdgeClient(tmp_path_factory.mktemp("edge"))
    yield client
    client.close()


@pytest.fixture(scope="session", params=["local", "edge", pytest.param("server", marks=pytest.mark.server)])
def qclient(request):
    """A client: local mode, Qdrant Edge (skipped when not installed), or a real server
    (skipped with a reason when none)."""
    if request.param == "local":
        return QdrantClient(":memory:")
    if request.param == "edge":
        return request.getfixturevalue("edge_client")
    return request.getfixturevalue("server_client")


@pytest.fixture
def cname():
    """A fresh collection name (the server fixture is shared by the whole session)."""
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def small():
    """A small synthetic problem: gallery 400 x 16 (unit rows), 30 queries, banks 200 / 150."""
    rng = np.random.default_rng(0)
    f = lambda n: unit_rows(rng.normal(size=(n, 16))).astype(np.float32)  # noqa: E731
    return {"G": f(400), "Q": f(30), "QB": f(200), "GB": f(150)}


@pytest.fixture(scope="module")
def sample_collection(sample, qclient):
    """The shipped sample's test gallery (1,500 x 384, Cosine) in a collection of ``qclient``
    (local mode, or a server); payload ``{"i": i}``, point id ``i``."""
    name = f"wn_{uuid.uuid4().hex[:8]}"
    G = sample["G"]
    qclient.create_collection(name, vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    qclient.upload_collection(name, vectors=G, ids=list(range(len(G))), payload=[{"i": i} for i in range(len(G))],
                              wait=True)
    yield qclient, name
    qclient.delete_collection(name)
