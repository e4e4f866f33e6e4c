"""Tests for dbnorm_qdrant.eval.metrics: hand-computed cases, official figures on the real sets, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from dbnorm_qdrant.eval import metrics
from dbnorm_qdrant.eval.metrics import (
    evaluate,
    hubness_metrics,
    k_occurrence,
    ranks,
    retrieval_metrics,
    topk_indices,
)

REAL_SETS = ("wordnet_gloss", "bible_kjv_web")
# data/README.md: skewness of the top-10 k-occurrence over all gallery items (zeros included)
README_SKEW_COSINE = {"wordnet_gloss": 2.46, "bible_kjv_web": 3.33}
README_SKEW_IS = {"wordnet_gloss": 0.62, "bible_kjv_web": 0.92}


def qbnorm_rank(row: np.ndarray, j: int) -> float:
    """Rank as QB-Norm's metric.py defines it: mean position of s_j in the descending sort."""
    srt = np.sort(-row)
    return float(np.flatnonzero(srt == -row[j]).mean())


# ---------------------------------------------------------------------------------------------------
# ranks: hand-computed cases
# ---------------------------------------------------------------------------------------------------
def test_ranks_identity_and_ties_are_averaged():
    S = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # gt 0 best -> 0
            [0.5, 0.5, 0.9, 0.5],  # gt 1 tied with 2 others, 1 above -> 1 + (3 - 1) / 2 = 2
            [0.7, 0.7, 0.7, 0.7],  # all tied -> (4 - 1) / 2 = 1.5
        ]
    )
    np.testing.assert_array_equal(ranks(S), [0.0, 2.0, 1.5])
    assert ranks(S).dtype == np.float64
    assert [qbnorm_rank(S[i], i) for i in range(3)] == [0.0, 2.0, 1.5]


def test_ranks_float32_same_as_float64():
    S = np.array([[0.5, 0.5, 0.25], [0.75, 0.5, 0.125]], dtype=np.float32)
    np.testing.assert_array_equal(ranks(S), ranks(S.astype(np.float64)))
    np.testing.assert_array_equal(ranks(S), [0.5, 1.0])


def test_ranks_many_to_one():
    # three queries, two gallery items; queries 0 and 1 share item 0
    S = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.3]])
    np.testing.assert_array_equal(ranks(S, np.array([0, 0, 1])), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(ranks(S, [0, 0, 1]), [0.0, 1.0, 0.5])


def test_ranks_one_to_many_all_forms_agree():
    S = np.array(
        [
            [0.1, 0.9, 0.8, 0.3, 0.5],  # correct {2, 4}: best is 2 at rank 1
            [0.6, 0.6, 0.6, 0.9, 0.2],  # correct {0, 1}: tied with 2 -> 1 + 1 = 2
            [0.4, 0.3, 0.2, 0.1, 0.0],  # correct {4}: rank 4
        ]
    )
    lists = [[2, 4], (1, 0), [4]]
    expected = [1.0, 2.0, 4.0]
    np.testing.assert_array_equal(ranks(S, lists), expected)
    mask = np.zeros(S.shape, dtype=bool)
    for i, js in enumerate(lists):
        mask[i, list(js)] = True
    np.testing.assert_array_equal(ranks(S, mask), expected)
    np.testing.assert_array_equal(ranks(S, np.array([[2, 4], [1, 0], [4, 4]])), expected)
    # mixed scalars and sequences
    np.testing.assert_array_equal(ranks(S, [[2, 4], [0, 1], 4]), expected)


def test_ranks_chunking_does_not_change_result(monkeypatch):
    rng = np.random.default_rng(3)
    S = rng.integers(0, 4, size=(37, 11)).astype(np.float64)  # many ties
    gt = rng.integers(0, 11, size=37)
    full = ranks(S, gt)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 13)  # one row per chunk
    np.testing.assert_array_equal(ranks(S, gt), full)
    np.testing.assert_array_equal(full, [qbnorm_rank(S[i], gt[i]) for i in range(37)])


# ---------------------------------------------------------------------------------------------------
# retrieval_metrics
# ---------------------------------------------------------------------------------------------------
def test_retrieval_metrics_from_ranks_hand_computed():
    r = [0.0, 0.5, 4.0, 9.5, 60.0]
    m = retrieval_metrics(ranks=r)
    assert list(m) == ["R1", "R5", "R10", "R50", "MedR", "MeanR"]
    assert m["R1"] == pytest.approx(40.0)  # 0 and 0.5 are < 1
    assert m["R5"] == pytest.approx(60.0)
    assert m["R10"] == pytest.approx(80.0)
    assert m["R50"] == pytest.approx(80.0)
    assert m["MedR"] == 5.0
    assert m["MeanR"] == pytest.approx(74.0 / 5 + 1)
    assert all(type(v) is float for v in m.values())
    assert list(retrieval_metrics(ranks=r, ks=(3,))) == ["R3", "MedR", "MeanR"]


def test_retrieval_metrics_sims_equals_ranks_path():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((60, 80))
    assert retrieval_metrics(S) == retrieval_metrics(ranks=ranks(S))
    gt = rng.integers(0, 80, size=60)
    assert retrieval_metrics(S, gt) == retrieval_metrics(ranks=ranks(S, gt))


# ---------------------------------------------------------------------------------------------------
# top-k and k-occurrence
# ---------------------------------------------------------------------------------------------------
def test_topk_indices_breaks_ties_by_lower_index(monkeypatch):
    S = np.array([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(topk_indices(S, 3), [[1, 3, 2], [0, 1, 2]])
    rng = np.random.default_rng(1)
    S = rng.integers(0, 3, size=(40, 9)).astype(np.float32)
    for k in (1, 4, 9):
        expected = np.argsort(-S, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(topk_indices(S, k), expected)
        monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 20)
        np.testing.assert_array_equal(topk_indices(S, k), expected)
        monkeypatch.undo()


def test_k_occurrence_brute_force_and_topk_path():
    rng = np.random.default_rng(2)
    S = rng.standard_normal((50, 30))
    k = 4
    brute = np.zeros(30, dtype=np.int64)
    for row in S:
        for j in np.argsort(-row)[:k]:
            brute[j] += 1
    occ = k_occurrence(S, k)
    np.testing.assert_array_equal(occ, brute)
    assert occ.dtype == np.int64 and occ.sum() == k * 50
    np.testing.assert_array_equal(k_occurrence(topk=topk_indices(S, k), n_gallery=30), brute)
    np.testing.assert_array_equal(k_occurrence(topk=topk_indices(S, k), k=k, n_gallery=30), brute)
    np.testing.assert_array_equal(k_occurrence(S), k_occurrence(S, 10))  # default k = 10


# ---------------------------------------------------------------------------------------------------
# hubness
# ---------------------------------------------------------------------------------------------------
def test_k_skewness_matches_scipy_and_dbnorm_variant_differs():
    rng = np.random.default_rng(4)
    # a few strong hubs: gallery items with a large common component
    G = rng.standard_normal((40, 8))
    G[:3] += 3.0
    Q = rng.standard_normal((25, 8)) + 1.0
    S = Q @ G.T
    k = 3
    brute = np.bincount(np.argsort(-S, axis=1)[:, :k].ravel(), minlength=40)
    assert (brute == 0).any()
    h = hubness_metrics(S, k)
    assert h["k_skewness"] == pytest.approx(scipy.stats.skew(brute, bias=True), rel=1e-12)
    assert h["k_skewness_retrieved"] == pytest.approx(scipy.stats.skew(brute[brute > 0]), rel=1e-12)
    assert abs(h["k_skewness"] - h["k_skewness_retrieved"]) > 0.1
    assert h == hubness_metrics(occurrence=brute, k=k)


def test_hubness_hand_made_occurrence():
    occ = np.array([8, 4, 3, 1, 0, 0])  # k = 2, 8 queries, 16 slots, mean 8/3
    h = hubness_metrics(occurrence=occ, k=2, n_top=3)
    # |dev| = 16/3, 4/3, 1/3, 5/3, 8/3, 8/3 -> sum 14
    assert h["robin_hood"] == pytest.approx(0.5 * 14 / 16)
    assert h["antihub_rate"] == pytest.approx(2 / 6)
    # hubs: N_k >= 2k = 4 -> items 0 and 1, 12 of the 16 slots
    assert h["hub_occurrence"] == pytest.approx(12 / 16)
    assert h["top_hubs"] == [(0, 8), (1, 4), (2, 3)]
    assert h["k_skewness"] == pytest.approx(scipy.stats.skew(occ, bias=True))
    assert h["k_skewness_retrieved"] == pytest.approx(scipy.stats.skew([8, 4, 3, 1]))
    assert set(h) == {
        "k_skewness",
        "k_skewness_retrieved",
        "robin_hood",
        "antihub_rate",
        "hub_occurrence",
        "top_hubs",
    }
    # ties in top_hubs: lower index first; n_top larger than the gallery lists everything
    h2 = hubness_metrics(occurrence=[1, 3, 3, 1], k=2, n_top=10)
    assert h2["top_hubs"] == [(1, 3), (2, 3), (0, 1), (3, 1)]
    assert h2["hub_occurrence"] == 0.0


def test_hubness_uniform_occurrence():
    h = hubness_metrics(occurrence=[2, 2, 2, 2], k=2)
    assert h["robin_hood"] == 0.0 and h["antihub_rate"] == 0.0
    assert np.isnan(h["k_skewness"]) and np.isnan(h["k_skewness_retrieved"])


def test_evaluate_combines_both():
    rng = np.random.default_rng(5)
    S = rng.standard_normal((30, 40))
    e = evaluate(S, k=5)
    assert e == {**retrieval_metrics(S), **hubness_metrics(S, 5)}


# ---------------------------------------------------------------------------------------------------
# real data against the official figures
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_dir() -> Path:
    from support import SHARED as path
    if not (path / "data").is_dir() or not (path / "conformance").is_dir():
        pytest.skip(f"shared data not found at {path} (expected ../shared next to the project root)")
    return path


@pytest.fixture(scope="module", params=REAL_SETS)
def real_set(request, shared_dir):
    name = request.param
    data = shared_dir / "data" / name
    Q = np.load(data / "Q_test.npy").astype(np.float64)
    G = np.load(data / "G_test.npy").astype(np.float64)
    conf = shared_dir / "conformance"
    official = json.loads((conf / f"{name}_official_metrics.json").read_text())["metrics"]
    with np.load(conf / f"{name}_official_top10.npz") as z:
        top10 = {key.removeprefix("top10_"): z[key] for key in z.files}
    return name, Q @ G.T, official, top10


def test_real_retrieval_metrics_match_official(real_set):
    name, S, official, _ = real_set
    m = retrieval_metrics(S)
    for key in ("R1", "R5", "R10", "MedR", "MeanR"):
        assert round(m[key], 1) == official["cosine"][key], (name, key, m[key])
    # cosine similarities of these sets have no ties at the ground truth: every rank is an integer
    r = ranks(S)
    assert np.array_equal(r, np.round(r))


def test_real_k_skewness_matches_official_and_readme(real_set):
    name, S, official, top10 = real_set
    h = hubness_metrics(S, 10)
    assert h["k_skewness_retrieved"] == pytest.approx(
        official["cosine"]["skewness_k10_official"], abs=1e-9
    )
    assert round(h["k_skewness"], 2) == README_SKEW_COSINE[name]
    # DBNorm took its top-10 from an (unstable) argsort of the float64 matrix; the sets have no tie at
    # the 10th place, so our argpartition top-10 is the official one, order included
    np.testing.assert_array_equal(topk_indices(S, 10), top10["cosine"])


def test_real_official_top10_lists_reproduce_official_skewness(real_set):
    name, _, official, top10 = real_set
    for method, top in top10.items():
        h = hubness_metrics(occurrence=k_occurrence(topk=top, n_gallery=5000), k=10)
        assert h["k_skewness_retrieved"] == pytest.approx(
            official[method]["skewness_k10_official"], abs=1e-9
        ), method
    h_is = hubness_metrics(occurrence=k_occurrence(topk=top10["IS"], n_gallery=5000))
    assert round(h_is["k_skewness"], 2) == README_SKEW_IS[name]


# ---------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------
S_OK = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4]])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ranks(np.ones(3)), r"2-D"),
        (lambda: ranks(np.ones((2, 2, 2))), r"2-D"),
        (lambda: ranks(np.array([[0.1, np.nan], [0.2, 0.3]])), r"NaN or infinite"),
        (lambda: ranks(np.array([[0.1, np.inf], [0.2, 0.3]])), r"NaN or infinite"),
        (lambda: ranks(np.zeros((0, 3))), r"empty"),
        (lambda: ranks(np.zeros((2, 0))), r"empty"),
        (lambda: ranks(S_OK, [0, 1, 2]), r"3 entries but sims has 2 query rows"),
        (lambda: ranks(S_OK, [0, 3]), r"index 3, outside 0\.\.2"),
        (lambda: ranks(S_OK, [-1, 0]), r"index -1, outside"),
        (lambda: ranks(S_OK, [[0, 1], [5]]), r"index 5, outside"),
        (lambda: ranks(S_OK, [[0], []]), r"query 1 has no correct gallery item"),
        (lambda: ranks(S_OK, np.array([0.0, 1.0])), r"integer gallery indices"),
        (lambda: ranks(S_OK, np.ones((3, 3), dtype=bool)), r"shape of sims"),
        (lambda: ranks(S_OK.T), r"n_queries <= n_gallery.*pass gt explicitly"),
        (lambda: retrieval_metrics(), r"exactly one of sims"),
        (lambda: retrieval_metrics(S_OK, ranks=[0.0, 1.0]), r"exactly one of sims"),
        (lambda: retrieval_metrics(ranks=[]), r"non-empty 1-D"),
        (lambda: retrieval_metrics(ranks=[-1.0]), r">= 0"),
        (lambda: retrieval_metrics(S_OK, ks=(0, 5)), r"positive integers"),
        (lambda: topk_indices(S_OK, 0), r"at least 1"),
        (lambda: topk_indices(S_OK, 4), r"larger than"),
        (lambda: k_occurrence(S_OK, 5), r"larger than"),
        (lambda: k_occurrence(np.ones(3), 1), r"2-D"),
        (lambda: k_occurrence(topk=[[0, 1]]), r"needs n_gallery"),
        (lambda: k_occurrence(topk=[[0, 0]], n_gallery=3), r"same gallery item twice"),
        (lambda: k_occurrence(topk=[[0, 7]], n_gallery=3), r"index 7, outside"),
        (lambda: k_occurrence(topk=[[0, 1]], k=3, n_gallery=3), r"k=3 but topk has 2 columns"),
        (lambda: k_occurrence(), r"exactly one of sims or topk"),
        (lambda: hubness_metrics(occurrence=[3, 0, 0], k=2), r"not a positive multiple of k=2"),
        (lambda: hubness_metrics(occurrence=[1, -1], k=1), r"negative"),
        (lambda: hubness_metrics(occurrence=[[1, 1]], k=1), r"1-D"),
        (lambda: hubness_metrics(occurrence=[1, 1], k=0), r"at least 1"),
        (lambda: hubness_metrics(S_OK, n_top=0), r"n_top"),
        (lambda: hubness_metrics(np.ones(3)), r"2-D"),
        (lambda: evaluate(S_OK, k=4), r"larger than"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------
@st.composite
def int_sims_and_gt(draw):
    n_q = draw(st.integers(1, 6))
    n_g = draw(st.integers(1, 8))
    vals = draw(st.lists(st.integers(-3, 3), min_size=n_q * n_g, max_size=n_q * n_g))
    S = np.array(vals, dtype=np.float64).reshape(n_q, n_g)  # small integers: many exact ties
    gt = np.array(draw(st.lists(st.integers(0, n_g - 1), min_size=n_q, max_size=n_q)))
    perm = np.array(draw(st.permutations(range(n_g))))
    shift = np.array(draw(st.lists(st.integers(-100, 100), min_size=n_q, max_size=n_q)))
    return S, gt, perm, shift


@settings(max_examples=150, deadline=None)
@given(int_sims_and_gt())
def test_property_ranks_invariant_and_match_definition(case):
    S, gt, perm, shift = case
    r = ranks(S, gt)
    np.testing.assert_array_equal(r, [qbnorm_rank(S[i], gt[i]) for i in range(len(gt))])
    # permuting gallery columns together with gt, and adding a constant to each row (exact in
    # float64 for these integers), leave every rank unchanged
    inv = np.argsort(perm)  # new column c holds old column perm[c]; old j -> new inv[j]
    np.testing.assert_array_equal(ranks(S[:, perm] + shift[:, None], inv[gt]), r)
    # top-k is the stable-sort top-k whatever the ties
    k = min(3, S.shape[1])
    np.testing.assert_array_equal(topk_indices(S, k), np.argsort(-S, axis=1, kind="stable")[:, :k])
    assert k_occurrence(S, k).sum() == k * S.shape[0]
