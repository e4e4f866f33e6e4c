"""NeighborRetr pieces: the uniform (Sinkhorn) normaliser and the adapter (issue 6)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from dbnorm_qdrant import BankNormalizer, InputError, Params, normalize
from dbnorm_qdrant.methods import score, stats_from_sims
from dbnorm_qdrant.sinkhorn import column_potentials, sinkhorn_sims, sinkhorn_vectors
from dbnorm_qdrant.stats import GalleryStats


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _data(seed=0, nq=25, n=40, m=60, d=8):
    rng = np.random.default_rng(seed)
    Q, G, QB = (_unit(rng.standard_normal((r, d))) for r in (nq, n, m))
    return Q, G, QB


Q, G, QB = _data()
S, SQ = Q @ G.T, QB @ G.T


def _dense(SQ, beta, iters):
    """Textbook log-domain Sinkhorn (column step first, from u = 0), dense."""
    m, n = SQ.shape
    K = beta * SQ
    u = np.zeros(m)
    for i in range(iters):
        v = -np.log(n) - logsumexp(K + u[:, None], axis=0)
        if i < iters - 1:
            u = -np.log(m) - logsumexp(K + v[None, :], axis=1)
    return u, v


# ------------------------------------------------------------------ uniform normaliser
def test_first_half_step_is_inverted_softmax():
    uni = normalize(S, "uniform", query_bank_sims=SQ, k=1, alpha=1.0, beta_q=20.0)
    is_ = normalize(S, "is", query_bank_sims=SQ, beta_q=20.0)
    diff = uni - is_
    np.testing.assert_allclose(diff, np.log(1.0 / S.shape[1]) / 20.0, rtol=0, atol=1e-12)  # a constant shift
    assert np.array_equal(np.argsort(-uni, axis=1, kind="stable"), np.argsort(-is_, axis=1, kind="stable"))


@pytest.mark.parametrize("block_elems", [7, 100, 1 << 22])
def test_streaming_equals_dense_reference(block_elems):
    r = sinkhorn_sims(SQ, 10.0, n_iter=30, tol=0.0, block_elems=block_elems)
    u, v = _dense(SQ, 10.0, 30)
    assert r.iterations == 30
    np.testing.assert_allclose(r.u, u, atol=1e-10)
    np.testing.assert_allclose(r.v, v, atol=1e-10)
    rv = sinkhorn_vectors(QB, G, 10.0, n_iter=30, tol=0.0, block_elems=block_elems)
    np.testing.assert_allclose(rv.v, v, atol=1e-10)


def test_marginals_converge():
    r = sinkhorn_sims(SQ, 20.0, n_iter=500, tol=1e-9)
    assert r.converged and r.iterations < 500
    P = np.exp(20.0 * SQ + r.u[:, None] + r.v[None, :])
    m, n = SQ.shape
    np.testing.assert_allclose(P.sum(axis=0), 1.0 / n, rtol=1e-12)  # column step last: exact
    np.testing.assert_allclose(P.sum(axis=1), 1.0 / m, rtol=1e-8)
    few = sinkhorn_sims(SQ, 20.0, n_iter=3, tol=0.0)
    assert not few.converged and few.error > r.error


def test_half_step_for_new_items_matches_solved_columns():
    r = sinkhorn_sims(SQ, 20.0)
    # an item of the solved gallery gets exactly its potential back
    np.testing.assert_allclose(column_potentials(r.u, 20.0, r.n_ref, S_bank=SQ[:, :7]), r.v[:7], atol=1e-12)
    np.testing.assert_allclose(
        column_potentials(r.u, 20.0, r.n_ref, bank=QB, gallery=G[:7], block_elems=5), r.v[:7], atol=1e-12
    )


def test_bank_normalizer_and_payload_records():
    p = Params(method="uniform")
    assert (p.k, p.alpha, p.beta_q) == (50, 0.5, 20.0) and p.additive
    nz = BankNormalizer(QB, G, method="uniform")  # gallery bank = the gallery: equals the matrix level
    st = nz.gallery_stats(G)
    ref = stats_from_sims(p, SQ)
    np.testing.assert_allclose(st.uniform_v, ref.uniform_v, atol=1e-9)
    np.testing.assert_allclose(nz.scores(Q, G), normalize(S, "uniform", query_bank_sims=SQ), atol=1e-6)
    # page by page = whole (fixed bank potentials), and the statistic travels in records
    pages = GalleryStats.concat([nz.gallery_stats(G[:13], activation=False), nz.gallery_stats(G[13:])])
    np.testing.assert_allclose(pages.uniform_v, st.uniform_v, atol=1e-12)
    back = GalleryStats.from_records(st.records(), fingerprint=nz.fingerprint)
    np.testing.assert_allclose(score(S, back, p), score(S, st, p))
    # the gallery bank is part of the fingerprint
    assert BankNormalizer(QB, G[:-1], method="uniform").fingerprint != nz.fingerprint


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(alpha=1.5), r"\[0, 1\]"),
        (dict(alpha=-0.1), "alpha"),
        (dict(k=0), "k must be"),
        (dict(beta_q=0.0), "beta_q must be positive"),
    ],
)
def test_bad_input(kw, match):
    with pytest.raises(InputError, match=match):
        normalize(S, "uniform", query_bank_sims=SQ, **kw)


def test_bad_input_more():
    with pytest.raises(InputError, match="needs query_bank_sims"):
        normalize(S, "uniform")
    bad = SQ.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        normalize(S, "uniform", query_bank_sims=bad)
    with pytest.raises(InputError, match="gallery_bank"):
        BankNormalizer(QB, method="uniform")
    with pytest.raises(InputError, match="iterations"):
        sinkhorn_sims(SQ, 1.0, n_iter=0)
    with pytest.raises(InputError, match="beta"):
        sinkhorn_sims(SQ, -1.0)


def test_qdrant_client_ranks_like_matrix_level():
    qc = pytest.importorskip("qdrant_client")
    from qdrant_client import models

    from dbnorm_qdrant.qdrant import DBNormClient

    client = qc.QdrantClient(":memory:")
    client.create_collection("g", vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.DOT))
    client.upsert("g", points=[models.PointStruct(id=i, vector=G[i].tolist()) for i in range(len(G))])
    nz = BankNormalizer(QB, G, method="uniform")
    db = DBNormClient(client, nz, mode="client")
    want = normalize(S, "uniform", query_bank_sims=SQ)
    for i in range(5):
        res = db.query_points("g", query=Q[i].tolist(), limit=5, candidates=len(G))
        got = [p.id for p in res.points]
        assert got == list(np.argsort(-want[i], kind="stable")[:5])
        np.testing.assert_allclose([p.score for p in res.points], np.sort(want[i])[::-1][:5], atol=1e-5)
    # uniform is additive: after a precompute the whole rerank runs inside Qdrant (formula query)
    db.precompute("g", progress=False)
    server = DBNormClient(client, nz, mode="server")
    seen = []
    plain_query_points = client.query_points

    def spy(*a, **kw):
        seen.append(type(kw.get("query")).__name__)
        return plain_query_points(*a, **kw)

    client.query_points = spy
    for i in range(5):
        res = server.query_points("g", query=Q[i].tolist(), limit=5, candidates=len(G))
        assert [p.id for p in res.points] == list(np.argsort(-want[i], kind="stable")[:5])
        np.testing.assert_allclose([p.score for p in res.points], np.sort(want[i])[::-1][:5], atol=1e-5)
    assert "FormulaQuery" in seen


# -------------------------------------------------------------------------- adapter
torch = pytest.importorskip("torch")
from dbnorm_qdrant.adapter import Adapter, AdapterConfig, load_adapter, train_adapter, training_loss  # noqa: E402

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

    from dbnorm_qdrant.adapter import write_adapted_vectors

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
