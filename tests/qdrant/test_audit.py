"""The hub audit and the quarantine through the wrappers, on every driver (local mode, Qdrant
Edge, a server when reachable): planted hubs found, exact k-occurrence, stored statistics
reused, the quarantine written under the reserved key only and honoured by every query form,
bad input refused with nothing changed."""

from __future__ import annotations

import asyncio
import math
import os
import uuid

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from dbnorm_qdrant import BankNormalizer, InputError
from dbnorm_qdrant.core.audit import HubAudit, RowTopK, robust_z
from dbnorm_qdrant.eval.attacks import mixed_hubs
from dbnorm_qdrant.eval.metrics import k_occurrence
from dbnorm_qdrant.qdrant import AsyncDBNormClient, DBNormClient
from dbnorm_qdrant.qdrant.quarantine import Quarantine

N_HUBS = 8


@pytest.fixture(scope="module")
def poisoned(sample):
    """The sample's 1,500 gallery items plus 8 planted hubs (centroid, cluster, optimized), made
    from 500 test queries (the attacker's sample); ids 0..1507, the hubs last."""
    G = sample["G"]
    H = mixed_hubs(N_HUBS, sample["Q"][:500], G, seed=0)
    X = np.vstack([G, H]).astype(np.float32)
    return X, set(range(len(G), len(X)))


@pytest.fixture(scope="module")
def nz(sample):
    return BankNormalizer(sample["QB"], sample["GB"], method="dualis", beta_q=20.0, beta_g=3.0)


def _fill(client, name: str, X: np.ndarray) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=X.shape[1], distance=models.Distance.COSINE))
    client.upload_collection(name, vectors=X, ids=list(range(len(X))), payload=[{"i": i, "t": f"doc {i}"} for i in
                                                                                  range(len(X))], wait=True)


@pytest.fixture
def coll(qclient, poisoned, cname):
    X, _ = poisoned
    _fill(qclient, cname, X)
    yield qclient, cname
    qclient.delete_collection(cname)


@pytest.fixture(autouse=True)
def _check_at_once(monkeypatch):
    monkeypatch.setattr(Quarantine, "check_s", 0.0)  # see another wrapper's quarantine at once


def _payloads(client, name, n):
    return {r.id: r.payload for r in client.retrieve(name, list(range(n)), with_payload=True)}


# ----------------------------------------------------------------------------- the maths
def test_row_topk_streams_to_the_brute_force_kocc(sample):
    rng = np.random.default_rng(0)
    S = rng.normal(size=(50, 300))
    top = RowTopK(50, 14)
    for j in range(0, 300, 64):
        top.update(S[:, j:j + 64], j)
    np.testing.assert_array_equal(top.counts(300, 7), k_occurrence(S, k=7))


def test_identical_copies_of_a_hub_all_count():
    """Five copies of one item, k = 3: each copy ties with the others at every row's 3rd best."""
    rng = np.random.default_rng(1)
    S = rng.uniform(0, 0.5, size=(40, 100))
    S[:, 95:] = 0.9  # items 95..99: identical copies, the best match of every row
    top = RowTopK(40, 6)
    top.update(S, 0)
    c = top.counts(100, 3)
    np.testing.assert_array_equal(c[95:], [40] * 5)
    assert c[:95].sum() == 0


def test_robust_z_uses_median_and_mad():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    z = robust_z(x)
    assert z[2] == 0.0 and z[4] == pytest.approx((100 - 3) / 1.4826, rel=1e-4)
    np.testing.assert_array_equal(robust_z(np.ones(5)), np.zeros(5))
    assert np.isfinite(robust_z(np.array([0, 0, 0, 0, 5.0]))).all()  # MAD 0: the mean deviation stands in


def test_matrix_audit_counts_exactly_and_finds_the_planted_hubs(nz, poisoned, sample):
    X, planted = poisoned
    a = HubAudit(nz, 10, block=500)  # several blocks: the streaming merge is exercised
    for i in range(0, len(X), 256):
        a.add(X[i:i + 256])
    sig = a.finish()
    # every bank query's top 10 is the float64 brute force's, wherever its 10th and 11th are apart
    S = nz.query_bank.astype(np.float64) @ X.T.astype(np.float64)
    srt = np.sort(S, axis=1)
    clear = srt[:, -10] - srt[:, -11] > 1e-5
    ref = np.argpartition(-S, 9, axis=1)[:, :10]
    assert clear.mean() > 0.95
    hits = a.raw.hits(10)
    assert all(set(a.raw.idx[r][hits[r]]) == set(ref[r]) for r in np.flatnonzero(clear))
    np.testing.assert_array_equal(sig.kocc, np.bincount(a.raw.idx[hits], minlength=len(X)))
    assert 10 * len(sample["QB"]) <= sig.kocc.sum() <= 10.1 * len(sample["QB"])  # ties add a few
    assert set(sig.order()[:N_HUBS].tolist()) == planted  # every planted hub ranks above every real item
    # normalisation takes the hubs out of the bank queries' lists
    assert sig.kocc_normalized[list(planted)].sum() < 0.1 * sig.kocc[list(planted)].sum()


# ----------------------------------------------------------------------------- through Qdrant
def test_audit_flags_the_planted_hubs_and_matches_the_matrix_audit(coll, nz, poisoned):
    client, name = coll
    X, planted = poisoned
    before = _payloads(client, name, len(X))
    rep = DBNormClient(client, nz).audit(name, budget=0.005, progress=False)
    assert rep.n_points == len(X) and len(rep.flagged) == math.ceil(0.005 * len(X)) == 8
    assert set(rep.flagged) == planted
    scores = [r["score"] for r in rep.rows]
    assert scores == sorted(scores, reverse=True)
    stored = {r.id: r.vector for r in client.retrieve(name, rep.ids, with_vectors=True)}  # as the engine keeps them
    a = HubAudit(nz)
    a.add(np.asarray([stored[i] for i in rep.ids], dtype=np.float32))
    np.testing.assert_array_equal(rep.kocc, a.finish().kocc)
    assert rep.rows[0]["payload"] == {"i": rep.flagged[0], "t": f"doc {rep.flagged[0]}"}
    assert 0.0 <= rep.rows[0]["spread"] <= 1.0
    assert _payloads(client, name, len(X)) == before  # an audit without quarantine writes nothing


def test_audit_reuses_current_stored_statistics(coll, nz, poisoned):
    client, name = coll
    db = DBNormClient(client, nz)
    first = db.audit(name, budget=0.01, progress=False)
    assert first.reused_stats == 0
    db.precompute(name, progress=False)
    again = db.audit(name, budget=0.01, progress=False)
    assert again.reused_stats == len(poisoned[0])
    assert again.flagged == first.flagged
    np.testing.assert_allclose(again.bias, first.bias, rtol=1e-5)


def test_quarantine_marks_only_the_reserved_key_and_every_query_form_leaves_them_out(coll, nz, poisoned):
    client, name = coll
    X, planted = poisoned
    before = _payloads(client, name, len(X))
    db = DBNormClient(client, nz, candidates=100)
    rep = db.audit(name, budget=0.005, progress=False, quarantine=True)
    assert rep.quarantined == len(rep.flagged) == N_HUBS
    after = _payloads(client, name, len(X))
    for pid, pl in after.items():
        assert {k: v for k, v in pl.items() if k != "_dbnorm"} == before[pid]  # the user's payload is untouched
        assert (pl.get("_dbnorm", {}).get("quarantined") is True) == (pid in planted)
    hub = X[max(planted)].tolist()  # the hub's own vector: its own best match
    served = DBNormClient(client, nz, candidates=100)  # a fresh wrapper learns the quarantine from the collection
    for db_ in (db, served):
        assert not planted & {p.id for p in db_.query_points(name, hub, limit=20).points}
        assert not planted & {p.id for p in db_.search(name, hub, limit=20)}
        res = db_.query_batch_points(name, [models.QueryRequest(query=hub, limit=20)])
        assert not planted & {p.id for p in res[0].points}
        pre = db_.query_points(name, prefetch=[models.Prefetch(query=hub, limit=50)],
                               query=models.FusionQuery(fusion=models.Fusion.RRF), limit=20)
        assert not planted & {p.id for p in pre.points}
        groups = db_.query_points_groups(name, "i", query=hub, limit=10, group_size=1)
        assert not planted & {g.id for g in groups.groups}
    ignore = DBNormClient(client, nz, candidates=100, quarantine="ignore")
    assert max(planted) in {p.id for p in ignore.query_points(name, hub, limit=20).points}
    # a precompute keeps the mark (and does not take it for foreign data)
    db.precompute(name, progress=False)
    assert _payloads(client, name, len(X))[max(planted)]["_dbnorm"]["quarantined"] is True
    assert not planted & {p.id for p in db.query_points(name, hub, limit=20).points}
    # unquarantine reverses it: the payload is what it was before the audit (statistics aside)
    assert db.unquarantine(name, ids=[max(planted)]) == 1
    assert max(planted) in {p.id for p in db.query_points(name, hub, limit=20).points}
    assert db.unquarantine(name) == N_HUBS - 1
    final = _payloads(client, name, len(X))
    assert all("quarantined" not in pl["_dbnorm"] and "audit" not in pl["_dbnorm"] for pl in final.values())
    assert {pid: {k: v for k, v in pl.items() if k != "_dbnorm"} for pid, pl in final.items()} == before


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("budget", [0, 0.0, 1, 1.5, -0.01, float("nan"), None])
def test_a_budget_outside_zero_one_is_refused_before_anything_runs(budget, nz):
    class NoCalls:  # any call to Qdrant would fail the test
        def __getattr__(self, name):
            raise AssertionError(f"Qdrant was called ({name}) before the budget was checked")

    with pytest.raises(InputError, match="budget"):
        DBNormClient(NoCalls(), nz).audit("c", budget=budget)


def test_an_empty_collection_and_missing_banks_are_refused(qclient, cname, nz):
    qclient.create_collection(cname, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    try:
        with pytest.raises(InputError, match="empty"):
            DBNormClient(qclient, nz).audit(cname, progress=False)
        qclient.upsert(cname, [models.PointStruct(id=1, vector=[1.0] + [0.0] * 383)])
        with pytest.raises(InputError, match="query bank.*rebuild|bank build"):
            DBNormClient(qclient).audit(cname, progress=False)
    finally:
        qclient.delete_collection(cname)


class _LockedWrites:
    """A client whose storage refuses writes (a server with locked storage): reads pass."""

    def __init__(self, client):
        self._c = client

    def __getattr__(self, name):
        if name in ("batch_update_points", "set_payload", "upsert", "delete_payload"):
            raise RuntimeError("Write operations are forbidden: storage is read-only")
        return getattr(self._c, name)


def test_a_refused_quarantine_write_is_a_clear_error_and_marks_nothing(coll, nz, poisoned):
    client, name = coll
    X, _ = poisoned
    before = _payloads(client, name, len(X))
    with pytest.raises(InputError, match="refused the quarantine write.*nothing was marked"):
        DBNormClient(_LockedWrites(client), nz).audit(name, progress=False, quarantine=True)
    assert _payloads(client, name, len(X)) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders: the check cannot be exercised as root")
def test_quarantine_on_a_read_only_local_folder_is_refused_before_the_scan(tmp_path, nz, poisoned):
    X, _ = poisoned
    client = QdrantClient(path=str(tmp_path / "db"))
    _fill(client, "c", X[:300])
    os.chmod(tmp_path / "db", 0o555)
    try:
        with pytest.raises(InputError, match="read-only.*nothing was changed"):
            DBNormClient(client, nz).audit("c", progress=False, quarantine=True)
    finally:
        os.chmod(tmp_path / "db", 0o755)
        client.close()


def test_the_async_wrapper_audits_and_quarantines(nz, poisoned):
    X, planted = poisoned

    async def go():
        client = AsyncQdrantClient(":memory:")
        name = f"a_{uuid.uuid4().hex[:6]}"
        await client.create_collection(name, vectors_config=models.VectorParams(size=384,
                                                                                distance=models.Distance.COSINE))
        await client.upsert(name, [models.PointStruct(id=i, vector=v.tolist()) for i, v in enumerate(X)])
        db = AsyncDBNormClient(client, nz)
        rep = await db.audit(name, budget=0.005, progress=False, quarantine=True)
        res = await db.query_points(name, X[max(planted)].tolist(), limit=20)
        n = await db.unquarantine(name)
        return rep, {p.id for p in res.points}, n

    rep, got, n = asyncio.run(go())
    assert set(rep.flagged) == planted and not planted & got and n == N_HUBS


def test_a_query_bank_drawn_from_the_collection_counts_the_same_before_and_after_precompute(qclient, cname, sample):
    """Bank queries that are points of the collection (query_bank_keys) never retrieve themselves:
    on computed statistics and on stored ones alike."""
    G = sample["G"][:600]
    _fill(qclient, cname, G)
    try:
        nz = BankNormalizer(G[:300], sample["GB"][:300], method="dualis", query_bank_keys=np.arange(300))
        db = DBNormClient(qclient, nz)
        first = db.audit(cname, budget=0.01, progress=False)
        db.precompute(cname, progress=False)
        again = db.audit(cname, budget=0.01, progress=False)
        assert again.reused_stats == 600
        np.testing.assert_array_equal(again.kocc, first.kocc)
        assert again.flagged == first.flagged
        brute = G[:300].astype(np.float64) @ G.T.astype(np.float64)
        brute[np.arange(300), np.arange(300)] = -10.0  # the item itself (below any cosine)
        order = np.argsort(first.ids)
        np.testing.assert_array_equal(first.kocc[order], k_occurrence(brute, k=10))
    finally:
        qclient.delete_collection(cname)


def test_quarantine_refuses_foreign_data_under_the_reserved_key(coll, nz, poisoned):
    client, name = coll
    X, planted = poisoned
    victim = max(planted)
    client.set_payload(name, payload={"_dbnorm": "the user's own text"}, points=[victim])
    before = _payloads(client, name, len(X))
    with pytest.raises(InputError, match="not dbnorm's; nothing was marked"):
        DBNormClient(client, nz).audit(name, budget=0.005, progress=False, quarantine=True)
    assert _payloads(client, name, len(X)) == before


def test_a_prefetch_given_as_a_dict_is_guarded_too(coll, nz, poisoned):
    client, name = coll
    X, planted = poisoned
    db = DBNormClient(client, nz)
    db.audit(name, budget=0.005, progress=False, quarantine=True)
    hub = X[max(planted)].tolist()
    res = db.query_points(name, prefetch={"query": hub, "limit": 50}, query=models.FusionQuery(
        fusion=models.Fusion.RRF), limit=20, rerank=False)
    assert res.points and not planted & {p.id for p in res.points}
