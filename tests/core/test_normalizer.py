"""Vector-level API: statistics from vectors, reranking candidates, search, centring."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant import BankNormalizer, GalleryStats, InputError, normalize
from dbnorm_qdrant.eval.metrics import retrieval_metrics

METHODS = ["none", "is", "dis", "dualis", "dualdis", "csls", "nnn", "centrality"]


@pytest.fixture(scope="module")
def small(wordnet):
    return {k: v[:1500] if k.endswith("test") else v[:4000] for k, v in wordnet.items()}


@pytest.mark.parametrize("method", METHODS)
def test_vector_level_equals_matrix_level(small, method):
    Q, G, QB, GB = small["Q_test"], small["G_test"], small["Q_bank"], small["G_bank"]
    bn = BankNormalizer(QB, GB, method=method)
    got = bn.scores(Q, G)
    ref = normalize(Q @ G.T, method, query_bank_sims=QB @ G.T, gallery_bank_sims=GB @ G.T)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert np.mean(np.argmax(got, 1) == np.argmax(ref, 1)) > 0.999


@pytest.mark.parametrize("method", ["is", "dis", "dualis", "dualdis", "nnn"])
@pytest.mark.parametrize("center", [False, True])
def test_rerank_of_top_candidates_matches_full_scores(small, method, center):
    """Statistics are the only state: reranking raw top-N from stats alone equals the full scores."""
    Q, G, QB, GB = small["Q_test"][:50], small["G_test"], small["Q_bank"], small["G_bank"]
    bn = BankNormalizer(QB, GB, method=method, center=center)
    st = bn.gallery_stats(G)
    full = bn.scores(Q, G, st)
    raw = Q @ G.T
    for i in range(len(Q)):
        cand = np.argsort(-raw[i])[:100]
        got = bn.rerank(Q[i], raw[i, cand], st.take(cand))
        np.testing.assert_allclose(got, full[i, cand], atol=1e-5)


def test_payload_records_roundtrip(small):
    bn = BankNormalizer(small["Q_bank"], small["G_bank"], method="dualdis", center=True)
    st = bn.gallery_stats(small["G_test"][:300])
    back = GalleryStats.from_records(st.records(), fingerprint=bn.fingerprint)
    assert back == st
    other = BankNormalizer(small["Q_bank"], small["G_bank"], method="dualdis", beta_q=25.0)
    assert other.fingerprint != bn.fingerprint
    with pytest.raises(ValueError, match="fingerprint"):
        GalleryStats.from_records(st.records(), fingerprint=other.fingerprint)
    with pytest.raises(InputError, match="fingerprint"):
        other.rerank(small["Q_test"][0], np.zeros(300), st)


def test_pagewise_stats_equal_whole_stats(small):
    bn = BankNormalizer(small["Q_bank"], small["G_bank"], method="dualis")
    G = small["G_test"]
    whole = bn.gallery_stats(G)
    parts = GalleryStats.concat([bn.gallery_stats(G[i : i + 400], activation=False) for i in range(0, len(G), 400)])
    np.testing.assert_allclose(parts.lse_q, whole.lse_q, atol=1e-9)
    np.testing.assert_allclose(parts.lse_g, whole.lse_g, atol=1e-9)


def test_gallery_bank_sampled_from_the_gallery_excludes_self(small):
    G = small["G_test"]
    sample = np.arange(0, len(G), 3)
    bn = BankNormalizer(small["Q_bank"], G[sample], method="dualis", gallery_bank_keys=sample)
    with_keys = bn.gallery_stats(G, keys=np.arange(len(G)))
    without = bn.gallery_stats(G)
    # sampled items lose their self-similarity (1.0, the largest term) from lse_g
    assert np.all(with_keys.lse_g[sample] < without.lse_g[sample] - 1e-3)
    others = np.setdiff1d(np.arange(len(G)), sample)
    np.testing.assert_allclose(with_keys.lse_g[others], without.lse_g[others], atol=1e-9)


def test_search_returns_best_first(small):
    bn = BankNormalizer(small["Q_bank"], small["G_bank"], method="is")
    Q, G = small["Q_test"][:200], small["G_test"]
    idx, val = bn.search(Q, G, top_k=5, batch_size=64)
    full = bn.scores(Q, G)
    assert idx.shape == (200, 5) and np.all(np.diff(val, axis=1) <= 0)
    np.testing.assert_allclose(val[:, 0], full.max(axis=1), atol=1e-9)


def test_centering_rescues_a_narrow_band(wordnet):
    """Cosines squeezed into a narrow band (std < 0.01): IS lowers R@1, centring restores a gain."""
    from dbnorm_qdrant.core.normalizer import unit_rows

    u = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    u /= np.linalg.norm(u)
    squeeze = lambda X: unit_rows(X + 3.0 * u).astype(np.float32)  # noqa: E731
    Q, G = squeeze(wordnet["Q_test"][:2000]), squeeze(wordnet["G_test"][:2000])
    QB, GB = squeeze(wordnet["Q_bank"][:5000]), squeeze(wordnet["G_bank"][:5000])
    assert np.std(Q @ G.T) < 0.01
    raw = retrieval_metrics(Q @ G.T)["R1"]
    plain = retrieval_metrics(BankNormalizer(QB, GB, method="is").scores(Q, G))["R1"]
    centred = retrieval_metrics(BankNormalizer(QB, GB, method="is", center=True).scores(Q, G))["R1"]
    assert plain < raw
    assert centred > raw + 1.0


def test_bad_input(small):
    QB, GB = small["Q_bank"], small["G_bank"]
    with pytest.raises(InputError, match="columns"):
        BankNormalizer(QB, GB[:, :100])
    with pytest.raises(InputError, match="needs a gallery bank"):
        BankNormalizer(QB, method="dualis")
    with pytest.raises(InputError, match="empty"):
        BankNormalizer(QB[:0])
    bn = BankNormalizer(QB, GB, method="is")
    with pytest.raises(InputError, match="columns"):
        bn.gallery_stats(small["G_test"][:, :10])
    bad = small["G_test"][:10].copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        bn.gallery_stats(bad)
    with pytest.raises(InputError, match="unknown method"):
        BankNormalizer(QB, GB, method="qbnorm")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_gallery_bank_of_only_the_item_itself_is_refused(backend):
    rng = np.random.default_rng(1)
    QB, G = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    bn = BankNormalizer(QB, G[:1], method="dualis", gallery_bank_keys=[0], backend=backend)
    with pytest.raises(InputError, match="leaves no other item for 1 gallery item"):
        bn.gallery_stats(G[:2], keys=[0, 1])


def test_activation_uses_the_centred_similarity(small):
    """activation() (used by the Qdrant layer) must agree with gallery_stats() under centring."""
    bn = BankNormalizer(small["Q_bank"], small["G_bank"], method="dualdis", center=True)
    G = small["G_test"]
    st = bn.gallery_stats(G)
    act_q, act_g = bn.activation(G)
    assert np.array_equal(act_q, st.act_q) and np.array_equal(act_g, st.act_g)


def test_rerank_and_search_bad_input(small):
    bn = BankNormalizer(small["Q_bank"], small["G_bank"], method="is")
    st = bn.gallery_stats(small["G_test"][:3])
    with pytest.raises(InputError, match="raw_scores contains 1 NaN"):
        bn.rerank(small["Q_test"][0], [np.nan, 1.0, 0.5], st)
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        bn.search(small["Q_test"][:2], small["G_test"][:20], batch_size=0)
    with pytest.raises(InputError, match="alpha must be a number"):
        BankNormalizer(small["Q_bank"], method="nnn", alpha="x")
