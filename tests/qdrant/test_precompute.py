"""Statistics in the payload: precompute, refresh after new points, the server path's fallbacks,
and never overwriting what is not ours (local mode, and a server when reachable)."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models
from qdrant_helpers import make_collection, top_order

from dbnorm_qdrant.core.methods import Params, bias
from dbnorm_qdrant.errors import InputError as _IE
from dbnorm_qdrant.qdrant import BankSet, DBNormClient
from dbnorm_qdrant.qdrant.core import Core


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
    want = lambda q: [ids[i] for i in top_order(S[q])]  # noqa: E731
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
    assert [p.id for p in res.points] == top_order(S) and res.points[0].id == 399
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


def test_the_server_formula_reads_the_bias_field_and_older_statistics_still_serve(qclient, small, cname, caplog,
                                                                                monkeypatch):
    """An additive method stores its bias under a fingerprint-named field, and the server
    formula reads that one field; statistics stored before the field existed are detected,
    served with the formula over every statistic (logged once), and a precompute adds it."""
    make_collection(qclient, cname, small["G"])
    banks = BankSet(small["QB"], small["GB"])
    db = DBNormClient(qclient, banks=banks, params={"method": "dualis"})
    assert db.precompute(cname, progress=False).written == len(small["G"])
    nz = banks.normalizer(Params(method="dualis"), unit=True)
    field = f"b_{nz.fingerprint}"
    recs = {r.id: r.payload["_dbnorm"] for r in qclient.scroll(cname, limit=1000, with_payload=True)[0]}
    st = nz.gallery_stats(small["G"], activation=False)
    np.testing.assert_allclose([recs[i][field] for i in range(len(small["G"]))], bias(st, nz.params), rtol=1e-6,
                               atol=1e-9)
    seen = []
    real = qclient.query_points

    def spy(*a, **kw):
        seen.append(kw.get("query"))
        return real(*a, **kw)

    monkeypatch.setattr(qclient, "query_points", spy)
    qs = small["Q"][:6]
    want = [[p.id for p in db.query_points(cname, query=q, limit=5, candidates=400, mode="client").points] for q in qs]
    seen.clear()
    got = [[p.id for p in db.query_points(cname, query=q, limit=5, candidates=400, mode="server").points] for q in qs]
    assert got == want
    assert all(isinstance(f, models.FormulaQuery) and any(field in str(t) for t in f.formula.sum) for f in seen)
    # statistics stored before the bias field: written again without it
    for pid, rec in recs.items():
        qclient.set_payload(cname, payload={"_dbnorm": {k: v for k, v in rec.items() if k != field}}, points=[pid],
                            key=None, wait=True)
    fresh = DBNormClient(qclient, banks=banks, params={"method": "dualis"})
    fresh.query_points(cname, query=qs[0], limit=5, candidates=400, mode="client")  # notices the stored statistics
    seen.clear()
    with caplog.at_level("WARNING"):
        got = [[p.id for p in fresh.query_points(cname, query=q, limit=5, candidates=400, mode="server").points]
               for q in qs]
    assert got == want
    assert caplog.text.count("predate the bias field") == 1
    formulas = [f for f in seen if isinstance(f, models.FormulaQuery)]
    assert not any(field in str(f) for f in formulas[1:])  # after the first: the formula over every statistic
    other = DBNormClient(qclient, banks=banks, params={"method": "dualis"})  # e.g. the CLI, another process
    rep = other.precompute(cname, progress=False)
    assert rep.written == len(small["G"]) and rep.skipped == 0  # the old records lack the field: rewritten
    fresh.query_points(cname, query=qs[0], limit=5, candidates=400, mode="server")
    monkeypatch.setattr(Core, "names_check_s", 0.0)  # the serving wrapper tries the field again (every 30 s)
    seen.clear()
    got = [[p.id for p in fresh.query_points(cname, query=q, limit=5, candidates=400, mode="server").points]
           for q in qs]
    assert got == want and all(field in str(f) for f in seen if isinstance(f, models.FormulaQuery))
    assert fresh.precompute(cname, progress=False).skipped == len(small["G"])
    qclient.delete_collection(cname)
