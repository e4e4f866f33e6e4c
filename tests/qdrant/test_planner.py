"""The query planner (dbnorm_qdrant.qdrant.tree): hybrid search, nested prefetch, MMR,
recommend, groups -- on local mode, the edge engine and a server when reachable.

The checks that could fail: the engine path (one Qdrant query: fusion inside the engine)
and the client path (fusion here, with qdrant-client's functions) give the same ranking and
scores; each normalised branch equals the wrapper's own dense ranking; groups follow the
normalised order; MMR is Qdrant's MMR on the normalised relevance; normalised hybrid beats
plain hybrid on the shipped WordNet sample.
"""

from __future__ import annotations

import inspect
import logging
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.hybrid.fusion import reciprocal_rank_fusion

from dbnorm_qdrant import InputError
from dbnorm_qdrant.banks import BankSet
from dbnorm_qdrant.core.mmr import mmr
from dbnorm_qdrant.datasets import load_sample
from dbnorm_qdrant.qdrant import DBNormClient
from dbnorm_qdrant.qdrant.client import RANKING

BM25 = pytest.importorskip("dbnorm_qdrant.edge.bm25", reason="the BM25 encoder needs qdrant-edge-py").BM25Encoder
N_POINTS = 600  # the sample's first 600 gallery items: quick on local mode, every path exercised
ALL = 5000  # candidates= above the collection size: the client path ranks the whole collection


def _make(qclient, n_points: int, extra_points: list | None = None):
    s = load_sample()
    enc = BM25()
    name = f"hy_{uuid.uuid4().hex[:8]}"
    qclient.create_collection(
        name, vectors_config={"dense": models.VectorParams(size=s.dim, distance=models.Distance.COSINE)},
        sparse_vectors_config={"words": models.SparseVectorParams(modifier=models.Modifier.IDF)})
    docs = enc.embed_documents(s.gallery_texts[:n_points])
    qclient.upsert(name, [models.PointStruct(id=i, vector={"dense": s.gallery[i].tolist(), "words": docs[i]},
                                             payload={"i": i, "grp": i % 7, "meta": {"g": i % 3}})
                          for i in range(n_points)] + (extra_points or []), wait=True)
    db = DBNormClient(qclient, banks=BankSet(s.query_bank, s.gallery_bank), params={"method": "dualis"})
    return db, name, s, enc


@pytest.fixture(scope="module")
def hybrid(qclient):
    """A collection with a dense vector "dense" (Cosine) and a BM25 sparse vector "words" (IDF)
    of the sample's gallery; payload {"i": i, "grp": i % 7, "meta": {"g": i % 3}}; a wrapper with
    dualis banks. Shared by the module: tests that write use ``fresh``."""
    db, name, s, enc = _make(qclient, N_POINTS)
    yield db, name, s, enc
    qclient.delete_collection(name)


@pytest.fixture
def fresh(qclient):
    """A small collection of its own (200 points) for a test that writes to it."""
    db, name, s, enc = _make(qclient, 200)
    yield db, name, s, enc
    qclient.delete_collection(name)


def _req(s, enc, i, query=None, limit=10, dense_limit=50):
    return dict(prefetch=[models.Prefetch(query=s.queries[i].tolist(), using="dense", limit=dense_limit),
                          models.Prefetch(query=enc.embed_query(s.query_texts[i]), using="words", limit=50)],
                query=query or models.FusionQuery(fusion=models.Fusion.RRF), limit=limit)


def _ids(res):
    return [p.id for p in res.points]


def _same_ranking(a, b, rtol=1e-4):
    """Equal scores, and the same ids within each run of tied scores (RRF ties two points of equal
    rank in different branches; qdrant-client and the engine order such ties differently). The
    last run may continue past the limit, so only its scores are compared."""
    sa, sb = [p.score for p in a.points], [p.score for p in b.points]
    np.testing.assert_allclose(sa, sb, rtol=rtol)
    runs: list[list[int]] = []
    for j, v in enumerate(sa):
        if runs and abs(sa[runs[-1][0]] - v) <= rtol * abs(v):
            runs[-1].append(j)
        else:
            runs.append([j])
    for run in runs[:-1]:
        assert {a.points[j].id for j in run} == {b.points[j].id for j in run}, (_ids(a), _ids(b))


FUSIONS = [models.FusionQuery(fusion=models.Fusion.RRF), models.FusionQuery(fusion=models.Fusion.DBSF),
           models.RrfQuery(rrf=models.Rrf(k=60, weights=[2.0, 1.0]))]


@pytest.mark.parametrize("fusion", FUSIONS, ids=["rrf", "dbsf", "rrf-k60-weighted"])
def test_hybrid_client_path_equals_engine_path(hybrid, fusion):
    """Fusion done here (qdrant-client's formulas over the normalised branch) equals the fusion
    Qdrant's engine does over the index vector's branch, ids and scores."""
    db, name, s, enc = hybrid
    db.precompute(name, using="dense", index=True, progress=False)
    try:
        for i in range(8):
            kw = _req(s, enc, i, fusion)
            assert db.explain(name, **kw)["path"] == "engine"
            eng = db.query_points(name, **kw)
            cli = db.query_points(name, **kw, mode="client", candidates=ALL)
            assert db.explain(name, **kw, mode="client")["path"] == "client"
            _same_ranking(eng, cli)
    finally:
        db.drop_index(name, using="dense")


def test_hybrid_branch_is_the_wrappers_dense_ranking(hybrid):
    """The client path fuses exactly the wrapper's own normalised dense ranking with Qdrant's raw
    sparse branch (qdrant-client's reciprocal_rank_fusion on the same inputs)."""
    db, name, s, enc = hybrid
    plain = QdrantClient.query_points if isinstance(db.client, QdrantClient) else type(db.client).query_points
    for i in range(5):
        dense = db.query_points(name, s.queries[i].tolist(), using="dense", limit=50, mode="client").points
        sparse = plain(db.client, name, enc.embed_query(s.query_texts[i]), using="words", limit=50).points
        want = reciprocal_rank_fusion([dense, sparse], limit=10)
        got = db.query_points(name, **_req(s, enc, i), mode="client")
        assert _ids(got) == [p.id for p in want]
        np.testing.assert_allclose([p.score for p in got.points], [p.score for p in want], rtol=1e-6)
        raw = db.query_points(name, **_req(s, enc, i), rerank=False)
        assert raw.points  # the plain hybrid runs too (and differs from the normalised one somewhere below)


def test_server_path_and_payload_shape(hybrid):
    """With statistics in the payload (no index vector), a hybrid query is one engine query with a
    formula over the dense branch; payload and vectors come back as asked, the reserved key out."""
    db, name, s, enc = hybrid
    db.precompute(name, using="dense", progress=False)
    kw = _req(s, enc, 3)
    assert db.explain(name, **kw)["nodes"][1]["mode"] == "server"
    srv = db.query_points(name, **kw, with_payload=["grp"], with_vectors=["dense"])
    cli = db.query_points(name, **kw, mode="client", candidates=ALL, with_payload=["grp"], with_vectors=["dense"])
    _same_ranking(srv, cli)
    for p in srv.points + cli.points:
        assert p.payload == {"grp": p.id % 7} and set(p.vector) == {"dense"}


def test_nested_prefetch_rescoring_and_filters(hybrid):
    """A dense query re-scoring a fused prefetch (normalised at both levels), under a filter that
    Qdrant propagates into every branch: engine and client paths agree, every hit passes it."""
    db, name, s, enc = hybrid
    flt = models.Filter(must=[models.FieldCondition(key="grp", match=models.MatchAny(any=[0, 1, 2]))])
    db.precompute(name, using="dense", index=True, progress=False)
    try:
        for i in range(4):
            inner = _req(s, enc, i, models.FusionQuery(fusion=models.Fusion.DBSF))  # DBSF: no tied scores at 30
            kw = dict(prefetch=models.Prefetch(prefetch=inner["prefetch"], query=inner["query"], limit=30),
                      query=s.queries[i].tolist(), using="dense", query_filter=flt, limit=10, with_payload=True)
            eng = db.query_points(name, **kw)
            cli = db.query_points(name, **kw, mode="client", candidates=ALL)
            assert _ids(eng) == _ids(cli) and all(p.payload["grp"] in (0, 1, 2) for p in eng.points)
            np.testing.assert_allclose([p.score for p in eng.points], [p.score for p in cli.points], rtol=1e-4)
            # the outer query is the normalised dense score of each prefetched point
            dense = {p.id: p.score for p in db.query_points(name, s.queries[i].tolist(), using="dense", limit=N_POINTS,
                                                             mode="client", candidates=ALL).points}
            np.testing.assert_allclose([p.score for p in cli.points], [dense[p.id] for p in cli.points], rtol=1e-5)
    finally:
        db.drop_index(name, using="dense")


def test_formula_over_a_normalised_branch_needs_the_engine(hybrid):
    db, name, s, enc = hybrid
    formula = models.FormulaQuery(formula=models.SumExpression(sum=["$score", 0.0]))
    kw = dict(prefetch=[models.Prefetch(query=s.queries[0].tolist(), using="dense", limit=20)], query=formula, limit=5)
    with pytest.raises(InputError, match="precompute"):
        db.query_points(name, **kw, mode="client")
    db.precompute(name, using="dense", index=True, progress=False)
    try:
        got = db.query_points(name, **kw)  # the index path: $score is the normalised score
        want = db.query_points(name, s.queries[0].tolist(), using="dense", limit=5)
        assert _ids(got) == _ids(want)
    finally:
        db.drop_index(name, using="dense")


def test_groups_follow_the_normalised_order(hybrid):
    """query_points_groups: each group's head is its first point in the normalised query_points
    order (every query), its hits in that order; the raw heads differ for some queries."""
    db, name, s, _ = hybrid
    differs = 0
    for i in range(30):
        q = s.queries[i].tolist()
        g = db.query_points_groups(name, "grp", query=q, using="dense", limit=4, group_size=2, mode="client",
                                   with_payload=False)
        order = db.query_points(name, q, using="dense", limit=200, with_payload=True, mode="client").points
        first: dict[int, list[int]] = {}
        for p in order:
            first.setdefault(p.payload["grp"], []).append(p.id)
        assert [gr.id for gr in g.groups] == list(first)[:4]
        assert all([h.id for h in gr.hits] == first[gr.id][:2] for gr in g.groups)
        assert all(h.payload is None for gr in g.groups for h in gr.hits)
        raw = db.query_points_groups(name, "grp", query=q, using="dense", limit=4, group_size=2, rerank=False) \
            if hasattr(db.client, "query_points_groups") else None
        differs += raw is not None and [h.id for gr in raw.groups for h in gr.hits] != \
            [h.id for gr in g.groups for h in gr.hits]
    assert differs > 0 or not hasattr(db.client, "query_points_groups")


def test_groups_bad_input_and_lookup(hybrid):
    db, name, s, _ = hybrid
    q = s.queries[0].tolist()
    assert db.query_points_groups(name, "no_such_key", query=q, using="dense").groups == []  # as Qdrant
    with pytest.raises(InputError, match="group_size"):
        db.query_points_groups(name, "grp", query=q, using="dense", group_size=0)
    with pytest.raises(InputError, match="group_by"):
        db.query_points_groups(name, "", query=q, using="dense")
    g = db.query_points_groups(name, "grp", query=q, using="dense", limit=2, group_size=1, with_lookup=name)
    assert all(gr.lookup is not None and gr.lookup.id == gr.id for gr in g.groups)


@pytest.mark.parametrize("diversity", [0.0, 0.5])
def test_mmr_is_qdrants_mmr_on_the_normalised_relevance(hybrid, diversity):
    db, name, s, _ = hybrid
    for i in range(4):
        q = s.queries[i].tolist()
        got = db.query_points(name, models.NearestQuery(nearest=q, mmr=models.Mmr(diversity=diversity,
                                                                                 candidates_limit=40)),
                              using="dense", limit=8, mode="client", candidates=ALL)
        cand = db.query_points(name, q, using="dense", limit=40, with_vectors=["dense"], mode="client",
                               candidates=ALL).points
        order, scores = mmr(np.array([p.score for p in cand]), np.array([p.vector["dense"] for p in cand]),
                            "Cosine", diversity, 8)
        assert _ids(got) == [cand[j].id for j in order]
        np.testing.assert_allclose([p.score for p in got.points], scores, rtol=1e-6)
        assert all(p.vector is None for p in got.points)  # fetched for MMR, cut back as asked
    with pytest.raises(InputError, match="candidates_limit"):
        db.query_points(name, models.NearestQuery(nearest=q, mmr=models.Mmr(candidates_limit=3)), using="dense",
                        limit=5)


def test_recommend_average_vector_is_a_normalised_dense_query(hybrid):
    db, name, s, _ = hybrid
    rec = models.RecommendQuery(recommend=models.RecommendInput(positive=[1, 2], negative=[3]))
    got = db.query_points(name, rec, using="dense", limit=10, mode="client", candidates=ALL)
    g = s.gallery[[1, 2, 3]].astype(np.float64)
    g /= np.linalg.norm(g, axis=1, keepdims=True)  # Qdrant stores Cosine vectors unit-norm
    vec = 2 * g[:2].mean(0) - g[2]
    want = db.query_points(name, vec.tolist(), using="dense", limit=13, mode="client", candidates=ALL)
    assert _ids(got) == [i for i in _ids(want) if i not in (1, 2, 3)][:10]
    with pytest.raises(InputError, match="best_score"):
        db.query_points(name, models.RecommendQuery(recommend=models.RecommendInput(
            positive=[1], strategy=models.RecommendStrategy.BEST_SCORE)), using="dense")


def test_what_runs_as_it_is(hybrid, caplog):
    """Sparse queries and fusions of sparse branches only have nothing to normalise: they run as
    Qdrant runs them (a debug log says so); a branch on a missing vector is an InputError."""
    db, name, s, enc = hybrid
    sp = enc.embed_query(s.query_texts[0])
    assert _ids(db.query_points(name, sp, using="words", limit=5)) == \
        _ids(db.query_points(name, sp, using="words", limit=5, rerank=False))
    kw = dict(prefetch=[models.Prefetch(query=sp, using="words", limit=20),
                        models.Prefetch(query=enc.embed_query(s.query_texts[1]), using="words", limit=20)],
              query=models.FusionQuery(fusion=models.Fusion.RRF), limit=5)
    with caplog.at_level(logging.DEBUG, logger="dbnorm_qdrant"):
        assert _ids(db.query_points(name, **kw)) == _ids(db.query_points(name, **kw, rerank=False))
    assert any("as-is" in r.getMessage() for r in caplog.records)
    assert db.explain(name, **kw)["path"] == "as-is"
    with pytest.raises(InputError, match=r"prefetch\[0\] uses vector 'nope'.*'dense' \(dense\), 'words' \(sparse\)"):
        db.query_points(name, prefetch=[models.Prefetch(query=s.queries[0].tolist(), using="nope")],
                        query=models.FusionQuery(fusion=models.Fusion.RRF))
    with pytest.raises(InputError, match="with_raw_score"):
        db.query_points(name, **_req(s, enc, 0), with_raw_score=True)


def test_using_none_on_a_hybrid_collection_means_its_dense_vector(hybrid):
    db, name, s, _ = hybrid
    assert _ids(db.query_points(name, s.queries[0].tolist(), limit=5)) == \
        _ids(db.query_points(name, s.queries[0].tolist(), using="dense", limit=5))


def _r1_ties_split(pts, answer) -> float:
    """1/t when the answer is one of the t results tied at the top (RRF ties a branch's first with
    the other's first; the engine orders such ties differently from call to call)."""
    top = [p.id for p in pts if abs(p.score - pts[0].score) <= 1e-9 * abs(pts[0].score)]
    return (answer in top) / len(top)


@pytest.mark.parametrize("fusion", FUSIONS[:2], ids=["rrf", "dbsf"])
def test_normalised_hybrid_beats_plain_hybrid_on_the_sample(hybrid, fusion):
    """Real data (the shipped WordNet sample, 600 points, 300 queries whose answer is among them)."""
    db, name, s, enc = hybrid
    qs = [i for i in range(len(s.queries)) if s.ground_truth[i] < N_POINTS][:300]
    hit = {"plain": 0.0, "norm": 0.0}
    for i in qs:
        kw = _req(s, enc, i, fusion)
        hit["plain"] += _r1_ties_split(db.query_points(name, **kw, rerank=False).points, s.ground_truth[i])
        hit["norm"] += _r1_ties_split(db.query_points(name, **kw).points, s.ground_truth[i])
    assert hit["norm"] > hit["plain"] + 3, hit  # at least one point of R@1 on 300 queries


def test_every_ranking_method_of_the_client_has_an_entry():
    """A new qdrant-client method that ranks points (it takes a query or returns scored points,
    groups or a similarity matrix) fails here until RANKING (and docs/qdrant.md) says what the
    wrapper does with it."""
    ranking = []
    for name, fn in inspect.getmembers(QdrantClient, inspect.isfunction):
        if name.startswith("_"):
            continue
        sig = inspect.signature(fn)
        text = f"{sig.return_annotation} {list(sig.parameters)}"
        if any(w in text for w in ("ScoredPoint", "QueryResponse", "GroupsResult", "SearchMatrix", "'query'",
                                   "'query_vector'", "'order_by'", "'facet_filter'")):
            ranking.append(name)
    missing = sorted(set(ranking) - set(RANKING))
    assert not missing, f"ranking methods without an entry in dbnorm_qdrant.qdrant.client.RANKING: {missing}"
    assert {"query_points", "query_points_groups", "search_matrix_pairs"} <= set(ranking)
    assert set(RANKING) <= {n for n, _ in inspect.getmembers(QdrantClient)} | {"search"}
    docs = (inspect.getfile(DBNormClient).rsplit("dbnorm_qdrant", 1)[0] + "docs/qdrant.md")
    table = open(docs, encoding="utf-8").read()
    assert all(f"`{m}`" in table for m in RANKING), "docs/qdrant.md lists every entry of RANKING"


def test_matrix_queries_are_refused_unless_rerank_false(hybrid):
    db, name, _, _ = hybrid
    with pytest.raises(InputError, match="rerank=False"):
        db.search_matrix_pairs(name, sample=10, limit=2, using="dense")
    if hasattr(db.client, "search_matrix_pairs"):
        assert db.search_matrix_pairs(name, sample=10, limit=2, using="dense", rerank=False).pairs


# ------------------------------------------------------------------ edge cases a review found
def test_an_empty_prefetch_under_a_dense_query_returns_no_points(hybrid):
    db, name, s, _ = hybrid
    none = models.Filter(must=[models.FieldCondition(key="grp", match=models.MatchValue(value=99))])
    kw = dict(prefetch=[models.Prefetch(query=s.queries[0].tolist(), using="dense", filter=none)],
              query=s.queries[0].tolist(), using="dense")
    assert db.query_points(name, **kw, mode="client").points == []
    assert db.query_points_groups(name, "grp", **kw, mode="client").groups == []


def test_lookup_from_the_same_collection_leaves_the_point_out(hybrid):
    db, name, s, _ = hybrid
    lk = models.LookupLocation(collection=name, vector="dense")
    got = _ids(db.query_points(name, 5, using="dense", lookup_from=lk, limit=5, mode="client", candidates=ALL))
    by_id = _ids(db.query_points(name, 5, using="dense", limit=5, mode="client", candidates=ALL))
    assert 5 not in got and got == by_id  # as a query by id of this collection


def test_groups_apply_the_payload_selector_as_qdrant(hybrid):
    db, name, s, _ = hybrid
    q = s.queries[1].tolist()
    for sel, want in ((["i"], {"i"}), (models.PayloadSelectorExclude(exclude=["i", "meta"]), {"grp", "_dbnorm"}),
                      (["meta.g"], {"meta"})):
        g = db.query_points_groups(name, "grp", query=q, using="dense", limit=2, group_size=2, with_payload=sel)
        keys = {k for gr in g.groups for h in gr.hits for k in h.payload}
        assert keys <= want and keys - {"_dbnorm"}, (sel, keys)  # ("_dbnorm": there once precomputed)
    g = db.query_points_groups(name, "grp", query=models.NearestQuery(nearest=q, mmr=models.Mmr(candidates_limit=30)),
                               using="dense", limit=3, group_size=2)
    assert 1 <= len(g.groups) <= 3  # an MMR query groups its candidates_limit points (no error)


def test_mmr_over_a_prefetch_keeps_candidates_limit(hybrid):
    db, name, s, _ = hybrid
    q = s.queries[2].tolist()
    kw = dict(prefetch=[models.Prefetch(query=q, using="dense", limit=60)], using="dense", limit=5,
              query=models.NearestQuery(nearest=q, mmr=models.Mmr(diversity=0.9, candidates_limit=10)))
    got = _ids(db.query_points(name, **kw, mode="client", candidates=ALL))
    best10 = _ids(db.query_points(name, q, using="dense", limit=10, mode="client", candidates=ALL))
    assert len(got) == 5 and set(got) <= set(best10)


def test_requests_qdrant_refuses_are_refused(hybrid):
    db, name, s, enc = hybrid
    with pytest.raises(InputError, match="no query to rank them"):
        db.query_points(name, prefetch=[models.Prefetch(query=s.queries[0].tolist(), using="dense")])
    with pytest.raises(InputError, match="does not use a vector"):
        db.query_points(name, **_req(s, enc, 0), using="dense")
    with pytest.raises(InputError, match=r"requests\[1\]\.prefetch\[0\] uses vector 'nope'"):
        db.query_batch_points(name, [models.QueryRequest(query=s.queries[0].tolist(), using="dense"),
                                     models.QueryRequest(prefetch=[models.Prefetch(query=s.queries[0].tolist(),
                                                                                   using="nope")],
                                                         query=models.FusionQuery(fusion=models.Fusion.RRF))])


def test_a_context_query_on_a_sparse_vector_runs_as_it_is(hybrid):
    db, name, s, enc = hybrid
    ctx = models.ContextQuery(context=[models.ContextPair(positive=1, negative=2)])
    assert _ids(db.query_points(name, ctx, using="words", limit=5)) == \
        _ids(db.query_points(name, ctx, using="words", limit=5, rerank=False))
    with pytest.raises(InputError, match="context query"):
        db.query_points(name, ctx, using="dense", limit=5)


def test_stale_statistics_on_the_server_path_fall_back_and_the_index_vector_stays_hidden(fresh):
    """Points upserted after precompute have no statistics: a server-path branch notices it (its
    probe) even when they are not in the fused result, and the client path serves the query."""
    db, name, s, enc = fresh
    rep = db.precompute(name, using="dense", progress=False)
    assert rep.written == 200
    db.client.upsert(name, [models.PointStruct(id=1000 + j, vector={"dense": s.gallery[300 + j].tolist()})
                            for j in range(20)], wait=True)
    for i in range(300, 306):
        kw = _req(s, enc, i, limit=3)
        srv = db.query_points(name, **kw, mode="server")
        cli = db.query_points(name, **kw, mode="client", candidates=ALL)
        _same_ranking(srv, cli)
    rep = db.precompute(name, using="dense", progress=False, index=True)  # the 20 dense-only points too
    assert rep.written == 20
    db.client.upsert(name, [models.PointStruct(id=2000, vector={"words": enc.embed_documents(["guitar"])[0]})],
                     wait=True)  # a sparse-only point: no dense vector, nothing to compute
    assert db.precompute(name, using="dense", progress=False).without_vector == 1
    sp = enc.embed_query(s.query_texts[0])
    for res in (db.query_points(name, sp, using="words", limit=3, with_vectors=True),
                db.query_points(name, **_req(s, enc, 0), with_vectors=True)):
        assert res.points and all(not any(k.startswith("_dbnorm") for k in p.vector) for p in res.points)


def test_with_raw_score_keeps_a_rescoring_request_on_the_client_path(fresh):
    db, name, s, enc = fresh
    db.precompute(name, using="dense", progress=False, index=True)
    kw = dict(prefetch=[models.Prefetch(query=enc.embed_query(s.query_texts[0]), using="words", limit=30)],
              query=s.queries[0].tolist(), using="dense", limit=5, with_raw_score=True)
    from dbnorm_qdrant.qdrant import raw_score

    pts = db.query_points(name, **kw).points
    assert pts and all(raw_score(p) is not None for p in pts)
