"""Query forms: by point id (gated methods), and centring with unnormalised query vectors."""

from __future__ import annotations

import numpy as np

from dbnorm_qdrant.core.methods import Params
from dbnorm_qdrant.qdrant import BankSet, DBNormClient

from qdrant_helpers import make_collection, top_order


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
    assert [p.id for p in res.points] == top_order(sc)
    qclient.delete_collection(cname)


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
