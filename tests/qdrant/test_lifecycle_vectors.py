"""A query log serves one vector of a collection with named vectors: the active version's, else
the one the first query names. A reranked query on another vector is refused (its banks would be
the wrong vector's), a plain one runs unlogged; a new wrapper finds the vector in the state,
also once an index vector sits beside it. On local mode and Qdrant Edge (and a server when one
is reachable), with the shipped sample."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models

from dbnorm_qdrant.banks import BankSet, save_banks
from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.qdrant import DBNormClient
from dbnorm_qdrant.qdrant.lifecycle import Lifecycle

from qdrant_helpers import make_collection
from lifecycle_helpers import log_points, names, stop


@pytest.fixture(autouse=True)
def _see_switches_at_once(monkeypatch):
    monkeypatch.setattr(Lifecycle, "check_s", 0.0)


def _ids(db, name, q, **kwargs):
    return [p.id for p in db.query_points(name, q.tolist(), limit=5, **kwargs).points]


def test_two_named_vectors_one_log(qclient, sample, tmp_path):
    name, log = names()
    make_collection(qclient, name, sample["G"][:300], named=True)  # "text": g, "other": -g
    Q = sample["Q"]
    db = DBNormClient(qclient, query_log=log)
    try:
        assert len(_ids(db, name, Q[0], using="text")) == 5  # binds the log to "text"
        with pytest.raises(InputError, match="serves vector 'text'.*query on 'other'"):
            db.query_points(name, Q[1].tolist(), using="other", limit=5)
        assert len(_ids(db, name, Q[2], using="other", rerank=False)) == 5  # runs, unlogged
        db.flush()
        points = log_points(qclient, log)
        assert sorted(points) == [0]
        np.testing.assert_allclose(points[0][0] / np.linalg.norm(points[0][0]), Q[0] / np.linalg.norm(Q[0]),
                                   rtol=1e-5, atol=1e-6)

        path = save_banks(tmp_path / "b.npz", BankSet(sample["QB"][:300], sample["GB"][:300]),
                          params={"method": "is", "beta_q": 10.0})
        db.import_banks(name, path, progress=False)
        later = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
        with pytest.raises(InputError, match="serves vector 'text'"):  # the state names "text"
            later.query_points(name, Q[3].tolist(), using="other", limit=5)
        assert _ids(later, name, Q[3], using="text") == _ids(db, name, Q[3], using="text")
        stop(later)
    finally:
        stop(db)


def test_a_hybrid_collection_with_an_index_vector_is_served_by_a_new_wrapper(qclient, sample, tmp_path):
    name, log = names()
    qclient.create_collection(name, vectors_config={"dense": models.VectorParams(size=384,
                                                                                 distance=models.Distance.COSINE)},
                              sparse_vectors_config={"sparse": models.SparseVectorParams()})
    qclient.upsert(name, [models.PointStruct(id=i, vector={"dense": g.tolist()})
                          for i, g in enumerate(sample["G"][:300])], wait=True)
    path = save_banks(tmp_path / "b.npz", BankSet(sample["QB"][:300], sample["GB"][:300]),
                      params={"method": "is", "beta_q": 10.0})
    Q = sample["Q"][:10]
    db = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
    later = DBNormClient(qclient, query_log=log, log_sample_rate=0.0)
    try:
        rep = db.import_banks(name, path, progress=False)
        assert rep.index_name in qclient.get_collection(name).config.params.vectors  # beside "dense"
        for q in Q:
            assert _ids(later, name, q, using="dense") == _ids(db, name, q, using="dense")
        assert later.status(name).active_version == 1
        sparse = models.SparseVector(indices=[1, 7], values=[1.0, 0.5])
        res = later.query_batch_points(name, [models.QueryRequest(query=Q[0].tolist(), using="dense", limit=3),
                                              models.QueryRequest(query=sparse, using="sparse", limit=3)])
        assert len(res[0].points) == 3  # a sparse request beside it runs as it is, not refused
    finally:
        stop(db, later)
