"""Matrix-level API: bad input, invariants, relations between methods."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dbnorm_qdrant import METHODS, InputError, Params, normalize
from dbnorm_qdrant.core.methods import score
from dbnorm_qdrant.core.stats import GalleryStats


def _data(seed=0, nq=20, n=30, m=40, L=25, d=8):
    rng = np.random.default_rng(seed)
    unit = lambda X: X / np.linalg.norm(X, axis=1, keepdims=True)  # noqa: E731
    Q, G, QB, GB = (unit(rng.standard_normal((r, d))) for r in (nq, n, m, L))
    return Q @ G.T, QB @ G.T, GB @ G.T


S, SQ, SG = _data()
KW = dict(query_bank_sims=SQ, gallery_bank_sims=SG)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_a_new_finite_array(method):
    S0, SQ0, SG0 = S.copy(), SQ.copy(), SG.copy()
    out = normalize(S, method, k=3 if method in ("csls", "nnn") else None, **KW)
    assert out.shape == S.shape and np.isfinite(out).all()
    assert out is not S and not np.shares_memory(out, S)
    assert np.array_equal(S, S0) and np.array_equal(SQ, SQ0) and np.array_equal(SG, SG0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="bogus"), "unknown method"),
        (dict(method="auto"), "tune"),
        (dict(method="is", beta_q=0.0), "beta_q must be positive"),
        (dict(method="is", beta_q=float("nan")), "beta_q must be positive"),
        (dict(method="dualis", beta_g=-1.0), "beta_g must be positive"),
        (dict(method="dualis", beta_g=float("inf")), "beta_g must be positive"),
        (dict(method="dis", k=0), "k must be"),
        (dict(method="dis", k=31), "larger than the gallery"),
        (dict(method="csls", k=41), "larger than the query bank"),
        (dict(method="dis", k=1.5), "k must be"),
    ],
)
def test_bad_parameters(kwargs, match):
    method = kwargs.pop("method")
    with pytest.raises(InputError, match=match):
        normalize(S, method, **KW, **kwargs)


def test_bad_arrays():
    with pytest.raises(InputError, match="columns"):
        normalize(S, "is", query_bank_sims=SQ[:, :-1])
    with pytest.raises(InputError, match="empty"):
        normalize(S, "is", query_bank_sims=SQ[:0])
    bad = S.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        normalize(bad, "is", query_bank_sims=SQ)
    badq = SQ.copy()
    badq[1, 2] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        normalize(S, "is", query_bank_sims=badq)
    with pytest.raises(InputError, match="2-D"):
        normalize(S[0], "is", query_bank_sims=SQ)
    with pytest.raises(InputError, match="needs query_bank_sims"):
        normalize(S, "is")
    with pytest.raises(InputError, match="needs gallery_bank_sims"):
        normalize(S, "dualis", query_bank_sims=SQ)
    with pytest.raises(InputError, match="numeric"):
        normalize(np.array([["a"]]), "none")


def test_log_domain_is_log_of_faithful():
    f = normalize(S, "dualis", faithful=True, **KW)
    g = normalize(S, "dualis", **KW)
    np.testing.assert_allclose(np.log(f) / (20.0 + 3.0), g, atol=1e-12)


def test_dualis_tends_to_is_as_beta_g_vanishes():
    a = normalize(S, "dualis", beta_g=1e-9, **KW)
    b = normalize(S, "is", **KW)
    # equal up to the constant log(L) / beta_q that the vanishing gallery factor leaves behind
    np.testing.assert_allclose(a - b, np.full_like(a, np.log(SG.shape[0]) / 20.0 * -1), atol=1e-6)


def test_float32_stays_float32_and_ranks_like_float64():
    out32 = normalize(S.astype(np.float32), "is", query_bank_sims=SQ.astype(np.float32))
    out64 = normalize(S, "is", query_bank_sims=SQ)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, atol=1e-5)


def test_no_overflow_on_logit_scale():
    """Logit-scaled similarities with a cosine-scale beta overflow exp(); log-domain does not."""
    out = normalize(100 * S, "dualis", query_bank_sims=100 * SQ, gallery_bank_sims=100 * SG, beta_q=20, beta_g=20)
    assert np.isfinite(out).all()


unit_stats = arrays(np.float64, (6,), elements=st.floats(-5, 5))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (4, 6), elements=st.floats(-1, 1)), st.floats(-3, 3), st.sampled_from(["is", "dualis", "csls", "nnn", "centrality"]))
def test_uniform_statistics_leave_the_raw_order(Sx, c, method):
    stats = GalleryStats(n=6, lse_q=np.full(6, c), lse_g=np.full(6, c), topk_mean_q=np.full(6, c), mean_q=np.full(6, c))
    out = score(Sx, stats, Params(method=method))
    np.testing.assert_allclose(out - Sx, out[:, :1] - Sx[:, :1] + np.zeros_like(Sx), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["is", "dis", "dualis", "dualdis", "csls", "nnn", "centrality"]))
def test_permuting_the_gallery_permutes_the_result(seed, method):
    Sx, SQx, SGx = _data(seed % 50, nq=6, n=12, m=15, L=9)
    perm = np.random.default_rng(seed).permutation(12)
    k = 3 if method in ("csls", "nnn") else 1
    a = normalize(Sx, method, query_bank_sims=SQx, gallery_bank_sims=SGx, k=k)
    b = normalize(Sx[:, perm], method, query_bank_sims=SQx[:, perm], gallery_bank_sims=SGx[:, perm], k=k)
    np.testing.assert_allclose(a[:, perm], b, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_shifting_a_query_row_shifts_its_scores(seed):
    """Additive methods: s - bias(g); a constant added to a query's row moves every score equally."""
    Sx, SQx, SGx = _data(seed % 50, nq=5, n=10, m=12, L=8)
    a = normalize(Sx, "dualis", query_bank_sims=SQx, gallery_bank_sims=SGx)
    Sy = Sx.copy()
    Sy[2] += 0.3
    b = normalize(Sy, "dualis", query_bank_sims=SQx, gallery_bank_sims=SGx)
    np.testing.assert_allclose(b - a, np.where(np.arange(5)[:, None] == 2, 0.3, 0.0) + 0 * a, atol=1e-12)


def test_hubness_reduced_on_real_data(wordnet):
    from dbnorm_qdrant.eval.metrics import hubness_metrics, retrieval_metrics

    Q, G, QB = wordnet["Q"][:2000], wordnet["G"][:2000], wordnet["QB"]
    S_ = Q @ G.T
    out = normalize(S_, "is", query_bank_sims=QB @ G.T)
    assert hubness_metrics(out)["k_skewness"] < 0.5 * hubness_metrics(S_)["k_skewness"]
    assert retrieval_metrics(out)["R1"] > retrieval_metrics(S_)["R1"] + 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["is", "dualis", "csls"])
def test_non_finite_bank_values_are_caught_by_every_path(dtype, bad_value, method):
    """The fast path folds the NaN/inf check into the kernel; it must still catch every case."""
    SQx, SGx = SQ.astype(dtype), SG.astype(dtype)
    target = SGx if method == "dualis" else SQx
    target[7, 11] = bad_value
    name = "gallery_bank_sims" if method == "dualis" else "query_bank_sims"
    with pytest.raises(InputError, match=f"{name} contains 1 NaN or infinite"):
        normalize(S.astype(dtype), method, query_bank_sims=SQx, gallery_bank_sims=SGx, k=3 if method == "csls" else None)
