"""The returned objects: qdrant-client's own types, the raw score on request, the typed passthrough."""

from __future__ import annotations


import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.models import QueryResponse

from dbnorm_qdrant.qdrant import AsyncDBNormClient, BankSet, DBNormClient, raw_score

from qdrant_helpers import make_collection


@pytest.fixture
def db(small):
    c = QdrantClient(":memory:")
    make_collection(c, "c", small["G"])
    return DBNormClient(c, banks=BankSet(small["QB"], small["GB"]), params={"method": "dualis"}, candidates=400)


@pytest.mark.parametrize("mode", ["client", "server"])
def test_results_are_qdrant_models_and_raw_score_is_opt_in(db, small, mode):
    if mode == "server":
        db.precompute("c", progress=False)
    q = small["Q"][1].tolist()
    plain = {p.id: p.score for p in db.client.query_points("c", query=q, limit=400).points}
    for _ in range(2):  # cold, then from the cache (client) / the payload (server)
        res = db.query_points("c", query=q, limit=5, mode=mode, with_payload=["i"])
        assert type(res) is QueryResponse and all(type(p) is models.ScoredPoint for p in res.points)
        assert all(p.payload == {"i": p.id} and raw_score(p) is None for p in res.points)
        assert QueryResponse.model_validate(res.model_dump()) == res  # a plain, valid model
        got = db.query_points("c", query=q, limit=5, mode=mode, with_payload=["i"], with_raw_score=True)
        assert [p.id for p in got.points] == [p.id for p in res.points]
        for p in got.points:
            assert set(p.payload) == {"i", "_dbnorm"} and set(p.payload["_dbnorm"]) == {"raw_score"}
            assert raw_score(p) == pytest.approx(plain[p.id], rel=1e-5, abs=1e-6)
    # nothing was written to Qdrant
    stored = db.client.retrieve("c", ids=[p.id for p in got.points], with_payload=True)
    assert all("raw_score" not in (r.payload.get("_dbnorm") or {}) for r in stored)
    # without a payload asked for, the raw score alone; with another key, raw_score() follows it
    none = db.query_points("c", query=q, limit=2, mode=mode, with_payload=False, with_raw_score=True)
    assert all(set(p.payload) == {"_dbnorm"} for p in none.points)
    other = DBNormClient(db.client, banks=db.settings.banks, params={"method": "dualis"}, payload_key="dbn")
    p = other.query_points("c", query=q, limit=1, with_payload=False, with_raw_score=True).points[0]
    assert raw_score(p) is None and raw_score(p, other.payload_key) == pytest.approx(plain[p.id], rel=1e-5)


def test_statistics_key_only_when_asked(db, small):
    db.precompute("c", progress=False)
    q = small["Q"][2].tolist()
    assert all("_dbnorm" in p.payload for p in db.query_points("c", query=q, limit=3, with_payload=True).points)
    inc = db.query_points("c", query=q, limit=3, with_payload=models.PayloadSelectorInclude(include=["i"]))
    assert all(p.payload == {"i": p.id} for p in inc.points)
    withraw = db.query_points("c", query=q, limit=3, with_payload=True, with_raw_score=True).points[0]
    assert {"fp", "raw_score"} <= set(withraw.payload["_dbnorm"])  # a copy: the stored record has no raw_score


def test_typed_passthrough_and_client_attribute(db, caplog):
    assert isinstance(db.client, QdrantClient)
    assert db.get_collection("c").points_count == 400  # forwarded at run time
    assert DBNormClient.__annotations__["client"] in (QdrantClient, "QdrantClient")
    assert AsyncDBNormClient.__annotations__["client"] in (AsyncQdrantClient, "AsyncQdrantClient")
    assert db.scroll == db.client.scroll  # a method that does not rank passes through
    assert db.query_points_groups != db.client.query_points_groups  # a ranking one is the wrapper's own
    with pytest.raises(AttributeError):
        db.no_such_method  # noqa: B018


def test_score_threshold_and_offset_after_the_rerank(db, small):
    q = small["Q"][4].tolist()
    full = db.query_points("c", query=q, limit=8, with_raw_score=True).points
    scores = [p.score for p in full]
    assert scores == sorted(scores, reverse=True)
    cut = db.query_points("c", query=q, limit=8, score_threshold=scores[3]).points
    assert [p.id for p in cut] == [p.id for p in full[:4]]
    off = db.query_points("c", query=q, limit=3, offset=2, with_raw_score=True).points
    assert [p.id for p in off] == [p.id for p in full[2:5]]
    np.testing.assert_allclose([raw_score(p) for p in off], [raw_score(p) for p in full[2:5]], rtol=1e-6)
