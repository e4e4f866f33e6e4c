"""Per-collection configuration: two collections with their own banks, methods, N and switches."""

from __future__ import annotations

from qdrant_client import models

from dbnorm_qdrant.core.methods import Params
from dbnorm_qdrant.qdrant import BankSet, DBNormClient

from qdrant_helpers import make_collection, top_order


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
    assert [p.id for p in d.query_points(a, query=small["Q"][0], limit=5).points] == top_order(Sa)
    assert [p.id for p in d.query_points(b, query=small["Q"][0], limit=5).points] == top_order(Sb)
    d.configure(b, enabled=False)
    plain = qclient.query_points(b, query=small["Q"][0], limit=5)
    assert [p.id for p in d.query_points(b, query=small["Q"][0], limit=5).points] == [p.id for p in plain.points]
    qclient.delete_collection(a)
    qclient.delete_collection(b)
