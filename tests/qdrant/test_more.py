"""Euclid collections, refresh/new points, bank sources, per-collection configs, async parity,
queries by point id (local mode, and a server when reachable)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from dbnorm_qdrant.errors import InputError as _IE
from dbnorm_qdrant.core.methods import Params
from dbnorm_qdrant.core.normalizer import BankNormalizer, neg_euclid
from dbnorm_qdrant.qdrant import AsyncDBNormClient, BankSet, DBNormClient

from qdrant_helpers import make_collection


def _order(S_row, k=5):
    return [int(i) for i in np.argsort(-S_row, kind="stable")[:k]]


# ----------------------------------------------------------------------- Euclid
@pytest.mark.parametrize("method", ["is", "dualis", "dualdis"])
def test_euclid_matches_negated_distance_matrix(qclient, small, cname, method):
    rng = np.random.default_rng(1)
    G = (small["G"] * rng.uniform(0.5, 2.0, size=(len(small["G"]), 1))).astype(np.float32)  # not unit
    make_collection(qclient, cname, G, distance=models.Distance.EUCLID)
    banks = BankSet(small["QB"] * 1.5, small["GB"])
    p = Params(method=method, beta_q=5.0, beta_g=2.0)
    nz = banks.normalizer(p, similarity="neg_euclid")
    S = nz.scores(small["Q"], G)  # the matrix level with -||q - g||
    assert np.allclose(nz.pair_sims(small["Q"], G), neg_euclid(small["Q"], G))
    d = DBNormClient(qclient, banks=banks, params=p)
    for q in range(5):
        res = d.query_points(cname, query=small["Q"][q], limit=5, candidates=400)
        assert [pt.id for pt in res.points] == _order(S[q]), q
        np.testing.assert_allclose([pt.score for pt in res.points], np.sort(S[q])[::-1][:5], atol=1e-4)
        # raw_score is the distance Qdrant returned
        dist = np.linalg.norm(G[[pt.id for pt in res.points]] - small["Q"][q], axis=1)
        np.testing.assert_allclose([pt.raw_score for pt in res.points], dist, rtol=1e-4)
    if method != "dualdis":  # server-side rescoring gives the same ranking
        d.precompute(cname, progress=False)
        srv = d.query_points(cname, query=small["Q"][0], limit=5, candidates=400, mode="server")
        assert [pt.id for pt in srv.points] == _order(S[0])
    qclient.delete_collection(cname)


def test_euclid_refuses_centring(small):
    with pytest.raises(_IE, match="dot/cosine"):
        BankNormalizer(small["QB"], small["GB"], method="is", center=True, similarity="neg_euclid")
    with pytest.raises(_IE, match="similarity"):
        BankNormalizer(small["QB"], method="is", similarity="manhattan")
    c = QdrantClient(":memory:")
    make_collection(c, "e", small["G"], distance=models.Distance.EUCLID)
    d = DBNormClient(c, banks=BankSet(small["QB"], small["GB"]), params={"method": "is", "center": True})
    with pytest.raises(_IE, match="Euclid"):
        d.query_points("e", query=small["Q"][0])


# ------------------------------------------------------------ refresh / new points
def test_refresh_after_points_added_and_server_fallback(qclient, small, cname):
    G = small["G"]
    make_collection(qclient, cname, G[:300])
    banks = BankSet(small["QB"], small["GB"])
    d = DBNormClient(qclient, banks=banks, params={"method": "dualdis"})
    d.precompute(cname, progress=False)
    # new points: 100 copies of query-bank items, each bank item's top-1 changes to its copy
    new = small["QB"][:100]
    qclient.upsert(cname, [models.PointStruct(id=1000 + i, vector=v.tolist(), payload={"i": 1000 + i})
                           for i, v in enumerate(new)], wait=True)
    allG = np.vstack([G[:300], new])
    ids = list(range(300)) + [1000 + i for i in range(100)]
    nz = banks.normalizer(Params(method="dualdis"), unit=True)
    S = nz.scores(small["Q"], allG)
    want = lambda q: [ids[i] for i in _order(S[q])]  # noqa: E731
    # until refresh, old points keep their stored (now stale) activation flags: documented
    rep = d.refresh(cname)
    assert rep.flags_changed > 0  # old points pushed out of a bank item's top-1 lost their flag
    stored = {r.id: r.payload.get("_dbnorm") for r in qclient.scroll(cname, limit=1000)[0]}
    flagged = {i for i, pl in stored.items() if pl and pl.get("act_q")}
    act_q, _ = nz.activation(allG)
    assert flagged == {ids[i] for i in np.flatnonzero(act_q) if ids[i] < 300}
    for q in range(5):  # the new points lack statistics: the server path falls back to the client
        for mode in ("client", "server"):
            got = d.query_points(cname, query=small["Q"][q], limit=5, candidates=400, mode=mode)
            assert [p.id for p in got.points] == want(q), (q, mode)
    assert d.precompute(cname, progress=False).written == 100  # writes the new points only
    for q in range(5):
        srv = d.query_points(cname, query=small["Q"][q], limit=5, candidates=400, mode="server")
        assert [p.id for p in srv.points] == want(q)
    qclient.delete_collection(cname)


def test_point_added_after_precompute_server_fallback(qclient, small, cname):
    make_collection(qclient, cname, small["G"][:399])
    banks = BankSet(small["QB"], small["GB"])
    d = DBNormClient(qclient, banks=banks, params={"method": "dualis"})
    d.precompute(cname, progress=False)
    qclient.upsert(cname, [models.PointStruct(id=399, vector=small["Q"][0].tolist(), payload={"i": 399})], wait=True)
    G = np.vstack([small["G"][:399], small["Q"][0:1]])
    S = banks.normalizer(Params(method="dualis"), unit=True).scores(small["Q"][:1], G)[0]
    res = d.query_points(cname, query=small["Q"][0], limit=5, candidates=400, mode="server")
    assert [p.id for p in res.points] == _order(S) and res.points[0].id == 399
    qclient.delete_collection(cname)


# --------------------------------------------------------------------- banks
def test_query_bank_from_collection_and_from_npy(qclient, small, cname, tmp_path):
    make_collection(qclient, cname, small["QB"])
    d = DBNormClient(qclient, banks=BankSet(small["QB"]), params={"method": "is"})
    allv = d.query_bank_from_collection(cname)
    np.testing.assert_allclose(allv, small["QB"], atol=1e-6)  # unit rows: Cosine keeps them
    sub = d.query_bank_from_collection(cname, 50, seed=3)
    assert sub.shape == (50, 16)
    np.testing.assert_array_equal(sub, d.query_bank_from_collection(cname, 50, seed=3))
    qclient.delete_collection(cname)
    with pytest.raises(_IE, match="empty"):
        qclient.create_collection(cname, vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE))
        d.query_bank_from_collection(cname)
    qclient.delete_collection(cname)
    np.save(tmp_path / "qb.npy", small["QB"])
    np.save(tmp_path / "gb.npy", small["GB"])
    bs = BankSet.from_npy(tmp_path / "qb.npy", tmp_path / "gb.npy")
    np.testing.assert_array_equal(bs.query_bank, small["QB"])
    np.testing.assert_array_equal(bs.gallery_bank, small["GB"])
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(_IE, match="pickled"):
        BankSet.from_npy(tmp_path / "evil.npy")
    with pytest.raises(_IE, match="does not exist"):
        BankSet.from_npy(tmp_path / "missing.npy")


def test_two_collections_with_their_own_configs(qclient, small):
    from dbnorm_qdrant.qdrant import CollectionConfig

    a, b = "cfg_a", "cfg_b"
    make_collection(qclient, a, small["G"])
    make_collection(qclient, b, small["G"], distance=models.Distance.DOT)
    banks = BankSet(small["QB"], small["GB"])
    d = DBNormClient(qclient, banks=banks, params={"method": "dualis"},
                     collections={b: CollectionConfig(params={"method": "is", "beta_q": 10.0}, candidates=400)})
    d.configure(a, candidates=400)
    Sa = banks.normalizer(Params(method="dualis"), unit=True).scores(small["Q"][:1], small["G"])[0]
    Sb = banks.normalizer(Params(method="is", beta_q=10.0)).scores(small["Q"][:1], small["G"])[0]
    assert [p.id for p in d.query_points(a, query=small["Q"][0], limit=5).points] == _order(Sa)
    assert [p.id for p in d.query_points(b, query=small["Q"][0], limit=5).points] == _order(Sb)
    d.configure(b, enabled=False)
    plain = qclient.query_points(b, query=small["Q"][0], limit=5)
    assert [p.id for p in d.query_points(b, query=small["Q"][0], limit=5).points] == [p.id for p in plain.points]
    qclient.delete_collection(a)
    qclient.delete_collection(b)


# --------------------------------------------------------------- query by point id
def test_query_by_point_id_gated(qclient, small, cname):
    """A query by point id: Qdrant excludes the query point from its own results, so the
    candidates (and the raw top-1 that gates dis/dualdis) are the *other* points; the
    rerank equals the matrix level over the gallery without that point."""
    make_collection(qclient, cname, small["G"])
    banks = BankSet(small["QB"], small["GB"])
    d = DBNormClient(qclient, banks=banks, params={"method": "dualdis"})
    nz = banks.normalizer(Params(method="dualdis"), unit=True)
    st = nz.gallery_stats(small["G"])
    qid = 7
    raw = small["G"] @ small["G"][qid]
    raw[qid] = -1e9  # the query point itself: never a candidate
    sc = nz.rerank(None, raw, st)
    res = d.query_points(cname, query=qid, limit=5, candidates=400)
    assert qid not in [p.id for p in res.points]
    assert [p.id for p in res.points] == _order(sc)
    qclient.delete_collection(cname)


# -------------------------------------------------------------------- async parity
def test_async_batch_and_search_parity(small, tmp_path):
    path = str(tmp_path / "q")
    sync = QdrantClient(path=path)
    make_collection(sync, "c", small["G"])
    banks = BankSet(small["QB"], small["GB"])
    flt = models.Filter(must=[models.FieldCondition(key="odd", match=models.MatchValue(value=0))])
    reqs = [models.QueryRequest(query=small["Q"][i].tolist(), limit=5, filter=flt if i % 2 else None) for i in range(6)]
    sd = DBNormClient(sync, banks=banks, params={"method": "dualis"})
    want_b = [[p.id for p in r.points] for r in sd.query_batch_points("c", reqs, candidates=200)]
    want_s = [p.id for p in sd.search("c", small["Q"][2], limit=5, query_filter=flt)]
    sync.close()

    async def run():
        ac = AsyncQdrantClient(path=path)
        ad = AsyncDBNormClient(ac, banks=banks, params={"method": "dualis"})
        b = await ad.query_batch_points("c", reqs, candidates=200)
        s = await ad.search("c", small["Q"][2], limit=5, query_filter=flt)
        await ac.close()
        return [[p.id for p in r.points] for r in b], [p.id for p in s]

    got_b, got_s = asyncio.run(run())
    assert got_b == want_b and got_s == want_s


# ------------------------------------------------------------- review regressions
def test_centring_does_not_depend_on_the_query_length(qclient, cname):
    """A Cosine collection scores the unit query; centring must too (7q ranks like q)."""
    rng = np.random.default_rng(0)
    f = lambda n: (rng.normal(size=(n, 16)) + 1).astype(np.float32)  # noqa: E731  (not centred, not unit)
    G, QB, GB, q = f(300), f(200), f(150), f(1)[0]
    make_collection(qclient, cname, G / np.linalg.norm(G, axis=1, keepdims=True))
    db = DBNormClient(qclient, banks=BankSet(QB, GB), params={"method": "dualis", "center": True})
    a = db.query_points(cname, query=q.tolist(), limit=5, candidates=300).points
    b = db.query_points(cname, query=(7.0 * q).tolist(), limit=5, candidates=300).points
    assert [p.id for p in a] == [p.id for p in b]
    np.testing.assert_allclose([p.score for p in a], [p.score for p in b], atol=1e-6)
    qclient.delete_collection(cname)


def test_server_path_offset_and_stale_statistics(qclient, small, cname):
    """The server path must not hide a point without current statistics behind the offset,
    nor score a point with statistics left from other banks/parameters."""
    make_collection(qclient, cname, small["G"])
    banks = BankSet(small["QB"], small["GB"])
    db = DBNormClient(qclient, banks=banks, params={"method": "is"})
    db.precompute(cname, progress=False)
    q = small["Q"][0]
    # a new point, close to q, without statistics
    qclient.upsert(cname, [models.PointStruct(id=1000, vector=(q + 0.05).tolist(), payload={"i": 1000})], wait=True)
    for off in (0, 3):
        cl = [p.id for p in db.query_points(cname, query=q.tolist(), limit=5, offset=off, mode="client").points]
        sv = [p.id for p in db.query_points(cname, query=q.tolist(), limit=5, offset=off, mode="server").points]
        assert sv == cl, off
    db.precompute(cname, progress=False)
    # statistics of other parameters on a few strong candidates (e.g. an interrupted re-precompute)
    raw = [p.id for p in qclient.query_points(cname, query=q.tolist(), limit=20).points]
    nz_other = banks.normalizer(Params(method="is", beta_q=5.0), unit=True)
    vecs = {p.id: p.vector for p in qclient.retrieve(cname, ids=raw[5:8], with_vectors=True)}
    st = nz_other.gallery_stats(np.asarray([vecs[i] for i in raw[5:8]], dtype=np.float32), activation=False)
    for pid, rec in zip(raw[5:8], st.records()):
        qclient.set_payload(cname, payload={db.payload_key: rec}, points=[pid], wait=True)
    want = [p.id for p in db.query_points(cname, query=q.tolist(), limit=5, offset=2, mode="client").points]
    got = [p.id for p in db.query_points(cname, query=q.tolist(), limit=5, offset=2, mode="server").points]
    assert got == want
    qclient.delete_collection(cname)


def test_precompute_never_overwrites_foreign_data_under_its_key(qclient, small, cname):
    payload = [{"i": i, "_dbnorm": "user data"} if i == 5 else {"i": i} for i in range(len(small["G"]))]
    make_collection(qclient, cname, small["G"], payload=payload)
    db = DBNormClient(qclient, banks=BankSet(small["QB"], small["GB"]), params={"method": "is"})
    with pytest.raises(_IE, match="not dbnorm statistics; nothing was overwritten"):
        db.precompute(cname, progress=False)
    assert qclient.retrieve(cname, ids=[5], with_payload=True)[0].payload == {"i": 5, "_dbnorm": "user data"}
    qclient.delete_collection(cname)
