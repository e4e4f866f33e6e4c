"""Switches seen from other wrappers (docs/lifecycle.md section 3): a wrapper that has not re-read
the head yet retries a query that fails because the old version's index vector was dropped;
the cold start follows a growing collection; when ``rebuild_every`` is due; the async
wrapper's rebuild. On local mode and Qdrant Edge (and a server when one is reachable)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from dbnorm_qdrant.banks import BankSet, load_banks, save_banks
from dbnorm_qdrant.qdrant import AsyncDBNormClient, DBNormClient
from dbnorm_qdrant.qdrant.lifecycle import Lifecycle, QueryLog

from lifecycle_helpers import load, log_queries, names, ranked, stop


def test_a_query_on_a_dropped_index_vector_runs_again_on_the_new_version(qclient, sample, tmp_path, monkeypatch):
    monkeypatch.setattr(Lifecycle, "check_s", 3600.0)  # the reader never re-reads the head by itself
    name, log = names()
    load(qclient, name, sample["G"][:400])
    banks = BankSet(sample["QB"][:300], sample["GB"][:300])
    files = [save_banks(tmp_path / f"{b}.npz", banks, params={"method": "is", "beta_q": b}) for b in (10.0, 30.0)]
    writer = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
    reader = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
    Q = sample["Q"][:20]
    try:
        v1 = writer.import_banks(name, files[0], progress=False)
        assert v1.index_name is not None
        assert reader.explain(name, Q[0].tolist(), limit=5)["nodes"][0]["mode"] == "index"  # v1's index vector
        ranked(reader, name, Q)
        v2 = writer.import_banks(name, files[1], progress=False)  # drops v1's index vector
        assert v1.version in v2.removed and reader.lifecycles.get(name).version == 1
        got = ranked(reader, name, Q)
        assert reader.lifecycles.get(name).version == 2
        fresh = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
        want = ranked(fresh, name, Q)
        assert got[1] == want[1]
        np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-6)
        stop(fresh)
    finally:
        stop(writer, reader)


def test_the_cold_start_follows_a_growing_collection(qclient, sample, monkeypatch):
    monkeypatch.setattr(Lifecycle, "check_s", 0.0)
    name, log = names()
    G = sample["G"]
    load(qclient, name, G[:300])
    db = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
    try:
        db.query_points(name, sample["Q"][0].tolist(), limit=3)
        assert db.status(name).serving == "the cold start (csls over 300 of the collection's items)"
        qclient.upsert(name, [models.PointStruct(id=i, vector=G[i].tolist(), payload={"i": i}) for i in range(300, 700)],
                       wait=True)
        hits = db.query_points(name, sample["Q"][650].tolist(), limit=3).points
        assert db.status(name).serving == "the cold start (csls over 700 of the collection's items)"
        assert any(p.id >= 300 for p in hits)
    finally:
        stop(db)


def test_rebuild_every_is_due_after_queries_or_time():
    by_count = Lifecycle("c", QueryLog("log"), rebuild_every=100)
    assert not by_count.due()  # nothing logged yet
    by_count.log.seen = 99
    assert not by_count.due()
    by_count.log.seen = 100
    assert by_count.due()
    by_count.logged_at_build = 50  # a version built at 50 logged queries
    assert not by_count.due()

    by_time = Lifecycle("c", QueryLog("log"), rebuild_every=timedelta(minutes=5))
    by_time.log.seen = 10
    assert not by_time.due()  # started just now
    by_time.started = time.time() - 301
    assert by_time.due()
    by_time.logged_at_build = 10  # no query logged since the last version: nothing to learn
    assert not by_time.due()


def test_the_async_wrapper_rebuilds_and_exports(sample, tmp_path):
    name, log = names()
    G = sample["G"][:300]

    async def run():
        ac = AsyncQdrantClient(":memory:")
        await ac.create_collection(name, vectors_config=models.VectorParams(size=G.shape[1],
                                                                             distance=models.Distance.COSINE))
        await ac.upsert(name, [models.PointStruct(id=i, vector=g.tolist()) for i, g in enumerate(G)])
        db = AsyncDBNormClient(ac, query_log=log, min_log=100)
        for i in range(0, 150, 50):
            await db.query_batch_points(name, [models.QueryRequest(query=q.tolist(), limit=1)
                                               for q in sample["QB"][i:i + 50]], rerank=False)
        rep = await db.rebuild(name, progress=False, gallery_sample=200)
        st = await db.status(name)
        path = await db.export_banks(name, tmp_path / "a.npz")
        top = (await db.query_points(name, sample["Q"][0].tolist(), limit=5)).points
        await db.close()
        return rep, st, path, top

    rep, st, path, top = asyncio.run(run())
    assert (rep.version, rep.query_bank, rep.gallery_bank) == (1, 150, 200)
    assert st.active_version == 1 and st.logged == 150 and st.params == rep.params
    assert path.is_file() and len(top) == 5


def test_given_banks_serve_until_a_version_exists(qclient, sample, tmp_path, monkeypatch):
    monkeypatch.setattr(Lifecycle, "check_s", 0.0)
    name, log = names()
    load(qclient, name, sample["G"][:400])
    banks = BankSet(sample["QB"][:300], sample["GB"][:300])
    Q = sample["Q"][:30]
    warm = DBNormClient(qclient, query_log=log, banks=banks, params={"method": "dualis"})
    plain = DBNormClient(qclient, banks=banks, params={"method": "dualis"})  # no query log
    try:
        assert ranked(warm, name, Q)[1] == ranked(plain, name, Q)[1]
        st = warm.status(name)
        assert st.serving == "the banks given to the wrapper" and st.active_version is None
        assert (st.params["method"], st.query_bank, st.gallery_bank, st.logged) == ("dualis", 300, 300, 30)
        exported = load_banks(warm.export_banks(name, tmp_path / "given.npz"))
        assert exported.params.method == "dualis" and exported.meta["serving"] == "given"
        assert len(exported.banks.query_bank) == 300
        log_queries(warm, name, sample["QB"][300:500])
        rep = warm.rebuild(name, progress=False, gallery_sample=200)
        assert warm.status(name).serving == f"version 1 ({rep.params['method']})"
        later = DBNormClient(qclient, query_log=log, banks=banks, params={"method": "dualis"}, log_sample_rate=0.0)
        assert later.status(name).active_version == 1  # a version beats the given banks
        assert ranked(later, name, Q)[1] == ranked(warm, name, Q)[1]
        stop(later)
    finally:
        stop(warm, plain)
