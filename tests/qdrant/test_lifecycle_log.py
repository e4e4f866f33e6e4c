"""The query log (docs/lifecycle.md section 2): every entry point of the wrappers logs its query
vectors, vectors only; the sample rate, the ring and reservoir policies, ``close()`` and the
counter kept in the state across wrappers. On local mode and Qdrant Edge (and a server when
one is reachable), with the shipped sample."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from dbnorm_qdrant.core.centering import unit_rows
from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.qdrant import AsyncDBNormClient, DBNormClient
from dbnorm_qdrant.qdrant.lifecycle import Worker

from lifecycle_helpers import PERSISTENT, load, log_points, log_queries, logged, names, open_store, stop

N_GALLERY = 300  # the log does not need the whole sample


def _same_rows(got, want):
    """Row ``j`` of ``got`` is query ``want[j]`` (up to the length: a Cosine collection may
    store vectors normalised)."""
    np.testing.assert_allclose(unit_rows(np.stack(got)), unit_rows(np.asarray(want, dtype=np.float32)),
                               rtol=1e-5, atol=1e-6)


def _assert_logged(points, want):
    """The log holds exactly ``want`` (row ``j`` at id ``j``), vectors only (no payload)."""
    assert sorted(points) == list(range(len(want)))
    _same_rows([points[j][0] for j in range(len(want))], want)
    assert all(not p for _, p in points.values())  # no payload, no text


def test_every_entry_point_logs_its_query_vectors(qclient, sample):
    Q = sample["Q"]
    with logged(qclient, sample["G"][:N_GALLERY]) as (db, name, log):
        assert len(db.query_points(name, Q[0].tolist(), limit=5).points) == 5
        db.query_batch_points(name, [models.QueryRequest(query=Q[i].tolist(), limit=5) for i in (1, 2)])
        db.search(name, Q[3], limit=5)
        groups = db.query_points_groups(name, "g", Q[4].tolist(), limit=3, group_size=2).groups
        assert len(groups) == 3
        db.query_points(name, Q[5].tolist(), limit=5, rerank=False)  # not reranked, still logged
        db.query_points(name, Q[6].tolist(), prefetch=models.Prefetch(query=Q[7].tolist(), limit=50), limit=5)
        db.query_points(name, 3, limit=5)  # a query by point id is an item, not a query: not logged
        db.flush()
        assert db.lifecycles.get(name).log.pending == 0
        _assert_logged(log_points(qclient, log), Q[:8])


def test_a_plain_query_is_logged_from_the_first_one(qclient, sample):
    with logged(qclient, sample["G"][:N_GALLERY]) as (db, name, log):
        db.query_points(name, sample["Q"][9].tolist(), limit=3, rerank=False)  # nothing reranked before it
        assert db.flush() == 1
        _assert_logged(log_points(qclient, log), sample["Q"][9:10])


def test_async_wrapper_logs_and_close_writes_what_is_pending(sample, tmp_path):
    Q = sample["Q"]
    G = sample["G"][:N_GALLERY]
    path = str(tmp_path / "q")
    name, log = names()

    async def run():
        ac = AsyncQdrantClient(path=path)
        await ac.create_collection(name, vectors_config=models.VectorParams(size=G.shape[1],
                                                                             distance=models.Distance.COSINE))
        await ac.upsert(name, [models.PointStruct(id=i, vector=g.tolist(), payload={"g": i % 50})
                               for i, g in enumerate(G)])
        db = AsyncDBNormClient(ac, query_log=log)
        assert len((await db.query_points(name, Q[0].tolist(), limit=5)).points) == 5
        # 70 queries: more than a batch (64), written by a task on the loop
        await db.query_batch_points(name, [models.QueryRequest(query=q.tolist(), limit=3) for q in Q[1:71]])
        await db.search(name, Q[71], limit=3)
        await db.query_points_groups(name, "g", Q[72].tolist(), limit=2, group_size=1)
        await db.flush()
        recs, _ = await ac.scroll(log, limit=1000, with_payload=True, with_vectors=True)
        points = {int(r.id): (np.asarray(r.vector, dtype=np.float32), r.payload) for r in recs}
        await db.query_points(name, Q[73].tolist(), limit=3)  # pending: close() writes it
        await db.close()
        return points

    _assert_logged(asyncio.run(run()), Q[:73])
    c = QdrantClient(path=path)
    try:
        _assert_logged(log_points(c, log), Q[:74])
    finally:
        c.close()


def test_sample_rate_zero_logs_nothing(qclient, sample):
    with logged(qclient, sample["G"][:N_GALLERY], log_sample_rate=0.0) as (db, name, log):
        log_queries(db, name, sample["Q"][:40])
        db.query_points(name, sample["Q"][0].tolist(), limit=3)
        assert db.flush() == 0
        assert not qclient.collection_exists(log)


def test_a_sample_rate_logs_a_share_of_the_queries(qclient, sample):
    X = unit_rows(sample["QB"][:200])
    with logged(qclient, sample["G"][:N_GALLERY], log_sample_rate=0.5) as (db, name, log):
        log_queries(db, name, X)
        points = log_points(qclient, log)
        assert 60 <= len(points) <= 140 and sorted(points) == list(range(len(points)))
        which = np.argmax(np.stack([points[j][0] for j in range(len(points))]) @ X.T, axis=1)
        assert (np.diff(which) > 0).all()  # kept in the order served
        assert db.status(name).logged == len(points)  # the counter counts what was kept


def test_ring_keeps_the_latest_queries(qclient, sample):
    X = sample["QB"][:120]
    with logged(qclient, sample["G"][:N_GALLERY], log_capacity=50) as (db, name, log):
        log_queries(db, name, X[:70], batch=35)
        log_queries(db, name, X[70:], batch=25)
        points = log_points(qclient, log)
        assert sorted(points) == list(range(50))
        # query t sits in slot t % 50: the last 50 (70..119)
        want = np.stack([X[t] for t in sorted(range(70, 120), key=lambda t: t % 50)])
        _same_rows([points[j][0] for j in range(50)], want)
        st = db.status(name)
        assert (st.logged, st.log_size, st.pending) == (120, 50, 0)


def test_reservoir_keeps_a_uniform_sample_and_counts_every_query(qclient, sample):
    X = unit_rows(sample["QB"][:200])
    with logged(qclient, sample["G"][:N_GALLERY], log_capacity=50, log_policy="reservoir") as (db, name, log):
        log_queries(db, name, X[:100], batch=50)
        assert db.status(name).logged == 100
        log_queries(db, name, X[100:], batch=50)
        points = log_points(qclient, log)
        assert sorted(points) == list(range(50))
        got = [points[j][0] for j in range(50)]
        which = np.argmax(np.stack(got) @ X.T, axis=1)  # the logged query each slot holds
        _same_rows(got, X[which])
        assert len(set(which.tolist())) == 50
        assert (which >= 50).any()  # later queries replaced some of the first 50 ...
        assert (which < 150).any()  # ... and earlier ones stayed: not the ring's last 50
        st = db.status(name)
        assert (st.logged, st.log_size) == (200, 50)


@pytest.mark.parametrize("kind", PERSISTENT)
def test_close_writes_the_buffer_and_the_counter_outlives_the_wrapper(kind, sample, tmp_path, monkeypatch):
    monkeypatch.setattr(Worker, "run", lambda self: None)  # no background write: only close() can write
    X = sample["QB"][:60]
    name, log = names()
    c = open_store(kind, tmp_path / "s")
    load(c, name, sample["G"][:100])  # local mode on disk commits every point it writes
    db = DBNormClient(c, query_log=log, log_capacity=50)
    db.query_batch_points(name, [models.QueryRequest(query=q.tolist(), limit=1) for q in X[:30]], rerank=False)
    assert db.lifecycles.get(name).log.pending == 30
    db.close()

    c = open_store(kind, tmp_path / "s")
    db = DBNormClient(c, query_log=log, log_capacity=50)
    try:
        assert c.count(log, exact=True).count == 30
        log_queries(db, name, X[30:])  # the second wrapper goes on at slot 30, not 0
        points = log_points(c, log)
        slots = {t % 50: t for t in range(60)}  # the ring after 60 queries
        want = np.stack([X[slots[j]] for j in range(50)])
        _same_rows([points[j][0] for j in range(50)], want)
        assert db.status(name).logged == 60
    finally:
        db.close()


def test_a_mapping_gives_each_collection_its_own_log(qclient, sample):
    a, a_log = names()
    b, b_log = names()
    other, _ = names()
    for n, rows in ((a, slice(0, 100)), (b, slice(100, 200)), (other, slice(200, 300))):
        load(qclient, n, sample["G"][rows])
    Q = sample["Q"]
    db = DBNormClient(qclient, query_log={a: a_log, b: b_log})
    try:
        db.query_points(a, Q[0].tolist(), limit=3)
        db.query_points(b, Q[1].tolist(), limit=3)
        db.query_points(a, Q[2].tolist(), limit=3)
        db.query_points(other, Q[3].tolist(), limit=3, rerank=False)  # not in the mapping: not logged
        with pytest.raises(InputError, match="no banks configured"):  # nor served by a cold start
            db.query_points(other, Q[3].tolist(), limit=3)
        db.flush()
        _assert_logged(log_points(qclient, a_log), Q[[0, 2]])
        _assert_logged(log_points(qclient, b_log), Q[[1]])
        assert db.lifecycles.get(other) is None
    finally:
        stop(db)
