"""EdgeClient runs hybrid and exploration queries as Qdrant does: sparse vectors with the IDF
modifier, fusion (RRF with Qdrant's default k, weighted RRF, DBSF) over prefetch trees with
filters at every level, MMR, recommend / discover / context. Each is compared with
qdrant-client's local mode on the same collection (the shipped sample: texts, 384-d dense
vectors, BM25 sparse vectors of the texts)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

qe = pytest.importorskip("qdrant_edge", reason='qdrant-edge-py is not installed: pip install "dbnorm-qdrant[edge]"')

from qdrant_client import QdrantClient, models  # noqa: E402

from dbnorm_qdrant.datasets import load_sample  # noqa: E402
from dbnorm_qdrant.edge import BM25Encoder, EdgeClient  # noqa: E402
from dbnorm_qdrant.edge import _queries as qv  # noqa: E402
from dbnorm_qdrant.errors import InputError  # noqa: E402

N = 1000  # points of the sample used
QUERIES = range(0, 40, 4)
RRF = models.FusionQuery(fusion=models.Fusion.RRF)
DBSF = models.FusionQuery(fusion=models.Fusion.DBSF)
#: RRF without structural ties (equal weights give rank r of either branch the same score, and the
#: engines order such ties differently: a prefetch's limit or a fusion above then sees different points)
RRF_W = models.RrfQuery(rrf=models.Rrf(weights=[1.0, 0.77]))


def _config(client):
    client.create_collection(
        "h", vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
        sparse_vectors_config={"words": models.SparseVectorParams(modifier=models.Modifier.IDF),
                               "plain": models.SparseVectorParams()})


@pytest.fixture(scope="module")
def data():
    s = load_sample()
    enc = BM25Encoder()
    # BM25 weights scaled by 1 + 1e-5 * i: no two points tie exactly on a sparse query (the engine and
    # local mode order exact ties differently, and a fusion then sees different ranks)
    docs = [models.SparseVector(indices=d.indices, values=[x * (1 + 1e-5 * i) for x in d.values])
            for i, d in enumerate(enc.embed_documents(s.gallery_texts[:N]))]
    # a point whose text has no token gets no sparse vector: local mode would count an empty one in
    # the IDF's document count, the engine (as a server) does not
    points = [models.PointStruct(id=i, vector={"dense": s.gallery[i].tolist(),
                                               **({"words": d, "plain": d} if d.indices else {})},
                                 payload={"i": i, "odd": i % 2, "g": i % 5}) for i, d in enumerate(docs)]
    assert sum(not d.indices for d in docs) > 0  # the case above is exercised
    return {"dense": [s.queries[j].astype(np.float32).tolist() for j in QUERIES],
            "sparse": [enc.embed_query(s.query_texts[j]) for j in QUERIES], "points": points}


@pytest.fixture(scope="module")
def clients(data, tmp_path_factory):
    """(edge, local): the same collection ``h`` on EdgeClient and on local mode."""
    local = QdrantClient(":memory:")
    edge = EdgeClient(tmp_path_factory.mktemp("hybrid"))
    for c in (edge, local):
        _config(c)
        c.upsert("h", data["points"])
    yield edge, local
    edge.close()
    local.close()


def _assert_same(got, want, rtol=1e-4, ordered=False, offset=False):
    """Same points and scores (float32 tolerance). Unless ``ordered``, points whose scores tie
    within ``rtol`` may come in any order (the engine and local mode break exact ties
    differently: RRF gives rank r of one branch and rank r of another the same score), and
    the last run of equal scores (and the first, after an ``offset``) may be cut from a longer
    tie, so may hold different points."""
    g = [(p.id, p.score) for p in getattr(got, "points", got)]
    w = [(p.id, p.score) for p in getattr(want, "points", want)]
    assert len(g) == len(w), (g, w)
    np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=rtol, atol=1e-6)
    if ordered:
        assert [i for i, _ in g] == [i for i, _ in w]
        return
    i = 0
    while i < len(w):
        j = i + 1
        while j < len(w) and math.isclose(w[j][1], w[i][1], rel_tol=rtol, abs_tol=1e-6):
            j += 1
        if j < len(w) and (i > 0 or not offset):
            assert {x for x, _ in g[i:j]} == {x for x, _ in w[i:j]}, (i, g, w)
        i = j


def _both(clients, **kw):
    edge, local = clients
    return edge.query_points("h", **kw), local.query_points("h", **kw)


# ------------------------------------------------------------------ sparse vectors with a modifier
def test_sparse_modifier_is_kept_reported_and_survives_reopening(clients, data, tmp_path):
    edge, _ = clients
    params = edge.get_collection("h").config.params.sparse_vectors
    assert params["words"].modifier == models.Modifier.IDF and params["plain"].modifier is None
    on_disk = json.loads((edge.root / "h" / "edge_config.json").read_text())["sparse_vectors"]
    assert on_disk["words"]["modifier"] == "idf" and "modifier" not in on_disk["plain"]

    c = EdgeClient(tmp_path)
    c.create_collection("x", vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
                        sparse_vectors_config={"words": models.SparseVectorParams(
                            modifier=models.Modifier.IDF,
                            index=models.SparseIndexParams(full_scan_threshold=500, on_disk=False))})
    c.upsert("x", [models.PointStruct(id=p.id, vector={k: v for k, v in p.vector.items() if k != "plain"})
                   for p in data["points"][:200]])
    before = c.query_points("x", query=data["sparse"][0], using="words", limit=10)
    c.close()
    c = EdgeClient(tmp_path)  # reopened from the folder (edge_config.json)
    sp = c.get_collection("x").config.params.sparse_vectors["words"]
    assert sp.modifier == models.Modifier.IDF
    assert sp.index.full_scan_threshold == 500 and sp.index.on_disk is False
    _assert_same(c.query_points("x", query=data["sparse"][0], using="words", limit=10), before, rtol=1e-6,
                 ordered=True)
    c.close()


def test_sparse_queries_apply_idf_as_local_mode(clients, data):
    found = 0
    for qs in data["sparse"]:
        got, want = _both(clients, query=qs, using="words", limit=10)
        _assert_same(got, want)
        plain, _ = _both(clients, query=qs, using="plain", limit=10)
        if got.points:
            found += 1
            assert plain.points[0].score < got.points[0].score  # IDF weighs the terms (every idf > 1 here)
    assert found >= len(QUERIES) // 2
    got, want = _both(clients, query=7, using="words", limit=5)  # a sparse query by point id
    assert 7 not in [p.id for p in got.points]
    _assert_same(got, want)


# ------------------------------------------------------------------ fusion over prefetch trees
def _hybrid(data, k, limit=30, **kw):
    return [models.Prefetch(query=data["dense"][k], using="dense", limit=limit, **kw),
            models.Prefetch(query=data["sparse"][k], using="words", limit=limit, **kw)]


@pytest.mark.parametrize("fusion", [RRF, DBSF, models.RrfQuery(rrf=models.Rrf(k=5, weights=[2.0, 0.5])),
                                    models.RrfQuery(rrf=models.Rrf()), models.RrfQuery(rrf=models.Rrf(k=60))],
                         ids=["rrf", "dbsf", "weighted-rrf", "rrf-no-k", "rrf-k60"])
def test_fusion_matches_local_mode(clients, data, fusion):
    for k in range(len(QUERIES)):
        got, want = _both(clients, prefetch=_hybrid(data, k), query=fusion, limit=10)
        assert len(got.points) == 10
        _assert_same(got, want)


def test_default_rrf_k_is_qdrants(clients, data):
    edge, local = clients
    assert qv.RRF_K == 2
    from qdrant_client.hybrid.fusion import DEFAULT_RANKING_CONSTANT_K
    assert DEFAULT_RANKING_CONSTANT_K == qv.RRF_K
    plain = edge.query_points("h", prefetch=_hybrid(data, 0), query=RRF, limit=10)
    k2 = edge.query_points("h", prefetch=_hybrid(data, 0), query=models.RrfQuery(rrf=models.Rrf(k=2)), limit=10)
    k60 = edge.query_points("h", prefetch=_hybrid(data, 0), query=models.RrfQuery(rrf=models.Rrf(k=60)), limit=10)
    _assert_same(plain, k2, rtol=1e-6)
    assert plain.points[0].score >= 1 / 2 - 1e-6  # rank 0 of a branch scores 1 / (0 + k)
    assert not np.allclose([p.score for p in plain.points], [p.score for p in k60.points])


def test_nested_prefetches_filters_threshold_offset(clients, data):
    f = lambda **r: models.Filter(must=[models.FieldCondition(key="i", range=models.Range(**r))])  # noqa: E731
    odd = models.Filter(must=[models.FieldCondition(key="odd", match=models.MatchValue(value=1))])
    for k in range(len(QUERIES)):
        inner = models.Prefetch(prefetch=_hybrid(data, k, limit=8), query=RRF_W, limit=6, filter=f(gte=100))
        req = dict(prefetch=[inner, models.Prefetch(query=data["dense"][k], using="dense", limit=5)], query=DBSF,
                   query_filter=f(lt=900), limit=6)
        got, want = _both(clients, **req)
        _assert_same(got, want)
        # a dense query re-scoring a sparse prefetch, filter on top, threshold and offset
        req = dict(prefetch=models.Prefetch(query=data["sparse"][k], using="words", limit=40), query=data["dense"][k],
                   using="dense", query_filter=odd, limit=5, offset=2, score_threshold=0.05)
        got, want = _both(clients, **req)
        _assert_same(got, want, offset=True)
        # a formula over a prefetch (the server path's form)
        formula = models.FormulaQuery(formula=models.SumExpression(sum=[
            "$score", models.MultExpression(mult=[0.05, models.FieldCondition(key="g", match=models.MatchValue(value=2))])]))
        got, want = _both(clients, prefetch=_hybrid(data, k)[0], query=formula, limit=8)
        _assert_same(got, want)
        # fusion with a threshold and an offset
        got, want = _both(clients, prefetch=_hybrid(data, k), query=RRF, limit=5, offset=3, score_threshold=0.1)
        _assert_same(got, want, offset=True)


def test_a_levels_filter_reaches_its_prefetches(clients, data):
    """Qdrant filters the leaves of the prefetch tree with every filter above them: the
    branches' limits then count filtered points (a filter applied only after the fusion
    would return fewer than ``limit`` points here)."""
    odd = models.Filter(must=[models.FieldCondition(key="odd", match=models.MatchValue(value=1))])
    edge, _ = clients
    more = 0
    for k in range(len(QUERIES)):
        inner = models.Prefetch(prefetch=_hybrid(data, k, limit=5), query=RRF_W, limit=10)
        got, want = _both(clients, prefetch=[inner], query=RRF, query_filter=odd, limit=10)
        assert all(p.id % 2 == 1 for p in got.points)
        _assert_same(got, want)
        after = [p for p in edge.query_points("h", prefetch=[inner], query=RRF, limit=10).points if p.id % 2]
        more += len(got.points) > len(after)
    assert more >= len(QUERIES) // 2


def test_query_by_id_over_prefetches_and_batches(clients, data):
    edge, local = clients
    got, want = _both(clients, prefetch=_hybrid(data, 1), query=11, using="dense", limit=10)
    assert 11 not in [p.id for p in got.points]
    _assert_same(got, want)
    reqs = [models.QueryRequest(prefetch=_hybrid(data, k), query=fu, limit=7, with_payload=True)
            for k in range(3) for fu in (RRF, DBSF)]
    for g, w, one in zip(edge.query_batch_points("h", reqs), local.query_batch_points("h", reqs), reqs):
        _assert_same(g, w)
        _assert_same(g, edge.query_points("h", prefetch=one.prefetch, query=one.query, limit=7), rtol=1e-6)
        assert all(p.payload["i"] == p.id for p in g.points)


# ------------------------------------------------------------------ MMR
@pytest.mark.parametrize("diversity, candidates", [(None, None), (0.0, 40), (0.3, 40), (0.5, 100), (1.0, 25)])
def test_mmr_matches_local_mode(clients, data, diversity, candidates):
    mmr = models.Mmr(diversity=diversity, candidates_limit=candidates)
    for k in range(len(QUERIES)):
        q = models.NearestQuery(nearest=data["dense"][k], mmr=mmr)
        got, want = _both(clients, query=q, using="dense", limit=10)
        assert len(got.points) == 10
        _assert_same(got, want, ordered=True)
        got, want = _both(clients, query=q, using="dense", limit=5, offset=3, score_threshold=0.1)
        _assert_same(got, want, ordered=True)


def test_mmr_by_id_and_over_prefetches(clients, data):
    mmr = models.Mmr(diversity=0.6, candidates_limit=30)
    got, want = _both(clients, query=models.NearestQuery(nearest=21, mmr=mmr), using="dense", limit=10)
    assert 21 not in [p.id for p in got.points]
    _assert_same(got, want, ordered=True)
    for k in range(len(QUERIES)):  # MMR over the union of a dense and a sparse branch
        q = models.NearestQuery(nearest=data["dense"][k], mmr=models.Mmr(diversity=0.4, candidates_limit=20))
        got, want = _both(clients, prefetch=_hybrid(data, k, limit=40), query=q, using="dense", limit=8)
        assert len(got.points) == 8
        _assert_same(got, want, ordered=True)


def test_mmr_inside_a_prefetch_is_refused(clients, data):
    """The engine runs a prefetch's MMR unlike local mode (a leaf: a plain nearest search; with
    inner prefetches: MMR over all their points, no ``candidates_limit`` cut): refused, with
    the top-level MMR (which matches) named."""
    edge, _ = clients
    q = models.NearestQuery(nearest=data["dense"][0], mmr=models.Mmr(diversity=0.6, candidates_limit=30))
    for pf in (models.Prefetch(query=q, using="dense", limit=15),
               models.Prefetch(prefetch=_hybrid(data, 0), query=q, using="dense", limit=15)):
        with pytest.raises(InputError, match="MMR inside a prefetch.*top level"):
            edge.query_points("h", prefetch=[pf, _hybrid(data, 0)[1]], query=RRF, limit=10)


# ------------------------------------------------------------------ recommend / discover / context
def test_recommend_discover_context_match_local_mode(clients, data):
    vec = data["points"][30].vector["dense"]
    for strategy in (None, models.RecommendStrategy.AVERAGE_VECTOR, models.RecommendStrategy.BEST_SCORE,
                     models.RecommendStrategy.SUM_SCORES):
        for pos, neg in (([5, 9], [11]), ([5], []), ([vec, 9], [11, 12])):
            q = models.RecommendQuery(recommend=models.RecommendInput(positive=pos, negative=neg, strategy=strategy))
            got, want = _both(clients, query=q, using="dense", limit=10)
            assert not {5, 9, 11, 12} & {p.id for p in got.points}  # examples given by id are left out
            _assert_same(got, want)
    q = models.RecommendQuery(recommend=models.RecommendInput(positive=[5, 9], negative=[11], strategy="best_score"))
    _assert_same(*_both(clients, query=q, using="words", limit=10))  # sparse, by id, with IDF
    pair = models.ContextPair(positive=5, negative=11)
    for k in range(3):
        q = models.DiscoverQuery(discover=models.DiscoverInput(target=data["dense"][k], context=[pair]))
        _assert_same(*_both(clients, query=q, using="dense", limit=10))
        q = models.DiscoverQuery(discover=models.DiscoverInput(target=9, context=pair))
        _assert_same(*_both(clients, query=q, using="dense", limit=10))
    q = models.ContextQuery(context=[pair, models.ContextPair(positive=vec, negative=12)])
    got, want = _both(clients, query=q, using="dense", limit=10)
    _assert_same(got, want)
    # as a prefetch of a fusion (the engine's forms inside a tree)
    q = models.RecommendQuery(recommend=models.RecommendInput(positive=[5], negative=[11]))
    pf = [models.Prefetch(query=q, using="dense", limit=20), _hybrid(data, 0)[1]]
    _assert_same(*_both(clients, prefetch=pf, query=RRF, limit=10))


# ------------------------------------------------------------------ bad input
def _refused(clients, match, **kw):
    """Local mode refuses it (ValueError), EdgeClient with an InputError matching ``match``;
    nothing written."""
    edge, local = clients
    n = edge.count("h").count
    with pytest.raises(ValueError):
        local.query_points("h", **kw)
    with pytest.raises(InputError, match=match):
        edge.query_points("h", **kw)
    assert edge.count("h").count == n


def test_bad_requests_are_refused_like_local_mode(clients, data):
    q = data["dense"][0]
    _refused(clients, r"vector name.*nope.*dense \['dense'\], sparse \['plain', 'words'\]",
             prefetch=[models.Prefetch(query=q, using="nope", limit=5), _hybrid(data, 0)[1]], query=RRF)
    _refused(clients, "1 weight.* for 2 prefetch.*one weight per prefetch",
             prefetch=_hybrid(data, 0), query=models.RrfQuery(rrf=models.Rrf(weights=[1.0])))
    _refused(clients, "k=0 is invalid.*k >= 1", prefetch=_hybrid(data, 0), query=models.RrfQuery(rrf=models.Rrf(k=0)))
    _refused(clients, "takes no using=", prefetch=_hybrid(data, 0), query=RRF, using="dense")
    _refused(clients, "none; give prefetch=", query=DBSF)
    _refused(clients, r"diversity=1.5 is invalid.*\[0, 1\]",
             query=models.NearestQuery(nearest=q, mmr=models.Mmr(diversity=1.5)), using="dense")
    _refused(clients, "candidates_limit=20000 is invalid",
             query=models.NearestQuery(nearest=q, mmr=models.Mmr(candidates_limit=20000)), using="dense")
    _refused(clients, "needs positive examples",
             query=models.RecommendQuery(recommend=models.RecommendInput(positive=[], negative=[3])), using="dense")
    _refused(clients, "needs context pairs", query=models.ContextQuery(context=[]), using="dense")
    _refused(clients, "point 5000 .*does not exist",
             query=models.RecommendQuery(recommend=models.RecommendInput(positive=[5000])), using="dense")


def test_mmr_candidates_below_limit_and_the_engines_limits(clients, data):
    """``candidates_limit`` below ``limit``: Qdrant returns the candidates it has, no error
    (local mode and the engine agree); MMR on a sparse vector: refused (the engine cannot)."""
    q = models.NearestQuery(nearest=data["dense"][0], mmr=models.Mmr(candidates_limit=3))
    got, want = _both(clients, query=q, using="dense", limit=10)
    assert len(got.points) == 3
    _assert_same(got, want, ordered=True)
    edge, _ = clients
    with pytest.raises(InputError, match="MMR on the sparse vector 'words' is not supported.*dense vector"):
        edge.query_points("h", query=models.NearestQuery(nearest=data["sparse"][0], mmr=models.Mmr()), using="words")
    with pytest.raises(InputError, match="average_vector.*sparse.*strategy='best_score'"):
        edge.query_points("h", query=models.RecommendQuery(recommend=models.RecommendInput(positive=[5])),
                          using="words")


def test_a_plain_dense_query_takes_none_of_the_new_branches(clients, data, monkeypatch):
    edge, _ = clients
    monkeypatch.setattr(qv, "scoring_query", lambda *a: pytest.fail("plain query took the new branch"))
    assert len(edge.query_points("h", query=data["dense"][0], using="dense", limit=5).points) == 5
    assert len(edge.query_points("h", query=models.NearestQuery(nearest=data["dense"][0]), using="dense").points) == 10
    with pytest.raises(pytest.fail.Exception, match="new branch"):  # the patch is where the new forms go
        edge.query_points("h", prefetch=_hybrid(data, 0), query=RRF)
