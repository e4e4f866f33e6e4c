"""DBNormEdgeShard: the engine's own requests in, the engine's result shape out, reranked
exactly like DBNormClient on local mode; statistics in the payload; bad input refused
with the shard left as it was."""

from __future__ import annotations

import importlib
import json
import sys
import uuid

import numpy as np
import pytest

qe = pytest.importorskip("qdrant_edge", reason='qdrant-edge-py is not installed: pip install "dbnorm-qdrant[edge]"')

from qdrant_client import QdrantClient, models  # noqa: E402

from dbnorm_qdrant.core.centering import unit_rows  # noqa: E402
from dbnorm_qdrant.edge import DBNormEdgeShard, EdgeClient, ScoredPoint  # noqa: E402
from dbnorm_qdrant.errors import InputError  # noqa: E402
from dbnorm_qdrant.qdrant import BankSet, DBNormClient  # noqa: E402

DIM = 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    f = lambda n: unit_rows(rng.normal(size=(n, DIM))).astype(np.float32)  # noqa: E731
    return {"G": f(400), "Q": f(12), "QB": f(200), "GB": f(150)}


def _payload(i):
    return {"i": i, "odd": i % 2, "tags": ["a", str(i)], "nested": {"x": i / 3}}


def _make_shard(path, G, ids=None):
    cfg = qe.EdgeConfig(vectors={"v": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)})
    shard = qe.EdgeShard.create(str(path), cfg)
    ids = list(range(len(G))) if ids is None else ids
    shard.update(qe.UpdateOperation.upsert_points(
        [qe.Point(pid, {"v": g.tolist()}, _payload(i)) for i, (pid, g) in enumerate(zip(ids, G))]))
    return shard, cfg


@pytest.fixture
def shard(tmp_path, data):
    s, cfg = _make_shard(tmp_path / "s", data["G"])
    yield s, cfg, tmp_path / "s"
    s.close()


@pytest.fixture(scope="module")
def local(data):
    """DBNormClient on local mode over the same points: the reference."""
    c = QdrantClient(":memory:")
    c.create_collection("c", vectors_config={"v": models.VectorParams(size=DIM, distance=models.Distance.COSINE)})
    c.upsert("c", [models.PointStruct(id=i, vector={"v": g.tolist()}, payload=_payload(i))
                   for i, g in enumerate(data["G"])])
    return DBNormClient(c, banks=BankSet(data["QB"], data["GB"]), params={"method": "dualis"}, candidates=400,
                        mode="client")


def _wrap(shard, data, **kw):
    s, cfg, _ = shard
    kw.setdefault("config", cfg)
    return DBNormEdgeShard(s, banks=BankSet(data["QB"], data["GB"]), params={"method": "dualis"}, candidates=400,
                           using="v", **kw)


def _req(q, **kw):
    return qe.QueryRequest(query=qe.Query.Nearest(np.asarray(q).tolist(), using="v"), **{"limit": 5, **kw})


def test_query_and_batch_match_dbnormclient_on_local_mode(shard, data, local):
    es = _wrap(shard, data, mode="client")
    for q in range(4):
        got = es.query(_req(data["Q"][q], with_payload=True))
        want = local.query_points("c", query=data["Q"][q].tolist(), using="v", limit=5).points
        assert type(got) is list and all(type(p) is ScoredPoint for p in got)
        assert [p.id for p in got] == [p.id for p in want]
        np.testing.assert_allclose([p.score for p in got], [p.score for p in want], rtol=1e-5, atol=1e-6)
        # the payloads as the engine stores them (its float parsing may differ from Python's by one ulp)
        stored = [r.payload for r in shard[0].retrieve([p.id for p in got], True, False)]
        assert [p.payload for p in got] == stored and all(type(p.id) is int for p in got)
    batch = es.query_batch(qe.QueryBatchRequest([_req(q, limit=3) for q in data["Q"][:6]]))
    want = local.query_batch_points("c", [models.QueryRequest(query=q.tolist(), using="v", limit=3)
                                          for q in data["Q"][:6]])
    assert [[p.id for p in r] for r in batch] == [[p.id for p in r.points] for r in want]
    raw = es.query(_req(data["Q"][0]), rerank=False)  # the engine's own result, untouched
    assert type(raw[0]).__name__ == "ScoredPoint" and type(raw[0]) is not ScoredPoint
    assert es.count(qe.CountRequest()) == 400 and es.info().points_count == 400  # passthrough


def test_filters_selectors_offset_and_vectors(shard, data, local):
    es = _wrap(shard, data, path=shard[2], config=None)  # the configuration read from edge_config.json
    flt = qe.Filter(must=[qe.FieldCondition(key="odd", match=qe.MatchValue(1))],
                    must_not=[qe.FieldCondition(key="i", range=qe.RangeFloat(lt=50))])
    mflt = models.Filter(must=[models.FieldCondition(key="odd", match=models.MatchValue(value=1))],
                         must_not=[models.FieldCondition(key="i", range=models.Range(lt=50))])
    q = data["Q"][1]
    got = es.query(_req(q, filter=flt, with_payload=["odd", "i"], with_vector=True, limit=4, offset=2))
    want = local.query_points("c", query=q.tolist(), using="v", query_filter=mflt, with_payload=["odd", "i"],
                              with_vectors=True, limit=4, offset=2).points
    assert [p.id for p in got] == [p.id for p in want] and all(p.id % 2 == 1 and p.id >= 50 for p in got)
    assert all(p.payload == {"odd": 1, "i": p.id} for p in got)
    assert all(set(p.vector) == {"v"} and len(p.vector["v"]) == DIM for p in got)
    inc = es.query(_req(q, with_payload=qe.PayloadSelector.Include(["nested"])))
    assert all(set(p.payload) == {"nested"} and p.payload["nested"]["x"] == pytest.approx(p.id / 3) for p in inc)
    exc = es.query(_req(q, with_payload=qe.PayloadSelector.Exclude(["tags", "nested"])))
    assert all(p.payload == {"i": p.id, "odd": p.id % 2} for p in exc)
    assert all(p.payload is None and p.vector is None for p in es.query(_req(q)))
    thr = es.query(_req(q, limit=5))
    cut = es.query(_req(q, limit=5, score_threshold=thr[2].score))
    assert [p.id for p in cut] == [p.id for p in thr[:3]]


def test_server_mode_runs_a_formula_in_the_engine(shard, data, monkeypatch):
    es = _wrap(shard, data)
    before = {r.id: json.dumps(r.payload, sort_keys=True) for r in shard[0].scroll(qe.ScrollRequest(limit=1000))[0]}
    rep = es.precompute(progress=False)
    assert rep.written == 400
    after = shard[0].scroll(qe.ScrollRequest(limit=1000))[0]
    strip = lambda pl: json.dumps({k: v for k, v in pl.items() if k != "_dbnorm"}, sort_keys=True)  # noqa: E731
    assert {r.id: strip(r.payload) for r in after} == before  # the user's payload byte for byte
    schema = shard[0].info().payload_schema
    assert schema and all(k.startswith("_dbnorm.") for k in schema)  # indexes on our own key only
    seen = []
    orig = es.client.query_batch_points
    monkeypatch.setattr(es.client, "query_batch_points",
                        lambda collection_name, requests, **kw: seen.extend(r.query for r in requests)
                        or orig(collection_name, requests, **kw))
    reqs = [_req(q, limit=5) for q in data["Q"]]
    srv = es.query_batch(qe.QueryBatchRequest(reqs), mode="server")
    assert seen and all(isinstance(x, models.FormulaQuery) for x in seen)  # no fallback to the client path
    cli = es.query_batch(qe.QueryBatchRequest(reqs), mode="client")
    assert [[p.id for p in r] for r in srv] == [[p.id for p in r] for r in cli]
    for a, b in zip(srv, cli):
        np.testing.assert_allclose([p.score for p in a], [p.score for p in b], rtol=1e-5, atol=1e-5)


def test_index_mode_equals_the_client_rerank_and_survives_a_reload(shard, data):
    s, _, path = shard
    es = _wrap(shard, data, path=path, config=None)
    before = {r.id: r.vector["v"] for r in s.scroll(qe.ScrollRequest(limit=1000, with_vector=True))[0]}
    rep = es.precompute(progress=False, index=True)
    assert rep.index_written == 400 and rep.index_name in json.loads((path / "edge_config.json").read_text())["vectors"]
    reqs = [_req(q, limit=5, with_vector=True) for q in data["Q"]]
    ix = es.query_batch(qe.QueryBatchRequest(reqs), mode="index")
    cli = es.query_batch(qe.QueryBatchRequest(reqs), mode="client")  # N = 400: every point, exact
    assert [[p.id for p in r] for r in ix] == [[p.id for p in r] for r in cli]
    for a, b in zip(ix, cli):
        np.testing.assert_allclose([p.score for p in a], [p.score for p in b], rtol=1e-5, atol=1e-5)
        assert all(set(p.vector) == {"v"} for p in a)  # the index vector is not returned
    after = {r.id: r.vector["v"] for r in s.scroll(qe.ScrollRequest(limit=1000, with_vector=["v"]))[0]}
    assert all(np.asarray(after[i], np.float32).tobytes() == np.asarray(v, np.float32).tobytes()
               for i, v in before.items())  # the user's vector byte for byte
    s.close()  # a shard opened again knows its index vector (edge_config.json)
    s2 = qe.EdgeShard.load(str(path))
    try:
        es2 = _wrap((s2, None, path), data, path=path, config=None, mode="index")
        assert [p.id for p in es2.query(reqs[0])] == [p.id for p in ix[0]]
        assert es2.drop_index() == [rep.index_name]
        with pytest.raises(InputError, match="precompute"):
            es2.query(reqs[0])
        assert set(json.loads((path / "edge_config.json").read_text())["vectors"]) == {"v"}
    finally:
        s2.close()


def test_uuid_ids_come_back_as_uuids(tmp_path, data, local):
    ids = [uuid.UUID(int=i + 1) for i in range(len(data["G"]))]
    s, cfg = _make_shard(tmp_path / "u", data["G"], ids=ids)
    es = DBNormEdgeShard(s, banks=BankSet(data["QB"], data["GB"]), params={"method": "dualis"}, candidates=400,
                         using="v", distance="Cosine")  # the size probed from the engine
    got = es.query(_req(data["Q"][2]))
    want = local.query_points("c", query=data["Q"][2].tolist(), using="v", limit=5).points
    assert [p.id for p in got] == [ids[p.id] for p in want] and all(isinstance(p.id, uuid.UUID) for p in got)
    s.close()


def test_bad_input_is_refused_and_the_shard_is_unchanged(shard, data):
    s, cfg, path = shard
    banks = BankSet(data["QB"], data["GB"])
    with pytest.raises(InputError, match="no dense vector 'w'"):
        DBNormEdgeShard(s, banks=banks, config=cfg, using="w")
    with pytest.raises(InputError, match="dimension 8"):
        DBNormEdgeShard(s, banks=BankSet(data["QB"][:, :8], data["GB"][:, :8]), config=cfg, using="v")
    with pytest.raises(InputError, match="config="):
        DBNormEdgeShard(s, banks=banks, using="v")
    es = _wrap(shard, data)
    with pytest.raises(InputError, match="dimension"):
        es.query(_req(data["Q"][0][:8]))
    with pytest.raises(InputError, match="cannot rerank"):
        es.query(qe.QueryRequest(limit=3, query=qe.Formula(qe.Expression.Constant(1.0))))
    with pytest.raises(InputError, match="size 8"):  # the engine would insert the good points first
        EdgeClient.from_shard(s, "x", cfg).upsert("x", [
            models.PointStruct(id=1000, vector={"v": [0.1] * DIM}), models.PointStruct(id=1001, vector={"v": [0.1] * 8})])
    assert s.count(qe.CountRequest()) == 400
    ec = EdgeClient.from_shard(s, "x", cfg)
    ec.create_vector_name("x", "w", models.DenseVectorNameConfig(dense=models.DenseVectorConfig(
        size=3, distance=models.Distance.DOT)))
    assert ec.get_collection("x").config.params.vectors["w"].size == 3
    with pytest.raises(InputError, match="point 9999 does not exist"):  # the engine would write point 0 first
        ec.update_vectors("x", [models.PointVectors(id=0, vector={"w": [1.0, 2.0, 3.0]}),
                                models.PointVectors(id=9999, vector={"w": [1.0, 2.0, 3.0]})])
    assert s.retrieve([0], False, True)[0].vector == {"v": pytest.approx(data["G"][0].tolist(), rel=1e-5)}
    with pytest.raises(InputError, match="no vector 'nope'"):  # the engine would accept any name
        ec.delete_vector_name("x", "nope")
    ec.delete_vector_name("x", "w")
    assert set(ec.get_collection("x").config.params.vectors) == {"v"}
    # foreign data under our key: refused before anything is written
    s.update(qe.UpdateOperation.set_payload([399], {"_dbnorm": "user data"}))
    before = [(r.id, json.dumps(r.payload, sort_keys=True)) for r in s.scroll(qe.ScrollRequest(limit=1000))[0]]
    with pytest.raises(InputError, match="not dbnorm statistics; nothing was written"):
        es.precompute(progress=False)
    assert [(r.id, json.dumps(r.payload, sort_keys=True)) for r in s.scroll(qe.ScrollRequest(limit=1000))[0]] == before
    assert not s.info().payload_schema
    s.close()
    with pytest.raises(InputError, match="closed"):
        es.query(_req(data["Q"][0]))
    with pytest.raises(InputError, match="closed"):
        DBNormEdgeShard(s, banks=banks, config=cfg, using="v")


def test_missing_package_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "dbnorm_qdrant.edge" or m.startswith("dbnorm_qdrant.edge.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "qdrant_edge", None)  # import fails as if not installed
    with pytest.raises(InputError, match=r'pip install "dbnorm-qdrant\[edge\]"'):
        importlib.import_module("dbnorm_qdrant.edge")
