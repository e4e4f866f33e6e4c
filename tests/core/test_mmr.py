"""core.mmr: Qdrant's MMR with the relevance supplied by the caller.

Fed the candidates' raw similarity it must give what Qdrant's own ``NearestQuery(mmr=...)`` gives
(qdrant-client local mode: the same ids, in the same order, with the same scores); fed any other
relevance it must run the same greedy selection (checked against a literal transcription of it).
"""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.local.distances import calculate_distance_core
from qdrant_client.local.utils import last_argmax, swap_remove

from dbnorm_qdrant.core.mmr import mmr
from dbnorm_qdrant.datasets import load_sample
from dbnorm_qdrant.errors import InputError

DISTANCES = ("Cosine", "Dot", "Euclid")
QUERIES = (0, 7, 123, 1001)


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture(scope="module")
def local(sample):
    """Local-mode Qdrant with the sample gallery in one collection per distance."""
    client = QdrantClient(":memory:")
    G = sample.gallery
    for dist in DISTANCES:
        client.create_collection(dist, vectors_config=models.VectorParams(size=G.shape[1], distance=dist))
        points = [models.PointStruct(id=i, vector=g.tolist()) for i, g in enumerate(G)]
        client.upload_points(dist, points, wait=True)
    yield client
    client.close()


def _query(sample, qi, dist):
    q = sample.queries[qi].astype(np.float32)
    return q * np.float32(1.7) if dist == "Dot" else q  # Dot: not unit, so scale matters


def _qdrant_relevance(points, dist):
    """Qdrant's internal similarity to the query from the scores it returns (Euclid: -distance^2)."""
    s = np.array([p.score for p in points], dtype=np.float64)
    return -(s**2) if dist == "Euclid" else s


def _check_against_qdrant(client, q, dist, diversity, candidates_limit, limit=10, collection=None):
    collection = collection or dist
    cand = client.query_points(collection, query=q.tolist(), limit=candidates_limit, with_vectors=True).points
    V = np.array([p.vector for p in cand], dtype=np.float32)
    order, scores = mmr(_qdrant_relevance(cand, dist), V, dist, diversity, limit)
    mmr_query = models.Mmr(diversity=diversity, candidates_limit=candidates_limit)
    query = models.NearestQuery(nearest=q.tolist(), mmr=mmr_query)
    ref = client.query_points(collection, query=query, limit=limit).points
    assert [cand[i].id for i in order] == [p.id for p in ref]
    shown = np.sqrt(-scores) if dist == "Euclid" else scores  # Qdrant shows Euclid distances
    np.testing.assert_allclose(shown, [p.score for p in ref], rtol=1e-5)
    return order


@pytest.mark.parametrize("candidates_limit", [20, 100])
@pytest.mark.parametrize("diversity", [None, 0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("dist", ["Cosine", "Dot"])
def test_mmr_equals_qdrant_mmr(local, sample, dist, diversity, candidates_limit):
    for qi in QUERIES:
        order = _check_against_qdrant(local, _query(sample, qi, dist), dist, diversity, candidates_limit)
        assert len(order) == 10
        if diversity == 0.0:  # relevance only: the nearest order (diversity > 0: see below)
            assert list(order) == list(range(10))


@pytest.mark.parametrize("diversity", [None, 0.5, 1.0])
def test_mmr_equals_qdrant_mmr_on_euclid(local, sample, diversity):
    for qi in QUERIES[:2]:
        _check_against_qdrant(local, _query(sample, qi, "Euclid"), "Euclid", diversity, 50)


def test_diversity_changes_the_order(local, sample):
    """Not vacuous: MMR with diversity differs from the nearest ranking on the sample."""
    changed = 0
    for qi in QUERIES:
        order = _check_against_qdrant(local, _query(sample, qi, "Cosine"), "Cosine", 0.5, 100)
        changed += list(order) != list(range(10))
    assert changed >= 2


def test_limit_above_the_candidates_and_a_single_candidate(local, sample):
    q = _query(sample, 3, "Cosine")
    order = _check_against_qdrant(local, q, "Cosine", 0.5, 5, limit=10)
    assert sorted(order) == list(range(5))
    assert list(_check_against_qdrant(local, q, "Cosine", 0.5, 1, limit=10)) == [0]


def test_exact_ties_are_broken_like_qdrant():
    """Duplicated vectors make exact ties in relevance and MMR score: Qdrant picks the *last*
    maximum among the pending candidates, kept in swap_remove order (np.argmax would differ)."""
    base = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1], [0, 0, 1, 1]], dtype=np.float32)
    G = np.repeat(base, 4, axis=0)  # 20 points, 5 distinct vectors, 4 copies each
    client = QdrantClient(":memory:")
    client.create_collection("t", vectors_config=models.VectorParams(size=4, distance="Dot"))
    client.upsert("t", [models.PointStruct(id=i, vector=g.tolist()) for i, g in enumerate(G)], wait=True)
    q = np.array([1.0, 1.0, 0.5, 0.0], dtype=np.float32)
    for diversity in (0.0, 0.3, 0.5, 0.9, 1.0):
        order = _check_against_qdrant(client, q, "Dot", diversity, 20, limit=8, collection="t")
        if diversity == 0.0:  # pure relevance: the first pick is the last of the tied best
            assert order[0] != 0
    client.close()


def _reference_mmr(relevance, vectors, dist, diversity, limit):
    """Qdrant's loop written out literally (full similarity matrix, qdrant-client's helpers)."""
    lam = 1.0 - (0.5 if diversity is None else diversity)
    V = np.asarray(vectors, dtype=np.float64)
    sim = np.stack([calculate_distance_core(V[i], V.copy(), models.Distance(dist)) for i in range(len(V))])
    pending = list(range(len(V)))
    selected = [swap_remove(pending, last_argmax([relevance[i] for i in pending]))]
    while len(selected) < limit and pending:
        scores = [lam * relevance[i] - (1 - lam) * max(sim[i, j] for j in selected) for i in pending]
        selected.append(swap_remove(pending, last_argmax(scores)))
    return selected


@pytest.mark.parametrize("dist", ["Cosine", "Dot", "Euclid", "Manhattan"])
def test_any_relevance_runs_qdrants_selection(dist):
    """The normalised relevance is not the similarity to the query: the selection still follows
    Qdrant's loop over it (random relevance, random vectors, a rounded relevance for ties)."""
    rng = np.random.default_rng(5)
    for trial in range(6):
        V = rng.standard_normal((40, 6)).astype(np.float32)
        rel = rng.standard_normal(40)
        div = float(rng.uniform())
        if trial % 2:  # many exact ties in relevance, and (diversity 0) in the MMR score
            rel, div = np.round(rel), 0.0 if trial == 1 else div
        order, scores = mmr(rel, V, dist, div, 12)
        assert list(order) == _reference_mmr(rel, V, dist, div, 12)
        np.testing.assert_array_equal(scores, rel[order])


def test_extremes_of_diversity():
    rng = np.random.default_rng(2)
    V = rng.standard_normal((30, 5))
    rel = rng.standard_normal(30)
    order, _ = mmr(rel, V, "Cosine", 0.0, 10)
    assert list(order) == list(np.argsort(-rel)[:10])  # diversity 0: by relevance only
    order, _ = mmr(rel, V, "Cosine", 1.0, 2)
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    sims = U @ U[order[0]]
    sims[order[0]] = np.inf
    assert order[0] == np.argmax(rel) and order[1] == np.argmin(sims)  # then the least similar


def test_accepts_distance_enum_int_relevance_and_no_candidates():
    V = np.eye(3, dtype=np.float32)
    order, scores = mmr(np.array([1, 3, 2]), V, models.Distance.DOT, None, 2)
    assert list(order) == [1, 2] and scores.dtype == np.float64
    order, scores = mmr(np.zeros(0), np.zeros((0, 3)), "Cosine", 0.5, 10)
    assert order.shape == scores.shape == (0,) and order.dtype == np.int64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"diversity": -0.1}, r"diversity must be .*>= 0 and <= 1.*default 0\.5"),
        ({"diversity": 1.5}, r"diversity must be .*<= 1"),
        ({"diversity": float("nan")}, r"diversity"),
        ({"diversity": "high"}, r"diversity"),
        ({"limit": 0}, r"limit must be an integer >= 1.*number of points MMR selects"),
        ({"limit": 2.0}, r"limit must be an integer"),
        ({"relevance": np.ones((4, 1))}, r"relevance must be a 1-D numeric array.*p\.score"),
        ({"relevance": np.ones(3)}, r"vectors has 4 rows but relevance has 3 scores; pass one vector"),
        ({"relevance": np.array([1.0, np.nan, 0.0, 0.0])}, r"relevance contains 1 NaN"),
        ({"vectors": np.ones(4)}, r"vectors must be 2-D.*reshape"),
        ({"distance": "cos"}, r"distance must be one of Cosine, Dot, Euclid, Manhattan"),
    ],
)
def test_bad_input_names_the_fix(kwargs, match):
    args = {"relevance": np.ones(4), "vectors": np.ones((4, 3)), "distance": "Cosine", "diversity": 0.5}
    args["limit"] = 2
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        mmr(**args)
