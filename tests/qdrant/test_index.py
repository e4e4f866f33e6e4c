"""The index vector (mode="index"): the normalised ranking as one Qdrant query over the whole
collection, on the shipped sample (docs/index.md). Local mode (exact search), the edge driver
(Qdrant's engine in process: a full scan at this size, so exact too) and a server when reachable."""

from __future__ import annotations

import asyncio
import logging
import uuid

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from dbnorm_qdrant.core.centering import unit_rows
from dbnorm_qdrant.core.index import index_query, index_rows
from dbnorm_qdrant.core.methods import Params
from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.qdrant import BankSet, DBNormClient, raw_score
from dbnorm_qdrant.qdrant.client import AsyncDBNormClient

from qdrant_helpers import make_collection

N_POINTS, N_QUERIES = 300, 30
EXACT = ["is", "dualis", "csls", "nnn", "centrality"]


@pytest.fixture(scope="module")
def data(sample):
    return {"G": sample["G"][:N_POINTS], "Q": sample["Q"][:N_QUERIES], "banks": BankSet(sample["QB"], sample["GB"])}


def _index(w: DBNormClient, name: str, **kw):
    """precompute(index=True), quietly."""
    return w.precompute(name, index=True, progress=False, **kw)


@pytest.fixture(scope="module")
def indexed(qclient, data):
    """The sample's first 300 test items (Cosine, payload {"i", "odd"}) with the index
    vectors of every per-item-bias method and of dis/dualdis."""
    name = f"ix_{uuid.uuid4().hex[:8]}"
    G = data["G"]
    qclient.create_collection(name, vectors_config=models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE))
    qclient.upload_collection(name, vectors=G, ids=list(range(len(G))),
                              payload=[{"i": i, "odd": i % 2} for i in range(len(G))], wait=True)
    for m in EXACT + ["dis", "dualdis"]:
        _index(DBNormClient(qclient, banks=data["banks"], params={"method": m}), name)
    yield qclient, name
    qclient.delete_collection(name)


def _matrix(data, method: str) -> np.ndarray:
    nz = data["banks"].normalizer(Params(method=method), unit=True)
    return nz.scores(unit_rows(data["Q"]), unit_rows(data["G"])).astype(np.float64)


def _same_ranking(ids: list, scores: list, S_row: np.ndarray, allowed=None) -> None:
    """``ids`` is the matrix ranking of ``S_row`` (restricted to ``allowed``): equal scores
    (float32 round-off), and equal ids wherever the matrix scores are not within round-off."""
    cols = np.arange(len(S_row)) if allowed is None else np.asarray(sorted(allowed))
    order = cols[np.argsort(-S_row[cols], kind="stable")][: len(ids)]
    np.testing.assert_allclose(scores, S_row[order], rtol=1e-5, atol=1e-6)
    for j, (a, b) in enumerate(zip(ids, order.tolist())):
        if a != b:  # only a near-tie may swap
            assert abs(S_row[a] - S_row[b]) < 1e-5, (j, a, b)


def test_index_rows_are_the_normalised_score(sample):
    G, Q = sample["G"][:200], sample["Q"][:20]
    for m in EXACT + ["uniform", "none"]:
        nz = BankSet(sample["QB"], sample["GB"]).normalizer(Params(method=m), unit=True)
        st = nz.gallery_stats(unit_rows(G), activation=False)
        R = index_rows(G, st, nz.params).astype(np.float64)
        Qi = np.array([index_query(q) for q in Q])
        np.testing.assert_allclose(Qi @ R.T, nz.scores(unit_rows(Q), unit_rows(G), st), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="center"):
        index_rows(G, st, Params(method="is", center=True))
    with pytest.raises(InputError, match="zero vector"):
        index_query(np.zeros(G.shape[1]))


@pytest.mark.parametrize("method", EXACT)
def test_index_ranking_equals_matrix_ranking(indexed, data, method):
    client, name = indexed
    S = _matrix(data, method)
    w = DBNormClient(client, banks=data["banks"], params={"method": method}, mode="index")
    for i, q in enumerate(data["Q"]):
        r = w.query_points(name, q.tolist(), limit=10, with_raw_score=True)
        _same_ranking([p.id for p in r.points], [p.score for p in r.points], S[i])
        raw = float(unit_rows(data["G"][r.points[0].id : r.points[0].id + 1])[0] @ unit_rows(q[None])[0])
        assert raw_score(r.points[0]) == pytest.approx(raw, rel=1e-5, abs=1e-6)
    # auto uses the current index and returns the same
    a = DBNormClient(client, banks=data["banks"], params={"method": method})
    q = data["Q"][0].tolist()
    assert [p.id for p in a.query_points(name, q, limit=10).points] == \
        [p.id for p in w.query_points(name, q, limit=10).points]


def test_filter_offset_threshold_and_vectors(indexed, data):
    client, name = indexed
    S = _matrix(data, "dualis")
    w = DBNormClient(client, banks=data["banks"], params={"method": "dualis"}, mode="index")
    odd = models.Filter(must=[models.FieldCondition(key="odd", match=models.MatchValue(value=1))])
    allowed = range(1, N_POINTS, 2)
    for i in range(5):
        r = w.query_points(name, data["Q"][i].tolist(), query_filter=odd, limit=8)
        _same_ranking([p.id for p in r.points], [p.score for p in r.points], S[i], allowed)
        full = w.query_points(name, data["Q"][i].tolist(), limit=12).points
        page = w.query_points(name, data["Q"][i].tolist(), limit=4, offset=8).points
        assert [p.id for p in page] == [p.id for p in full[8:12]]
        thr = (full[5].score + full[6].score) / 2  # between two scores: no float32 edge case
        cut = w.query_points(name, data["Q"][i].tolist(), limit=12, score_threshold=thr).points
        assert [p.id for p in cut] == [p.id for p in full[:6]]
    hits = w.search(name, data["Q"][0], limit=3, with_vectors=True, with_payload=["i"])
    assert all(isinstance(h.vector, list) and len(h.vector) == data["G"].shape[1] for h in hits)  # no index vector
    assert all(h.payload == {"i": h.id} for h in hits)
    for mode in ("client", "server"):  # the other paths do not return the index vectors either
        hits = w.search(name, data["Q"][0], limit=3, with_vectors=True, mode=mode)
        assert all(isinstance(h.vector, list) and len(h.vector) == data["G"].shape[1] for h in hits)
    batch = w.query_batch_points(name, [models.QueryRequest(query=q.tolist(), limit=5) for q in data["Q"][:3]])
    for i, resp in enumerate(batch):
        _same_ranking([p.id for p in resp.points], [p.score for p in resp.points], S[i])


@pytest.mark.parametrize("method", ["dis", "dualdis"])
def test_gated_candidates_from_the_index_equal_the_client_path(indexed, data, method):
    client, name = indexed
    S = _matrix(data, method)
    w = DBNormClient(client, banks=data["banks"], params={"method": method})
    for i, q in enumerate(data["Q"][:10]):
        every = w.query_points(name, q.tolist(), limit=10, mode="index", candidates=N_POINTS).points
        ref = w.query_points(name, q.tolist(), limit=10, mode="client", candidates=N_POINTS).points
        assert [p.id for p in every] == [p.id for p in ref]
        np.testing.assert_allclose([p.score for p in every], [p.score for p in ref], rtol=1e-5)
        _same_ranking([p.id for p in every], [p.score for p in every], S[i])


def test_stale_index_refused_or_falls_back(indexed, data, caplog):
    client, name = indexed
    w = DBNormClient(client, banks=data["banks"], params={"method": "is", "beta_q": 7.0})  # no index for these
    q = data["Q"][0].tolist()
    with pytest.raises(InputError, match=r"stale.*precompute\(collection, index=True\).*--index"):
        w.query_points(name, q, limit=5, mode="index")
    with caplog.at_level(logging.WARNING, logger="dbnorm_qdrant"):
        got = w.query_points(name, q, limit=5).points  # auto: the rerank path, with a warning
    assert "stale" in caplog.text
    ref = w.query_points(name, q, limit=5, mode="client").points
    assert [p.id for p in got] == [p.id for p in ref]
    with pytest.raises(InputError, match="point id"):
        DBNormClient(client, banks=data["banks"], params={"method": "is"}).query_points(name, 3, mode="index")


def test_precompute_touches_no_user_data_and_refresh_drop(qclient, data, cname):
    G = data["G"][:120]
    make_collection(qclient, cname, G, named=True)  # vectors "text" and "other", a rich payload
    before = {r.id: r for r in qclient.scroll(cname, limit=1000, with_vectors=True)[0]}
    w = DBNormClient(qclient, banks=data["banks"], params={"method": "csls"}, mode="index")
    rep = _index(w, cname, using="text")
    assert (rep.index_written, rep.index_skipped) == (120, 0)
    w2 = DBNormClient(qclient, banks=data["banks"], params={"method": "nnn"}, mode="index")
    _index(w2, cname, using="text")  # a second index vector next to the first
    after = {r.id: r for r in qclient.scroll(cname, limit=1000, with_vectors=True)[0]}
    for i, r in before.items():
        a = after[i]
        assert {k: v for k, v in a.payload.items() if k != "_dbnorm"} == r.payload
        for v in ("text", "other"):
            assert np.asarray(a.vector[v], np.float32).tobytes() == np.asarray(r.vector[v], np.float32).tobytes()
    assert sum(k.startswith("_dbnorm_") for k in qclient.get_collection(cname).config.params.vectors) == 2
    hit = w.query_points(cname, data["Q"][0].tolist(), using="text", limit=1, with_vectors=True).points[0]
    assert set(hit.vector) == {"text", "other"}
    S = data["banks"].normalizer(Params(method="csls"), unit=True).scores(unit_rows(data["Q"][:3]), unit_rows(G))
    for i in range(3):
        r = w.query_points(cname, data["Q"][i].tolist(), using="text", limit=5)
        _same_ranking([p.id for p in r.points], [p.score for p in r.points], S[i].astype(np.float64))
    assert _index(w, cname, using="text").index_skipped == 120  # resumable: nothing rewritten
    # a point upserted later has no index row until refresh
    qclient.upsert(cname, [models.PointStruct(id=999, vector={"text": data["Q"][0].tolist(),
                                                              "other": data["Q"][1].tolist()})], wait=True)
    q = data["Q"][0].tolist()
    assert 999 not in [p.id for p in w.query_points(cname, q, using="text", limit=3).points]
    assert w.refresh(cname, using="text").index_written == 1
    assert w.query_points(cname, q, using="text", limit=1).points[0].id == 999
    assert len(w.drop_index(cname, using="text")) == 1
    with pytest.raises(InputError, match="precompute"):
        w.query_points(cname, q, using="text", limit=3)
    assert w2.drop_index(cname, every=True) != []
    assert set(qclient.get_collection(cname).config.params.vectors) == {"text", "other"}


def test_refused_before_anything_is_written(qclient, data, cname):
    G = data["G"][:50]
    banks = data["banks"]
    make_collection(qclient, cname, G, distance=models.Distance.EUCLID)
    with pytest.raises(InputError, match="Euclid"):
        DBNormClient(qclient, banks=banks).precompute(cname, index=True, progress=False)
    with pytest.raises(InputError, match="Euclid"):
        DBNormClient(qclient, banks=banks, mode="index").query_points(cname, G[0].tolist(), limit=3)
    assert "_dbnorm" not in qclient.scroll(cname, limit=1)[0][0].payload
    qclient.delete_collection(cname)
    make_collection(qclient, cname, G)
    with pytest.raises(InputError, match="center"):
        DBNormClient(qclient, banks=banks, params={"method": "is", "center": True}).precompute(
            cname, index=True, progress=False)
    qclient.upsert(cname, [models.PointStruct(id=77, vector=[0.0] * G.shape[1])], wait=True)
    with pytest.raises(InputError, match="zero vector"):
        _index(DBNormClient(qclient, banks=banks), cname)
    assert not isinstance(qclient.get_collection(cname).config.params.vectors, dict)
    assert all("_dbnorm" not in (r.payload or {}) for r in qclient.scroll(cname, limit=100)[0])


def test_name_collision_refused(data):
    client = QdrantClient(":memory:")
    nz = data["banks"].normalizer(Params(method="is"), unit=True)
    from dbnorm_qdrant.core.index import index_name

    d = data["G"].shape[1]
    client.create_collection("c", vectors_config={"": models.VectorParams(size=d, distance=models.Distance.COSINE),
                                                  index_name(nz.fingerprint): models.VectorParams(
                                                      size=4, distance=models.Distance.COSINE)})
    client.upsert("c", [models.PointStruct(id=0, vector={"": data["G"][0].tolist()})], wait=True)
    with pytest.raises(InputError, match="not a dbnorm index vector"):
        DBNormClient(client, nz).precompute("c", index=True, progress=False)


def test_async_index(data):
    async def run():
        client = AsyncQdrantClient(":memory:")
        G = data["G"][:100]
        await client.create_collection("a", vectors_config=models.VectorParams(size=G.shape[1],
                                                                               distance=models.Distance.COSINE))
        await client.upsert("a", [models.PointStruct(id=i, vector=g.tolist()) for i, g in enumerate(G)], wait=True)
        w = AsyncDBNormClient(client, banks=data["banks"], params={"method": "dualis"}, mode="index")
        rep = await w.precompute("a", index=True, progress=False)
        r = await w.query_points("a", data["Q"][0].tolist(), limit=5)
        return rep, r, await w.drop_index("a")

    rep, r, dropped = asyncio.run(run())
    assert rep.index_written == 100 and dropped == [rep.index_name]
    G = data["G"][:100]
    S = data["banks"].normalizer(Params(method="dualis"), unit=True).scores(unit_rows(data["Q"][:2]), unit_rows(G))
    _same_ranking([p.id for p in r.points], [p.score for p in r.points], S[0].astype(np.float64))


def test_dot_collection_needs_no_normalisation(data):
    client = QdrantClient(":memory:")
    G = data["G"][:150] * np.linspace(0.5, 2.0, 150, dtype=np.float32)[:, None]  # norms that matter under Dot
    make_collection(client, "d", G, distance=models.Distance.DOT)
    w = DBNormClient(client, banks=data["banks"], params={"method": "nnn"}, mode="index")
    w.precompute("d", index=True, progress=False)
    S = data["banks"].normalizer(Params(method="nnn"), unit=False).scores(data["Q"][:5], G).astype(np.float64)
    for i in range(5):
        r = w.query_points("d", data["Q"][i].tolist(), limit=10, with_raw_score=True)
        _same_ranking([p.id for p in r.points], [p.score for p in r.points], S[i])
        assert raw_score(r.points[0]) == pytest.approx(float(G[r.points[0].id] @ data["Q"][i]), rel=1e-5)


def test_auto_picks_up_an_index_vector_another_wrapper_wrote(qclient, data, cname, monkeypatch):
    """A serving wrapper re-reads the collection's vector names every Core.names_check_s: an index
    vector another process adds (or drops) is used (or left) without a restart."""
    from dbnorm_qdrant.qdrant.core import Core

    G = data["G"][:300]
    qclient.create_collection(cname, vectors_config=models.VectorParams(size=G.shape[1],
                                                                       distance=models.Distance.COSINE))
    qclient.upload_collection(cname, vectors=G, ids=list(range(len(G))), wait=True)
    try:
        serving = DBNormClient(qclient, banks=data["banks"], params={"method": "dualis"})
        q = G[0].tolist()
        assert serving.explain(cname, q)["nodes"][0]["mode"] != "index"
        admin = DBNormClient(qclient, banks=data["banks"], params={"method": "dualis"})  # "another process"
        admin.precompute(cname, index=True, progress=False)
        assert serving.explain(cname, q)["nodes"][0]["mode"] != "index"  # within names_check_s: as read
        monkeypatch.setattr(Core, "names_check_s", 0.0)
        assert serving.explain(cname, q)["nodes"][0]["mode"] == "index"
        before = [p.id for p in serving.query_points(cname, q, limit=5).points]
        admin.drop_index(cname)
        assert serving.explain(cname, q)["nodes"][0]["mode"] != "index"
        assert [p.id for p in serving.query_points(cname, q, limit=5).points] == before
    finally:
        qclient.delete_collection(cname)
