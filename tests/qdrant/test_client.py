"""Behaviour of the wrapper on small collections (local mode, and a server when reachable)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from qdrant_client import models

from dbnorm_qdrant.errors import InputError as _IE
from dbnorm_qdrant.core.methods import Params
from dbnorm_qdrant.qdrant import BankSet, DBNormClient, point_key, raw_score

from qdrant_helpers import make_collection


def _expected(small, method, idx=None, q=0, k=5):
    banks = BankSet(small["QB"], small["GB"])
    nz = banks.normalizer(Params(method=method), unit=True)
    G = small["G"] if idx is None else small["G"][idx]
    S = nz.scores(small["Q"][q : q + 1], G)[0]
    order = np.argsort(-S, kind="stable")[:k]
    return [int(i) for i in (order if idx is None else np.asarray(idx)[order])]


@pytest.fixture
def db(qclient, small, cname):
    make_collection(qclient, cname, small["G"])
    yield DBNormClient(qclient, banks=BankSet(small["QB"], small["GB"]), params={"method": "dualis"}), cname
    qclient.delete_collection(cname)


def test_matches_matrix_level_and_passthrough(db, small):
    d, name = db
    res = d.query_points(name, query=small["Q"][0], limit=5, candidates=400)
    assert [p.id for p in res.points] == _expected(small, "dualis")
    assert res.points[0].payload["i"] == res.points[0].id and "_dbnorm" not in res.points[0].payload
    assert res.points[0].vector is None
    assert d.get_collection(name).points_count == 400  # __getattr__ passes through
    plain = d.query_points(name, query=small["Q"][0], limit=5, rerank=False)
    assert [p.id for p in plain.points] == [p.id for p in d.client.query_points(name, query=small["Q"][0], limit=5).points]
    old = d.search(name, small["Q"][0].tolist(), limit=5, candidates=400)
    assert [p.id for p in old] == [p.id for p in res.points]


def test_cached_queries_take_the_compiled_path(db, small, monkeypatch):
    d, name = db
    q = small["Q"][3]
    d.query_points(name, query=q, limit=5, candidates=400)  # fills the cache
    monkeypatch.setattr(d.cache, "get_rows", lambda *a, **k: pytest.fail("the general path was taken"))
    res = d.query_points(name, query=q, limit=5, candidates=400, with_raw_score=True)
    assert [p.id for p in res.points] == _expected(small, "dualis", q=3)
    raw = {p.id: p.score for p in d.client.query_points(name, query=q, limit=400).points}
    assert all(raw_score(p) == raw[p.id] and p.score < raw_score(p) for p in res.points)
    assert all(p.payload["i"] == p.id and p.vector is None for p in res.points)
    assert all(p.payload["_dbnorm"] == {"raw_score": raw[p.id]} for p in res.points)


def test_filter_selectors_offset_threshold(db, small):
    d, name = db
    flt = models.Filter(must=[models.FieldCondition(key="odd", match=models.MatchValue(value=1))])
    res = d.query_points(name, query=small["Q"][0], query_filter=flt, limit=5, candidates=200,
                         with_payload=["odd"], with_vectors=True)
    odd = list(range(1, 400, 2))
    assert [p.id for p in res.points] == _expected(small, "dualis", idx=odd)
    assert all(p.payload == {"odd": 1} for p in res.points)
    assert all(len(p.vector) == 16 for p in res.points)
    ex = d.query_points(name, query=small["Q"][0], limit=3, with_payload=models.PayloadSelectorExclude(exclude=["tags"]))
    assert all(set(p.payload) == {"i", "odd", "nested"} for p in ex.points)
    full = d.query_points(name, query=small["Q"][0], limit=6, candidates=400)
    off = d.query_points(name, query=small["Q"][0], limit=3, offset=3, candidates=400)
    assert [p.id for p in off.points] == [p.id for p in full.points][3:]
    thr = full.points[2].score
    cut = d.query_points(name, query=small["Q"][0], limit=6, candidates=400, score_threshold=thr)
    assert [p.id for p in cut.points] == [p.id for p in full.points][:3]
    assert all(raw_score(p) is None for p in full.points)  # not asked for


def test_named_vectors(qclient, small, cname):
    make_collection(qclient, cname, small["G"], named=True)
    d = DBNormClient(qclient, banks=BankSet(small["QB"], small["GB"]), params={"method": "is"})
    res = d.query_points(cname, query=small["Q"][0], using="text", limit=5, candidates=400, with_vectors=["other"])
    assert [p.id for p in res.points] == _expected(small, "is")
    assert set(res.points[0].vector) == {"other"}
    with pytest.raises(_IE, match="dense vectors"):
        d.query_points(cname, query=small["Q"][0], limit=5)
    qclient.delete_collection(cname)


def test_precompute_keeps_user_payload_and_is_resumable(db, small):
    d, name = db
    before = {r.id: r.payload for r in d.client.scroll(name, limit=1000)[0]}
    rep = d.precompute(name, progress=False, page_size=64)
    assert rep.written == 400
    after = {r.id: r.payload for r in d.client.scroll(name, limit=1000)[0]}
    strip = lambda pl: json.dumps({k: v for k, v in pl.items() if k != "_dbnorm"}, sort_keys=True)  # noqa: E731
    assert {i: strip(p) for i, p in after.items()} == {i: json.dumps(p, sort_keys=True) for i, p in before.items()}
    assert all(after[i]["_dbnorm"]["fp"] for i in after)
    assert d.precompute(name, progress=False).skipped == 400  # resumable: nothing left to do
    srv = d.query_points(name, query=small["Q"][0], limit=5, candidates=400, mode="server")
    assert [p.id for p in srv.points] == _expected(small, "dualis")


def test_missing_point_and_new_point(db, small):
    d, name = db
    first = d.query_points(name, query=small["Q"][0], limit=5, candidates=400)
    top = first.points[0].id
    d.client.delete(name, points_selector=models.PointIdsList(points=[top]), wait=True)
    again = d.query_points(name, query=small["Q"][0], limit=5, candidates=400)
    assert top not in [p.id for p in again.points] and len(again.points) == 5
    assert [p.id for p in again.points] == [p.id for p in first.points[1:]] + [again.points[-1].id]


def test_threads_and_cache(db, small):
    d, name = db
    want = [_expected(small, "dualis", q=i) for i in range(len(small["Q"]))]
    errors = []

    def work(i):
        try:
            for _ in range(2):
                r = d.query_points(name, query=small["Q"][i], limit=5, candidates=400)
                assert [p.id for p in r.points] == want[i]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(small["Q"]))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert len(d.cache) == 400


def test_uuid_ids_and_gallery_bank_from_collection(qclient, small, cname):
    import uuid

    ids = [str(uuid.UUID(int=i + 1)) for i in range(400)]
    make_collection(qclient, cname, small["G"], ids=ids)
    d = DBNormClient(qclient, banks=BankSet(small["QB"]), params={"method": "is"})
    vecs, keys = d.sample_gallery_bank(cname, 100, seed=1)
    assert vecs.shape == (100, 16) and set(keys) <= {point_key(i) for i in ids}
    assert np.array_equal(keys, d.sample_gallery_bank(cname, 100, seed=1)[1])
    d.configure(cname, banks=BankSet(small["QB"], vecs, keys), params={"method": "dualis"})
    r = d.query_points(cname, query=small["Q"][0], limit=5)
    assert len(r.points) == 5 and isinstance(r.points[0].id, str)
    qclient.delete_collection(cname)


@pytest.mark.parametrize("kind", ["uuid", "large"])
def test_uuid_and_large_ids_rank_like_small_ids(qclient, small, cname, kind, monkeypatch):
    """Ids the cache's dense index does not hold (UUIDs; ints beyond its bound): same
    ranking as the matrix level, cold and cached, the cached rerank compiled too."""
    import uuid

    ids = [str(uuid.UUID(int=i + 1)) if kind == "uuid" else 2**62 + 3 * i for i in range(400)]
    back = {pid: i for i, pid in enumerate(ids)}
    make_collection(qclient, cname, small["G"], ids=ids)
    d = DBNormClient(qclient, banks=BankSet(small["QB"], small["GB"]), params={"method": "dualis"})
    for q in (0, 1, 0):  # query 0 again: its candidates come from the cache
        res = d.query_points(cname, query=small["Q"][q], limit=5, candidates=400)
        assert [back[p.id] for p in res.points] == _expected(small, "dualis", q=q)
    assert len(d.cache) == 400
    monkeypatch.setattr(d.cache, "get_rows", lambda *a, **k: pytest.fail("the general path was taken"))
    res = d.query_points(cname, query=small["Q"][2], limit=5, candidates=400)
    assert [back[p.id] for p in res.points] == _expected(small, "dualis", q=2)
    qclient.delete_collection(cname)


def test_errors(qclient, small, cname):
    d = DBNormClient(qclient, banks=BankSet(small["QB"], small["GB"]), params={"method": "dualis"})
    with pytest.raises(_IE, match="does not exist"):
        d.query_points("no_such_collection", query=small["Q"][0])
    make_collection(qclient, cname, small["G"], distance=models.Distance.MANHATTAN)
    with pytest.raises(_IE, match="Manhattan"):
        d.query_points(cname, query=small["Q"][0])
    qclient.delete_collection(cname)
    make_collection(qclient, cname, small["G"])
    for q, what in [
        (models.SparseVector(indices=[1], values=[1.0]), "is not a sparse vector of collection"),
        (models.FusionQuery(fusion=models.Fusion.RRF), "fusion query fuses the results of prefetch branches"),
        (models.RecommendQuery(recommend=models.RecommendInput(positive=[1], strategy="best_score")), "best_score"),
        (models.DiscoverQuery(discover=models.DiscoverInput(target=1, context=[])), "discover"),
        ([[0.1] * 16, [0.2] * 16], "multivector"),
    ]:
        with pytest.raises(_IE, match=what):
            d.query_points(cname, query=q)
    for kw, what in [({"limit": -1}, "limit must be a positive integer"),
                     ({"limit": 0}, "limit must be a positive integer"),
                     ({"offset": -2}, "offset must be a non-negative integer"),
                     ({"limit": 2.5}, "limit must be")]:
        with pytest.raises(_IE, match=what):
            d.query_points(cname, query=small["Q"][0], **kw)
    d8 = DBNormClient(qclient, banks=BankSet(small["QB"][:, :8], small["GB"][:, :8]), params={"method": "dualis"})
    with pytest.raises(_IE, match="dimension 8"):
        d8.query_points(cname, query=small["Q"][0])
    qclient.delete_collection(cname)
