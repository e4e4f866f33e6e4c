"""The engine-native lane of DBNormEdgeShard (dbnorm_qdrant/edge/fast.py): the plain
requests it serves come back exactly as the layer's whole way returns them, and everything
it is not sure of (first queries, selectors, vectors, gated methods, bad vectors, stale
statistics, uncached candidates) takes the whole way, with its answers and errors."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

qe = pytest.importorskip("qdrant_edge", reason='qdrant-edge-py is not installed: pip install "dbnorm-qdrant[edge]"')

from dbnorm_qdrant.core.centering import unit_rows  # noqa: E402
from dbnorm_qdrant.edge import DBNormEdgeShard  # noqa: E402
from dbnorm_qdrant.errors import InputError  # noqa: E402
from dbnorm_qdrant.qdrant import BankSet  # noqa: E402
from dbnorm_qdrant.qdrant.quarantine import Quarantine  # noqa: E402

DIM = 16
N_POINTS = 300


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    f = lambda n: unit_rows(rng.normal(size=(n, DIM))).astype(np.float32)  # noqa: E731
    return {"G": f(N_POINTS), "Q": f(10), "QB": f(120), "GB": f(90)}


def _shard(path, G, ids=None):
    cfg = qe.EdgeConfig(vectors={"v": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)})
    s = qe.EdgeShard.create(str(path), cfg)
    ids = list(range(len(G))) if ids is None else ids
    s.update(qe.UpdateOperation.upsert_points(
        [qe.Point(pid, {"v": g.tolist()}, {"i": i, "odd": i % 2}) for i, (pid, g) in enumerate(zip(ids, G))]))
    return s, cfg


@pytest.fixture
def shard(tmp_path, data):
    s, cfg = _shard(tmp_path / "s", data["G"])
    yield s, cfg
    s.close()


def _wrap(shard, data, method="dualis", **kw):
    s, cfg = shard
    return DBNormEdgeShard(s, banks=BankSet(data["QB"], data["GB"]), params={"method": method}, config=cfg,
                           using="v", **{"candidates": 50, **kw})


def _req(q, **kw):
    return qe.QueryRequest(query=qe.Query.Nearest(np.asarray(q).tolist(), using="v"), **{"limit": 5, **kw})


def _whole_way(es, monkeypatch):
    """The same wrapper with the lane switched off: the layer's whole way answers."""
    monkeypatch.setattr(es.fast, "query", lambda r, ov: None)


def _same(a, b):
    assert [p.id for p in a] == [p.id for p in b]
    np.testing.assert_allclose([p.score for p in a], [p.score for p in b], rtol=1e-6, atol=1e-6)
    assert [p.payload for p in a] == [p.payload for p in b]
    assert [(p.version, p.vector, p.order_value) for p in a] == [(p.version, p.vector, p.order_value) for p in b]


FILTER = qe.Filter(must=[qe.FieldCondition(key="odd", match=qe.MatchValue(1))])
VARIANTS = [
    dict(),
    dict(limit=7, offset=3),
    dict(with_payload=True),
    dict(filter=FILTER, with_payload=True),
    dict(limit=50),  # limit == N: the user's request is the candidate query
    dict(limit=50, with_payload=True),
]


@pytest.mark.parametrize("mode", ["client", "server", "auto"])
def test_the_lane_answers_as_the_whole_way_does(shard, data, mode, monkeypatch):
    es = _wrap(shard, data, mode=mode)
    if mode != "client":
        es.precompute(progress=False)  # "auto" then takes the server path
    for _ in range(2):  # the first queries fill what the lane needs: the vector's description, a warm cache
        es.query(_req(data["Q"][0]), mode="client", candidates=N_POINTS)
    served = es.fast.served
    got = [[es.query(_req(q, **v)) for q in data["Q"]] for v in VARIANTS]
    thr = es.query(_req(data["Q"][0], limit=8))[4].score
    got.append([es.query(_req(data["Q"][0], limit=8, score_threshold=thr))])
    assert es.fast.served - served == len(data["Q"]) * len(VARIANTS) + 2  # every one of them in the lane
    assert len(got[-1][0]) == 5  # cut at the threshold
    assert all(p.id % 2 == 1 for r in got[3] for p in r)
    _whole_way(es, monkeypatch)
    want = [[es.query(_req(q, **v)) for q in data["Q"]] for v in VARIANTS]
    want.append([es.query(_req(data["Q"][0], limit=8, score_threshold=thr))])
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            _same(a, b)


def test_requests_the_lane_leaves_to_the_whole_way(shard, data):
    es = _wrap(shard, data, mode="client")
    q = data["Q"][0]
    es.query(_req(q))  # fills the cache
    es.query(_req(q))  # every candidate cached: the cache is warm, the lane may now serve
    assert es.fast.served == 0
    es.query(_req(q))
    assert es.fast.served == 1
    left = [
        _req(q, with_payload=["i"]),  # a selector
        _req(q, with_payload=qe.PayloadSelector.Include(["i"])),
        _req(q, with_vector=True),
        qe.QueryRequest(limit=5, query=qe.Query.Nearest(q.tolist())),  # the query object names no vector
    ]
    for r in left:
        out = es.query(r)
        assert len(out) == 5
    assert es.query(_req(q, with_vector=True))[0].vector is not None
    assert es.query(_req(q), with_raw_score=True)[0].payload["_dbnorm"]["raw_score"] > 0
    assert es.query(_req(q), method="is") and es.query(_req(q), beta_g=5.0)
    assert es.fast.served == 1
    # a gated method (dis) decides its gates on the whole way
    dis = _wrap(shard, data, method="dis", mode="client")
    for _ in range(3):
        dis.query(_req(q))
    assert dis.fast.served == 0


def test_bad_vectors_get_the_layers_errors(shard, data):
    es = _wrap(shard, data, mode="client")
    es.query(_req(data["Q"][0]), candidates=N_POINTS)
    es.query(_req(data["Q"][0]))
    bad = data["Q"][1].copy()
    bad[3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        es.query(_req(bad))
    bad[3] = np.inf
    with pytest.raises(InputError, match="inf"):
        es.query(_req(bad))
    with pytest.raises(InputError, match="zero"):
        es.query(_req(np.zeros(DIM)))
    with pytest.raises(InputError, match="dimension"):
        es.query(_req(data["Q"][1][:8]))
    tiny = np.full(DIM, 1e-30)  # not zero: printed in full by the engine, no digit 1-9 until the end
    assert len(es.query(_req(tiny))) == 5
    assert es.fast.served == 1


def test_new_points_and_stale_statistics_take_the_whole_way(shard, data):
    s, _ = shard
    es = _wrap(shard, data, mode="auto")
    es.precompute(progress=False)
    q = data["Q"][2]
    es.query(_req(q))  # the first query reads the vector's description
    es.query(_req(q))
    assert es.fast.served == 1  # the server path, in the lane
    # a point right on the query, added after the precompute: no statistics stored
    s.update(qe.UpdateOperation.upsert_points([qe.Point(5000, {"v": q.tolist()}, {"i": -1})]))
    top = es.query(_req(q))
    assert top[0].id == 5000 and es.fast.served == 1  # the formula pushed it up: the whole way answered
    # the client path: a candidate not cached yet takes the whole way, which caches it
    cl = _wrap(shard, data, mode="client")
    for _ in range(3):
        cl.query(_req(data["Q"][3]))
    n0 = cl.fast.served
    assert n0 >= 1
    s.update(qe.UpdateOperation.upsert_points([qe.Point(5001, {"v": data["Q"][3].tolist()}, {"i": -2})]))
    assert cl.query(_req(data["Q"][3]))[0].id == 5001  # not cached: the lane hands over, the whole way computes it
    assert cl.fast.served == n0
    cl.query(_req(data["Q"][3]))  # all cached again: warm
    assert cl.query(_req(data["Q"][3]))[0].id == 5001 and cl.fast.served == n0 + 1


def test_auto_before_a_precompute_notices_one(shard, data):
    es = _wrap(shard, data)  # mode="auto", nothing stored: the client path
    other = _wrap(shard, data)
    q = data["Q"][4]
    for _ in range(3):
        es.query(_req(q))
    assert es.fast.served == 1
    other.precompute(progress=False)  # another wrapper stores the statistics
    es.query(_req(q))  # the lane sees them on the best candidate and hands over; the whole way switches
    assert es.db.core.payload_ready(("edge", "v", es.db.core.normalizer("edge", es.db.core.known_info("edge", "v"))
                                     .fingerprint))
    es.query(_req(q))
    assert es.fast.served == 2  # now the server path, in the lane


def test_quarantined_points_stay_out_of_the_lane(shard, data, monkeypatch):
    monkeypatch.setattr(Quarantine, "check_s", 3600.0)
    s, _ = shard
    es = _wrap(shard, data, mode="client")
    q = data["Q"][5]
    es.query(_req(q), candidates=N_POINTS)
    best = es.query(_req(q))[0].id
    s.update(qe.UpdateOperation.set_payload([best], {"_dbnorm": {"quarantined": True}}))
    es.db.core.quarantine.learned("edge", True)
    served = es.fast.served
    for kw in (dict(), dict(filter=FILTER if best % 2 else None)):
        out = es.query(_req(q, **kw))
        assert best not in [p.id for p in out]
    assert es.fast.served == served + 2
    es.db.core.quarantine.forget("edge")  # a check is due: the whole way runs it
    assert best not in [p.id for p in es.query(_req(q))] and es.fast.served == served + 2


def test_uuid_ids(tmp_path, data):
    ids = [str(uuid.UUID(int=7 * i + 1)) for i in range(N_POINTS)]
    s, cfg = _shard(tmp_path / "u", data["G"], ids)
    try:
        es = DBNormEdgeShard(s, banks=BankSet(data["QB"], data["GB"]), params={"method": "dualis"}, config=cfg,
                             using="v", candidates=50, mode="client")
        first = es.query(_req(data["Q"][0]))
        es.query(_req(data["Q"][0]))
        again = es.query(_req(data["Q"][0]))
        assert es.fast.served == 1 and all(type(p.id) is uuid.UUID for p in again)
        assert [p.id for p in again] == [p.id for p in first]
        np.testing.assert_allclose([p.score for p in again], [p.score for p in first], rtol=1e-6)
    finally:
        s.close()


@pytest.mark.parametrize("mode", ["client", "server"])
def test_search_is_query_by_vector(shard, data, mode):
    es = _wrap(shard, data, mode=mode)
    if mode == "server":
        es.precompute(progress=False)
    es.query(_req(data["Q"][0]), candidates=N_POINTS, mode="client")
    es.query(_req(data["Q"][0]))
    served = es.fast.served
    for q in data["Q"]:
        for kw in (dict(limit=5), dict(limit=7, offset=2, with_payload=True), dict(limit=5, filter=FILTER)):
            got = es.search(q.astype(np.float64), **kw)  # any float array; the engine keeps float32
            _same(got, es.query(_req(q, **kw)))
    assert es.fast.served - served == 2 * 3 * len(data["Q"])  # both ways in the lane
    raw = es.search(data["Q"][0], limit=3, rerank=False)
    assert [p.id for p in raw] == [p.id for p in es.shard.query(_req(data["Q"][0], limit=3))]
    got = es.search(data["Q"][0], limit=4, with_vector=True, mode="client")  # the whole way: vectors asked
    assert all(len(p.vector["v"]) == DIM for p in got) and es.fast.served - served == 2 * 3 * len(data["Q"])


def test_search_refuses_what_query_refuses(shard, data):
    es = _wrap(shard, data, mode="client")
    es.search(data["Q"][0], candidates=N_POINTS)
    bad = data["Q"][1].copy()
    bad[0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        es.search(bad)
    with pytest.raises(InputError, match="zero"):
        es.search(np.zeros(DIM))
    with pytest.raises(InputError, match="dimension"):
        es.search(data["Q"][1][:8])
    with pytest.raises(InputError, match="cannot rerank"):
        es.search(np.stack([data["Q"][1], data["Q"][2]]))  # a multivector
    with pytest.raises(InputError, match="no dense vector 'w'"):
        es.search(data["Q"][1], using="w")
    with pytest.raises(InputError, match="a sequence of floats"):
        es.search(["a"] * DIM)
    # finite and non-zero in float64 but not in the engine's float32: refused as query() refuses them
    with pytest.raises(InputError, match="zero"):
        es.search([1e-46] * DIM)
    with pytest.raises(InputError, match="infinite"):
        es.search([1e39] + [0.1] * (DIM - 1))
    with pytest.raises(InputError, match="limit must be a positive integer"):
        es.search(data["Q"][1], limit=-1)
    bad = data["Q"][1].tolist()
    bad[5] = None
    with pytest.raises(InputError, match="sequence of floats|list of numbers"):
        es.search(bad)
