"""The lifecycle's bad input and failures (docs/lifecycle.md, "Bad input"): a clear
``InputError`` or a documented fallback each, never a failed query from a log write, never a
half-written version served. Faults are injected into a rebuild halfway (after the first page
of statistics is written) and at the switch. On local mode and Qdrant Edge (and a server when
one is reachable), with the shipped sample."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.qdrant import AsyncDBNormClient, DBNormClient
from dbnorm_qdrant.qdrant.lifecycle import Lifecycle, Worker, rebuild, state

from lifecycle_helpers import bank_rows, head, load, log_queries, logged, names, ranked, stop


@pytest.fixture(autouse=True)
def _see_switches_at_once(monkeypatch):
    monkeypatch.setattr(Lifecycle, "check_s", 0.0)


@pytest.mark.parametrize("options, words", [
    (dict(min_log=5), "min_log"),
    (dict(rebuild_every=0), "rebuild_every"),
    (dict(log_policy="x"), "log_policy"),
    (dict(log_sample_rate=2), "log_sample_rate"),
    (dict(log_capacity=0), "log_capacity"),
    (dict(query_log={"a": "same", "b": "same"}), "own log name"),
    (dict(query_log=""), "query_log"),
    (dict(query_log=None, rebuild_every=10), "needs a query log"),
])
def test_bad_options_are_refused_at_construction(options, words):
    kw = {"query_log": "log", **options}
    with pytest.raises(InputError, match=words):
        DBNormClient(QdrantClient(":memory:"), **kw)


def test_the_async_wrapper_refuses_rebuild_every():
    with pytest.raises(InputError, match="await db.rebuild"):
        AsyncDBNormClient(AsyncQdrantClient(":memory:"), query_log="log", rebuild_every=100)


def test_one_log_name_on_two_collections_names_the_mapping_form(qclient, sample):
    a, log = names()
    b, _ = names()
    load(qclient, a, sample["G"][:20])
    load(qclient, b, sample["G"][20:40])
    db = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
    try:
        db.query_points(a, sample["Q"][0].tolist(), limit=3)
        with pytest.raises(InputError, match=r"query_log=\{") as err:
            db.query_points(b, sample["Q"][0].tolist(), limit=3)
        assert a in str(err.value) and b in str(err.value)
    finally:
        stop(db)


@pytest.mark.parametrize("size, distance", [(128, models.Distance.COSINE), (384, models.Distance.DOT)])
def test_a_log_of_other_vectors_fails_flush_never_a_query(qclient, sample, monkeypatch, caplog, size, distance):
    name, log = names()
    load(qclient, name, sample["G"][:300])
    qclient.create_collection(log, vectors_config=models.VectorParams(size=size, distance=distance))
    Q = sample["Q"]
    monkeypatch.setattr(Worker, "run", lambda self: None)  # no background write: flush() meets the error
    db = DBNormClient(qclient, query_log=log)
    try:
        assert len(db.query_points(name, Q[0].tolist(), limit=5).points) == 5
        with pytest.raises(InputError, match=f"{size}-dimensional {distance.value}") as err:
            db.flush()
        assert "384-dimensional Cosine" in str(err.value) and log in str(err.value)
    finally:
        stop(db)
    monkeypatch.undo()  # the real background writer: it logs the failure, the queries are served
    monkeypatch.setattr(Lifecycle, "check_s", 0.0)
    db = DBNormClient(qclient, query_log=log)
    try:
        with caplog.at_level(logging.WARNING, logger="dbnorm_qdrant.qdrant.lifecycle.hub"):
            res = db.query_batch_points(name, [models.QueryRequest(query=q.tolist(), limit=5) for q in Q[:64]])
            assert all(len(r.points) == 5 for r in res)
            deadline = time.monotonic() + 20
            while "a write failed" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
        assert "a write failed" in caplog.text and log in caplog.text
        assert qclient.count(log, exact=True).count == 0  # the foreign collection is left as it was
        desc = qclient.get_collection(log).config.params.vectors
        assert (desc.size, desc.distance) == (size, distance)
    finally:
        stop(db)


def test_state_of_a_newer_package_is_refused(qclient, sample):
    name, log = names()
    load(qclient, name, sample["G"][:300])
    sname = state.state_name(log)
    qclient.create_collection(sname, vectors_config=models.VectorParams(size=384, distance=models.Distance.DOT))
    newer = {"kind": "head", "schema": 99, "package": "9.0", "collection": name, "active": 3, "using": "v9_field"}
    qclient.upsert(sname, [models.PointStruct(id=state.HEAD, vector=[0.0] * 384, payload=newer)], wait=True)
    db = DBNormClient(qclient, query_log=log, min_log=100)
    try:
        with pytest.raises(InputError, match="newer"):
            db.query_points(name, sample["Q"][0].tolist(), limit=3)
        with pytest.raises(InputError, match="newer"):
            db.rebuild(name, progress=False)
        assert head(qclient, log) == newer  # nothing rewritten
    finally:
        stop(db)


def test_a_rebuild_below_min_log_changes_nothing(qclient, sample):
    with logged(qclient, sample["G"][:300]) as (db, name, log):
        log_queries(db, name, sample["QB"][:150])
        with pytest.raises(InputError, match="holds 150 queries.*min_log=200") as err:
            db.rebuild(name, progress=False)
        assert "the cold start" in str(err.value)
        st = db.status(name)
        assert st.active_version is None and st.serving.startswith("the cold start") and st.versions == {}
        assert head(qclient, log) == {}


def test_a_collection_recreated_or_emptied_under_its_version(qclient, sample):
    with logged(qclient, sample["G"][:400]) as (db, name, log):
        log_queries(db, name, sample["QB"][:200])
        db.rebuild(name, progress=False, gallery_sample=200)
        assert len(db.query_points(name, sample["Q"][0].tolist(), limit=3).points) == 3  # logged, maybe pending
        # recreated with another model: refused, never served from banks of another space
        qclient.delete_collection(name)
        X = np.random.default_rng(0).normal(size=(50, 128)).astype(np.float32)
        load(qclient, name, X)
        with pytest.raises(InputError, match="recreated with another model"):
            db.query_points(name, X[0].tolist(), limit=3)
        with pytest.raises(InputError, match="recreated with another model"):
            db.status(name)  # its flush still writes the query served before, at its own size
        assert qclient.count(log, exact=True).count == 201
        # recreated empty with the same model: no points (not an error), and a rebuild is refused
        qclient.delete_collection(name)
        qclient.create_collection(name, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
        assert db.query_points(name, sample["Q"][0].tolist(), limit=3).points == []
        with pytest.raises(InputError, match="holds 0 point"):
            db.rebuild(name, progress=False)
        assert head(qclient, log)["active"] == 1


def _killed_after_first_page(real):
    """``precompute_logic`` that dies once the first page of statistics is written."""
    def broken(*args, **kwargs):
        gen = real(*args, **kwargs)
        send = None
        while True:
            try:
                call = gen.send(send)
            except StopIteration:  # pragma: no cover (the test fails below: nothing was written)
                raise AssertionError("the precompute wrote nothing: no fault was injected halfway") from None
            send = yield call
            if call.name == "batch_update_points":
                raise RuntimeError("injected fault: the rebuild was killed halfway")
    return broken


class _SwitchFails:
    """The client, except that writing the state's head (the switch itself) fails."""

    def __init__(self, client, log):
        self._client, self._state = client, state.state_name(log)

    def __getattr__(self, name):
        return getattr(self._client, name)

    def upsert(self, collection_name, points, **kwargs):
        if collection_name == self._state and any(p.id == state.HEAD for p in points):
            raise ConnectionError("injected fault: the switch did not reach Qdrant")
        return self._client.upsert(collection_name=collection_name, points=points, **kwargs)


def _manifest(client, log, version):
    got = client.retrieve(state.state_name(log), ids=[state.manifest_id(version)], with_payload=True)
    return dict(got[0].payload)


def _holding(client, name, fingerprint):
    """How many points hold statistics tagged ``fingerprint``."""
    recs, _ = client.scroll(name, limit=10_000, with_payload=True)
    return sum(1 for r in recs if (r.payload.get("_dbnorm") or {}).get("fp") == fingerprint)


def test_a_failed_rebuild_leaves_the_old_version_serving(qclient, sample, monkeypatch):
    name, log = names()
    load(qclient, name, sample["G"][:400])
    Q = sample["Q"][:60]
    db = DBNormClient(qclient, query_log=log)
    ev = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
    proxied = DBNormClient(_SwitchFails(qclient, log), query_log=log, log_sample_rate=0.0)
    kill = _killed_after_first_page(rebuild.precompute_logic)

    seeds = iter(range(100))  # each rebuild samples another gallery bank: another fingerprint

    def rebuild_with(fault, wrapper=db):
        with monkeypatch.context() as m:
            if fault:
                m.setattr(rebuild, "precompute_logic", kill)
            return wrapper.rebuild(name, progress=False, gallery_sample=200, seed=next(seeds))

    def same_as(want):  # this wrapper and a new process serve exactly what was served before
        for w in (ev, DBNormClient(qclient, query_log=log, log_sample_rate=0.0)):
            got = ranked(w, name, Q)
            assert got[1] == want[1]
            np.testing.assert_allclose(got[2], want[2], rtol=1e-6, atol=1e-7)
            stop(w)

    try:
        log_queries(db, name, sample["QB"][:200])
        cold = ranked(ev, name, Q)
        with pytest.raises(RuntimeError, match="halfway"):  # the first rebuild dies: cold stays
            rebuild_with(kill)
        assert _holding(qclient, name, _manifest(qclient, log, 1)["fingerprint"]) > 0  # half-written
        st = ev.status(name)
        assert st.active_version is None and st.serving.startswith("the cold start")
        assert st.versions == {1: "building"}
        same_as(cold)

        rep = rebuild_with(None)
        assert (rep.version, rep.previous, rep.removed) == (2, None, [1]) and bank_rows(qclient, log, 1) == 0
        v2 = ranked(ev, name, Q)
        assert v2[1] != cold[1]

        with pytest.raises(RuntimeError, match="halfway"):  # dies writing version 3
            rebuild_with(kill)
        assert _holding(qclient, name, _manifest(qclient, log, 3)["fingerprint"]) > 0
        with pytest.raises(ConnectionError, match="switch"):  # version 4 complete, the switch fails
            rebuild_with(None, proxied)
        assert _manifest(qclient, log, 4)["status"] == "ready" and head(qclient, log)["active"] == 2
        st = ev.status(name)
        assert st.active_version == 2 and st.versions == {1: "retired", 2: "ready", 3: "building", 4: "ready"}
        same_as(v2)

        rep = rebuild_with(None)  # the next good rebuild retires what the failed ones left
        assert (rep.version, rep.previous, rep.removed) == (5, 2, [2, 3, 4])
        assert [bank_rows(qclient, log, v) for v in (2, 3, 4)] == [0, 0, 0]
        assert bank_rows(qclient, log, 5) == 200 + 200 and head(qclient, log)["active"] == 5
        assert _holding(qclient, name, rep.fingerprint) == 400
    finally:
        stop(db, ev, proxied)


def test_a_log_never_writes_into_a_collection_of_the_user(qclient, sample, monkeypatch):
    """A log named like the served collection is refused; an existing collection with points and no
    log state is refused as a log: its points and payload stay as they were."""
    name, log = names()
    load(qclient, name, sample["G"][:300])
    load(qclient, log, sample["G"][300:400])  # the user's own collection, same size and distance
    with pytest.raises(InputError, match="a log must be a collection of its own"):
        DBNormClient(qclient, query_log={name: name})
    monkeypatch.setattr(Worker, "run", lambda self: None)
    db = DBNormClient(qclient, query_log=log)
    try:
        assert len(db.query_points(name, sample["Q"][0].tolist(), limit=5).points) == 5
        with pytest.raises(InputError, match="is not a dbnorm query log"):
            db.flush()
    finally:
        stop(db)
    rec = qclient.retrieve(log, [0], with_payload=True, with_vectors=True)[0]
    assert rec.payload == {"i": 0, "g": 0}
    np.testing.assert_allclose(rec.vector, sample["G"][300] / np.linalg.norm(sample["G"][300]), rtol=1e-5, atol=1e-6)


def test_a_prefetch_branch_on_another_vector_is_not_logged(qclient, sample):
    name, log = names()
    G = sample["G"][:200]
    vp = models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE)
    qclient.create_collection(name, vectors_config={"body": vp, "title": vp})
    qclient.upload_collection(name, vectors={"body": G, "title": G[::-1].copy()}, ids=list(range(len(G))), wait=True)
    db = DBNormClient(qclient, query_log=log)
    q, other = sample["Q"][0], sample["Q"][1]
    try:
        db.query_points(name, q.tolist(), using="body", limit=5,
                        prefetch=[models.Prefetch(query=other.tolist(), using="title", limit=20),
                                  models.Prefetch(query=q.tolist(), using="body", limit=20)])
        assert db.flush() == 2  # the query and its body branch; the title branch is another space
        recs = qclient.scroll(log, limit=10, with_vectors=True)[0]
        for r in recs:
            np.testing.assert_allclose(r.vector, q / np.linalg.norm(q), rtol=1e-5, atol=1e-6)
    finally:
        stop(db)
