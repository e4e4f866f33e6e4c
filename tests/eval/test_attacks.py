"""Tests for dbnorm_qdrant.eval.attacks: every attack plants real hubs on the shipped sample,
seeded and deterministic, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant.datasets import load_sample
from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.eval.attacks import (
    KINDS,
    coverage_objective,
    hit_objective,
    hub_share,
    mixed_hubs,
    plant_hubs,
)
from dbnorm_qdrant.eval.metrics import topk_indices

N_HUBS = 15


@pytest.fixture(scope="module")
def split():
    """The attacker's sample (400 test queries), the evaluated queries (the other 1,100), the gallery."""
    s = load_sample()
    perm = np.random.default_rng(0).permutation(len(s.queries))
    return s.queries[perm[:400]], s.queries[perm[400:]], s.gallery


@pytest.fixture(scope="module")
def hubs(split):
    A, _, G = split
    out = {kind: plant_hubs(kind, N_HUBS, A, G) for kind in KINDS}
    out["joint"] = plant_hubs("optimized", N_HUBS, A, G, joint=True)
    out["mixed"] = mixed_hubs(N_HUBS, A, G)
    return out


def share_in(E: np.ndarray, G: np.ndarray, H: np.ndarray) -> float:
    """Share of E's top-10 lists over G + H that hold one of H's rows."""
    X = np.vstack([G, H])
    return hub_share(topk_indices(E @ X.T, 10), range(len(G), len(X)))


@pytest.mark.parametrize("name", [*KINDS, "joint", "mixed"])
def test_unit_rows_and_shape(hubs, split, name):
    H = hubs[name]
    assert H.shape == (N_HUBS, split[0].shape[1]) and H.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(H, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", [*KINDS, "joint", "mixed"])
def test_attacks_make_hubs_on_unseen_queries(hubs, split, name):
    """Far above the share that as many random real items get (~10% on the sample, mean of 20 draws);
    the per-hub optimized attack is one point (15 copies) and gets ~23%, the others 25-78%."""
    _, E, G = split
    rng = np.random.default_rng(1)
    top = topk_indices(E @ G.T, 10)
    base = np.mean([hub_share(top, rng.choice(len(G), N_HUBS, replace=False).tolist()) for _ in range(20)])
    assert base < 0.15
    assert share_in(E, G, hubs[name]) > 2 * base


def test_joint_and_mixed_beat_a_single_point(hubs, split):
    _, E, G = split
    assert share_in(E, G, hubs["joint"]) > 1.5 * share_in(E, G, hubs["optimized"])
    assert share_in(E, G, hubs["mixed"]) > 1.5 * share_in(E, G, hubs["centroid"])


@pytest.mark.parametrize("kind, joint", [(k, False) for k in KINDS] + [("optimized", True)])
def test_seeded(split, kind, joint):
    A, _, G = split
    a = plant_hubs(kind, 4, A[:200], G, seed=3, joint=joint)
    np.testing.assert_array_equal(a, plant_hubs(kind, 4, A[:200], G, seed=3, joint=joint))
    b = plant_hubs(kind, 4, A[:200], G, seed=4, joint=joint)
    if kind == "optimized" and not joint:  # every start climbs to the same optimum
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    else:
        assert not np.allclose(a, b, rtol=1e-5, atol=1e-4)


def test_mixed_split_and_seed(split):
    A, _, G = split
    a = mixed_hubs(7, A[:200], G, kinds=("centroid", "near_duplicate"), seed=5)
    assert a.shape == (7, A.shape[1])
    # 4 centroid hubs (all close to the sample's mean), then 3 near-duplicates of gallery items
    assert np.max(a[4:] @ G.T, axis=1).min() > 0.95
    assert np.max(a[:4] @ G.T, axis=1).max() < 0.95
    np.testing.assert_array_equal(a, mixed_hubs(7, A[:200], G, kinds=("centroid", "near_duplicate"), seed=5))
    assert mixed_hubs(2, A[:200], G).shape == (2, A.shape[1])  # fewer hubs than kinds


def test_optimized_climbs_its_objective(hubs, split):
    A, _, G = split
    start = hit_objective(hubs["centroid"], A, G)  # the same seed: the optimized hubs' start
    assert np.all(hit_objective(hubs["optimized"], A, G) > 1.2 * start)
    assert coverage_objective(hubs["joint"], A, G) > 1.5 * coverage_objective(hubs["optimized"], A, G)
    # each hub alone climbs to the same optimum; together they spread out
    assert np.min(hubs["optimized"] @ hubs["optimized"].T) > 0.999
    assert np.min(hubs["joint"] @ hubs["joint"].T) < 0.9


def test_near_duplicates_copy_the_most_retrieved_items(hubs, split):
    A, _, G = split
    nearest = np.argmax(hubs["near_duplicate"] @ G.T, axis=1)
    kocc = np.bincount(topk_indices(A @ G.T, 10).ravel(), minlength=len(G))
    assert set(nearest.tolist()) == set(np.argsort(-kocc, kind="stable")[:N_HUBS].tolist())
    assert np.all(np.max(hubs["near_duplicate"] @ G.T, axis=1) < 0.999)  # not exact copies


def test_hub_share():
    assert hub_share([[1, 2], [3, 4], [], ["a", 9]], [2, "a"]) == 0.5
    assert hub_share(np.array([[0, 1], [2, 3]]), np.array([3])) == 0.5
    assert hub_share([["u1"], ["u2"]], {"u3"}) == 0.0


@pytest.mark.parametrize("top, planted, match", [
    ([], [1], "empty"),
    ([[1]], [], "planted is empty"),
    ("abc", [1], "list of result lists"),
    ([[1], 2], [1], "row 1"),
])
def test_hub_share_errors(top, planted, match):
    with pytest.raises(InputError, match=match):
        hub_share(top, planted)


def test_bad_input(split):
    A, _, G = split
    A, G = A[:50], G[:100]
    cases = [
        (lambda: plant_hubs("hubby", 3, A, G), "centroid, cluster, optimized, near_duplicate"),
        (lambda: plant_hubs("centroid", 0, A, G), "n must be an integer >= 1"),
        (lambda: plant_hubs("centroid", 2.0, A, G), "n must be an integer"),
        (lambda: plant_hubs("centroid", 3, A[:, :100], G), "dimension 384 but 100"),
        (lambda: plant_hubs("cluster", 60, A, G), "at least n queries"),
        (lambda: plant_hubs("near_duplicate", 101, A, G), "at most len"),
        (lambda: plant_hubs("optimized", 3, A, G, k=101), "k=101 is larger"),
        (lambda: plant_hubs("centroid", 3, A, G, joint=True), "optimized attack only"),
        (lambda: mixed_hubs(3, A, G, kinds=()), "at least one"),
        (lambda: mixed_hubs(3, A, G, kinds=("centroid", "centroid")), "distinct"),
        (lambda: mixed_hubs(3, A, G, kinds="centroid"), "sequence"),
        (lambda: hit_objective(A[:2], A, G, tau=0), "tau"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()
    bad = A.copy()
    bad[7, 3] = np.nan
    with pytest.raises(InputError, match="queries row 7"):
        plant_hubs("centroid", 2, bad, G)
    with pytest.raises(InputError, match="gallery row"):
        plant_hubs("centroid", 2, A, np.zeros_like(G))
