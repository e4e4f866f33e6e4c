"""NeighborRetr's uniform (Sinkhorn) normaliser: streaming solver, statistics, Qdrant ranking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from dbnorm_qdrant import BankNormalizer, InputError, Params, normalize
from dbnorm_qdrant.core.methods import score, stats_from_sims
from dbnorm_qdrant.core.sinkhorn import column_potentials, sinkhorn_sims, sinkhorn_vectors
from dbnorm_qdrant.core.stats import GalleryStats


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
