"""Vector-level API: statistics from vectors, reranking candidates, search, centering, invalid vectors."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant import BankNormalizer, GalleryStats, InputError, normalize
from dbnorm_qdrant.core.centering import unit_rows
from dbnorm_qdrant.eval.metrics import retrieval_metrics

METHODS = ["none", "is", "dis", "dualis", "dualdis", "csls", "nnn", "centrality"]


@pytest.fixture(scope="module")
def small(sample):
    """Real embeddings (the shipped sample: 1,500 test pairs, 2,500 bank pairs)."""
    return sample


@pytest.mark.parametrize("method", METHODS)
def test_vector_level_equals_matrix_level(small, method):
    Q, G, QB, GB = small["Q"], small["G"], small["QB"], small["GB"]
    bn = BankNormalizer(QB, GB, method=method)
    got = bn.scores(Q, G)
    ref = normalize(Q @ G.T, method, query_bank_sims=QB @ G.T, gallery_bank_sims=GB @ G.T)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert np.mean(np.argmax(got, 1) == np.argmax(ref, 1)) > 0.999


@pytest.mark.parametrize("method", ["is", "dis", "dualis", "dualdis", "nnn"])
@pytest.mark.parametrize("center", [False, True])
def test_rerank_of_top_candidates_matches_full_scores(small, method, center):
    """Statistics are the only state: reranking raw top-N from stats alone equals the full scores."""
    Q, G, QB, GB = small["Q"][:50], small["G"], small["QB"], small["GB"]
    bn = BankNormalizer(QB, GB, method=method, center=center)
    st = bn.gallery_stats(G)
    full = bn.scores(Q, G, st)
    raw = Q @ G.T
    for i in range(len(Q)):
        cand = np.argsort(-raw[i])[:100]
        got = bn.rerank(Q[i], raw[i, cand], st.take(cand))
        np.testing.assert_allclose(got, full[i, cand], atol=1e-5)


def test_payload_records_roundtrip(small):
    bn = BankNormalizer(small["QB"], small["GB"], method="dualdis", center=True)
    st = bn.gallery_stats(small["G"][:300])
    back = GalleryStats.from_records(st.records(), fingerprint=bn.fingerprint)
    assert back == st
    other = BankNormalizer(small["QB"], small["GB"], method="dualdis", beta_q=25.0)
    assert other.fingerprint != bn.fingerprint
    with pytest.raises(InputError, match="fingerprint"):
        GalleryStats.from_records(st.records(), fingerprint=other.fingerprint)
    with pytest.raises(InputError, match="fingerprint"):
        other.rerank(small["Q"][0], np.zeros(300), st)


def test_pagewise_stats_equal_whole_stats(small):
    bn = BankNormalizer(small["QB"], small["GB"], method="dualis")
    G = small["G"]
    whole = bn.gallery_stats(G)
    parts = GalleryStats.concat([bn.gallery_stats(G[i : i + 400], activation=False) for i in range(0, len(G), 400)])
    # float32 GEMMs of a page and of the whole gallery may round differently (BLAS blocking)
    np.testing.assert_allclose(parts.lse_q, whole.lse_q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts.lse_g, whole.lse_g, rtol=1e-5, atol=1e-6)


def test_gallery_bank_sampled_from_the_gallery_excludes_self(small):
    G = small["G"]
    sample = np.arange(0, len(G), 3)
    bn = BankNormalizer(small["QB"], G[sample], method="dualis", gallery_bank_keys=sample)
    with_keys = bn.gallery_stats(G, gallery_keys=np.arange(len(G)))
    without = bn.gallery_stats(G)
    # sampled items lose their self-similarity (1.0, the largest term) from lse_g
    assert np.all(with_keys.lse_g[sample] < without.lse_g[sample] - 1e-3)
    others = np.setdiff1d(np.arange(len(G)), sample)
    np.testing.assert_allclose(with_keys.lse_g[others], without.lse_g[others], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_query_bank_sampled_from_the_gallery_excludes_self(small, backend):
    """The cold start's pseudo-queries are the items themselves: with query_bank_keys an item's
    CSLS neighbourhood is its k nearest *other* items (checked against a direct computation)."""
    G = small["G"]
    sample = np.arange(0, len(G), 2)
    keys = np.arange(len(G))
    bn = BankNormalizer(G[sample], method="csls", k=5, query_bank_keys=sample, backend=backend)
    st = bn.gallery_stats(G, gallery_keys=keys)
    S = G @ G[sample].T
    S[sample, np.arange(len(sample))] = -np.inf  # an item is not its own neighbour
    want = np.sort(S, axis=1)[:, -5:].mean(axis=1)
    np.testing.assert_allclose(st.topk_mean_q, want, rtol=1e-5, atol=1e-6)
    plain = BankNormalizer(G[sample], method="csls", k=5, backend=backend)
    assert np.all(st.topk_mean_q[sample] < plain.gallery_stats(G).topk_mean_q[sample] - 1e-3)
    assert bn.fingerprint != plain.fingerprint  # the keys are part of the banks' identity
    with pytest.raises(InputError, match="query_bank_keys must have one key per query_bank row"):
        BankNormalizer(G[sample], method="csls", query_bank_keys=sample[:3])


def test_search_returns_scores_then_ids_best_first(small):
    """``(scores, ids)`` like FAISS and scikit-learn."""
    bn = BankNormalizer(small["QB"], small["GB"], method="is")
    Q, G = small["Q"][:200], small["G"]
    val, ids = bn.search(Q, G, top_k=5, batch_size=64)
    full = bn.scores(Q, G)
    assert ids.shape == val.shape == (200, 5) and ids.dtype == np.int64 and val.dtype == np.float64
    assert np.all(np.diff(val, axis=1) <= 0)
    # float32 GEMMs of a 64-query batch and of all 200 may round differently (BLAS blocking)
    np.testing.assert_allclose(val[:, 0], full.max(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(full, ids, axis=1), val, rtol=1e-5, atol=1e-6)


def test_centering_rescues_a_narrow_band(wordnet):
    """Cosines squeezed into a narrow band (std < 0.01): IS lowers R@1, centering restores a gain."""
    u = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    u /= np.linalg.norm(u)
    squeeze = lambda X: unit_rows(X + 3.0 * u).astype(np.float32)  # noqa: E731
    Q, G = squeeze(wordnet["Q"][:2000]), squeeze(wordnet["G"][:2000])
    QB, GB = squeeze(wordnet["QB"][:5000]), squeeze(wordnet["GB"][:5000])
    assert np.std(Q @ G.T) < 0.01
    raw = retrieval_metrics(Q @ G.T)["R1"]
    plain = retrieval_metrics(BankNormalizer(QB, GB, method="is").scores(Q, G))["R1"]
    centered = retrieval_metrics(BankNormalizer(QB, GB, method="is", center=True).scores(Q, G))["R1"]
    assert plain < raw
    assert centered > raw + 1.0


def test_bad_input(small):
    QB, GB = small["QB"], small["GB"]
    with pytest.raises(InputError, match="columns"):
        BankNormalizer(QB, GB[:, :100])
    with pytest.raises(InputError, match="needs a gallery bank"):
        BankNormalizer(QB, method="dualis")
    with pytest.raises(InputError, match="empty"):
        BankNormalizer(QB[:0])
    bn = BankNormalizer(QB, GB, method="is")
    with pytest.raises(InputError, match="dimension 10 but"):
        bn.gallery_stats(small["G"][:, :10])
    bad = small["G"][:10].copy()
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
        bn.gallery_stats(G[:2], gallery_keys=[0, 1])


def test_activation_uses_the_centered_similarity(small):
    """activation() (used by the Qdrant layer) must agree with gallery_stats() under centering."""
    bn = BankNormalizer(small["QB"], small["GB"], method="dualdis", center=True)
    G = small["G"]
    st = bn.gallery_stats(G)
    act_q, act_g = bn.activation(G)
    assert np.array_equal(act_q, st.act_q) and np.array_equal(act_g, st.act_g)


def test_rerank_and_search_bad_input(small):
    bn = BankNormalizer(small["QB"], small["GB"], method="is")
    st = bn.gallery_stats(small["G"][:3])
    with pytest.raises(InputError, match="raw_scores contains 1 NaN"):
        bn.rerank(small["Q"][0], [np.nan, 1.0, 0.5], st)
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        bn.search(small["Q"][:2], small["G"][:20], batch_size=0)
    with pytest.raises(InputError, match="alpha must be a finite number >= 0, got 'x'; for 'nnn' it is the weight"):
        BankNormalizer(small["QB"], method="nnn", alpha="x")


def _spoiled(X, row, value):
    X = np.array(X[:6], dtype=np.float32)
    X[row] = 0.0 if value == 0 else X[row]
    if value != 0:
        X[row, 5] = value
    return X


ENTRY_POINTS = {
    "gallery_stats": lambda bn, Q, G: bn.gallery_stats(G),
    "scores(gallery)": lambda bn, Q, G: bn.scores(Q[:6], G),
    "scores(queries)": lambda bn, Q, G: bn.scores(G, Q[:20]),
    "search(gallery)": lambda bn, Q, G: bn.search(Q[:6], G, top_k=2),
    "search(queries)": lambda bn, Q, G: bn.search(G, Q[:20], top_k=2),
    "activation": lambda bn, Q, G: bn.activation(G),
    "rerank": lambda bn, Q, G: bn.rerank(G[4], np.ones(3), bn.gallery_stats(Q[:3])),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("value,what", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (0, "zero vector")])
def test_invalid_vectors_are_refused_naming_the_first_bad_row(small, entry, value, what):
    bn = BankNormalizer(small["QB"], small["GB"], method="dis", center=entry == "rerank")
    bad = _spoiled(small["G"], 4, value)
    row = 0 if entry == "rerank" else 4  # rerank takes one query vector: row 4 of ``bad``
    with pytest.raises(InputError, match=f"row {row} (contains|is a) {what}"):
        ENTRY_POINTS[entry](bn, small["Q"], bad)


def test_zero_vectors_are_fine_under_neg_euclid(small):
    bn = BankNormalizer(small["QB"][:300], small["GB"][:300], method="is", similarity="neg_euclid")
    G = _spoiled(small["G"], 2, 0)
    st = bn.gallery_stats(G)
    assert np.isfinite(st.lse_q).all()
    with pytest.raises(InputError, match="row 2 contains NaN"):
        bn.gallery_stats(_spoiled(small["G"], 2, np.nan))


def test_wrong_dimension_names_the_banks(small):
    bn = BankNormalizer(small["QB"], method="is")
    with pytest.raises(InputError, match="dimension 100 but 384 is expected"):
        bn.scores(small["Q"][:3, :100], small["G"][:5])
    with pytest.raises(InputError, match="one query at a time"):
        BankNormalizer(small["QB"], small["GB"], method="is", center=True).rerank(
            small["Q"][:2], np.ones(3), BankNormalizer(small["QB"], small["GB"], method="is", center=True).gallery_stats(small["G"][:3])
        )
