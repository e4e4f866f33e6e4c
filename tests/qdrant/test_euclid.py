"""Euclid collections: scores are distances; the rerank equals the matrix level over -||q - g||."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from dbnorm_qdrant.core.centering import neg_euclid
from dbnorm_qdrant.core.methods import Params
from dbnorm_qdrant.core.normalizer import BankNormalizer
from dbnorm_qdrant.errors import InputError as _IE
from dbnorm_qdrant.qdrant import BankSet, DBNormClient, raw_score

from qdrant_helpers import make_collection, top_order


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
        res = d.query_points(cname, query=small["Q"][q], limit=5, candidates=400, with_raw_score=True)
        assert [pt.id for pt in res.points] == top_order(S[q]), q
        np.testing.assert_allclose([pt.score for pt in res.points], np.sort(S[q])[::-1][:5], atol=1e-4)
        # raw_score is the distance Qdrant returned
        dist = np.linalg.norm(G[[pt.id for pt in res.points]] - small["Q"][q], axis=1)
        np.testing.assert_allclose([raw_score(pt) for pt in res.points], dist, rtol=1e-4)
        assert all(set(pt.payload) == {"i", "odd", "tags", "nested", "_dbnorm"} for pt in res.points)
    if method != "dualdis":  # server-side rescoring gives the same ranking
        d.precompute(cname, progress=False)
        srv = d.query_points(cname, query=small["Q"][0], limit=5, candidates=400, mode="server")
        assert [pt.id for pt in srv.points] == top_order(S[0])
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
