"""NeighborRetr's residual adapter: identity at init, deterministic training, save/load, the writer."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant import InputError


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# -------------------------------------------------------------------------- adapter
torch = pytest.importorskip("torch", reason="the adapter needs the torch extra: pip install dbnorm-qdrant[torch]")
from dbnorm_qdrant.experimental.adapter import Adapter, AdapterConfig, load_adapter, train_adapter, training_loss  # noqa: E402

rng = np.random.default_rng(3)
_Z = rng.standard_normal((300, 16))
PQ = _unit(_Z + 0.6 * rng.standard_normal((300, 16))).astype(np.float32)
PG = _unit(_Z + 0.6 * rng.standard_normal((300, 16))).astype(np.float32)
CFG = AdapterConfig(hidden=32, epochs=3, batch_size=64, lr=1e-2, num_neighbors=5, sinkhorn_iters=20, memory_size=128, seed=7)


@pytest.fixture(scope="module")
def trained():
    return train_adapter(PQ, PG, CFG)


def test_identity_at_init():
    ad = Adapter(16, AdapterConfig(both_sides=True))
    np.testing.assert_allclose(ad.adapt_queries(PQ), PQ, atol=1e-6)
    np.testing.assert_allclose(ad.adapt_gallery(PG), PG, atol=1e-6)


def test_training_is_deterministic_and_lowers_the_loss(trained):
    again = train_adapter(PQ, PG, CFG)
    assert np.array_equal(trained.adapt_queries(PQ), again.adapt_queries(PQ))
    assert trained.history == again.history
    assert training_loss(trained, PQ, PG) < training_loss(Adapter(16, CFG), PQ, PG)


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_save_load_round_trip(trained, tmp_path, fmt):
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    path = trained.save(tmp_path / "ad", format=fmt)
    back = load_adapter(path)
    assert np.array_equal(back.adapt_queries(PQ), trained.adapt_queries(PQ))
    assert back.config == trained.config


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_load_refuses_pickled_objects(trained, tmp_path):
    path = trained.save(tmp_path / "ad", format="torch")
    torch.save({"query.fc1.weight": _Evil()}, str(path))
    with pytest.raises(InputError, match="refusing to unpickle"):
        load_adapter(path)


def test_qdrant_writer_leaves_originals_untouched():
    qc = pytest.importorskip("qdrant_client")
    from qdrant_client import models

    from dbnorm_qdrant.experimental.adapter import write_adapted_vectors

    ad = train_adapter(PQ[:100], PG[:100], AdapterConfig(hidden=8, epochs=1, batch_size=50, both_sides=True,
                                                        sinkhorn_iters=5, num_neighbors=3, seed=1))
    client = qc.QdrantClient(":memory:")
    vp = models.VectorParams(size=16, distance=models.Distance.COSINE)
    client.create_collection("c", vectors_config={"orig": vp, "adapted": vp})
    client.upsert("c", points=[models.PointStruct(id=i, vector={"orig": PG[i].tolist()}, payload={"i": i})
                               for i in range(30)])
    before = {p.id: (p.vector["orig"], p.payload) for p in client.scroll("c", limit=100, with_vectors=True)[0]}
    assert write_adapted_vectors(client, "c", ad, using="orig", batch_size=7, progress=False) == 30
    assert write_adapted_vectors(client, "c", ad, using="orig", progress=False) == 0  # resumable: nothing left
    pts = client.scroll("c", limit=100, with_vectors=True)[0]
    want = ad.adapt_gallery(PG[:30])
    for p in pts:
        assert p.vector["orig"] == before[p.id][0] and p.payload == before[p.id][1]
        np.testing.assert_allclose(p.vector["adapted"], want[p.id], atol=1e-5)
    # into a new collection: ids and payloads copied, the source untouched
    assert write_adapted_vectors(client, "c", ad, using="orig", target_collection="c2", progress=False) == 30
    assert client.count("c2").count == 30
    assert {p.id: p.payload for p in client.scroll("c2", limit=100)[0]} == {k: v[1] for k, v in before.items()}
    with pytest.raises(InputError, match="does not declare"):
        write_adapted_vectors(client, "c", ad, using="orig", target_vector="nope", progress=False)
    # resuming into the same target is fine; an existing collection of someone else's is refused
    assert write_adapted_vectors(client, "c", ad, using="orig", target_collection="c2", progress=False) == 0
    with pytest.raises(InputError, match="already exists and is not a previous output"):
        write_adapted_vectors(client, "c", ad, using="orig", target_collection="c", progress=False)


def test_qdrant_writer_never_overwrites_an_existing_vector():
    """Points whose target vector already holds data are skipped: that data is the user's, or a previous run's."""
    qc = pytest.importorskip("qdrant_client")
    from qdrant_client import models

    from dbnorm_qdrant.experimental.adapter import write_adapted_vectors

    ad = Adapter(16, AdapterConfig(both_sides=True))
    client = qc.QdrantClient(":memory:")
    vp = models.VectorParams(size=16, distance=models.Distance.COSINE)
    client.create_collection("c", vectors_config={"orig": vp, "adapted": vp})
    mine = PG[50].tolist()
    client.upsert("c", points=[models.PointStruct(id=i, vector={"orig": PG[i].tolist(), **({"adapted": mine} if i < 3 else {})})
                               for i in range(10)])
    assert write_adapted_vectors(client, "c", ad, using="orig", progress=False) == 7
    pts = {p.id: p.vector for p in client.scroll("c", limit=100, with_vectors=True)[0]}
    for i in range(3):
        np.testing.assert_allclose(pts[i]["adapted"], mine, rtol=1e-6)
    with pytest.raises(InputError, match="other than the source"):
        write_adapted_vectors(client, "c", ad, using="orig", target_vector="orig", progress=False)
    with pytest.raises(InputError, match="'nope'"):
        write_adapted_vectors(client, "c", ad, using="nope", progress=False)
