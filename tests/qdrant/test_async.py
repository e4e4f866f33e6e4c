"""AsyncDBNormClient gives what DBNormClient gives (one embedded Qdrant folder, opened in turn)."""

from __future__ import annotations

import asyncio

import numpy as np

from qdrant_client import AsyncQdrantClient, QdrantClient, models

from dbnorm_qdrant.qdrant import AsyncDBNormClient, BankSet, DBNormClient

from qdrant_helpers import make_collection


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


def test_async_matches_sync(small, tmp_path):
    path = str(tmp_path / "q")
    sync = QdrantClient(path=path)
    make_collection(sync, "c", small["G"])
    banks = BankSet(small["QB"], small["GB"])
    want = DBNormClient(sync, banks=banks, params={"method": "dualdis"}).query_points("c", query=small["Q"][3], limit=5)
    sync.close()

    async def run():
        ac = AsyncQdrantClient(path=path)
        ad = AsyncDBNormClient(ac, banks=banks, params={"method": "dualdis"})
        r = await ad.query_points("c", query=small["Q"][3], limit=5)
        await ac.close()
        return r

    got = asyncio.run(run())
    assert [p.id for p in got.points] == [p.id for p in want.points]
    np.testing.assert_allclose([p.score for p in got.points], [p.score for p in want.points])
