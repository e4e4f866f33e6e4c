"""Stored zero vectors, zero queries on Euclid, list queries holding non-numbers, settings checked
at construction, and the statistics fields read from the method table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from dbnorm_qdrant.core.spec import METHODS
from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.qdrant import BankSet, CollectionConfig, DBNormClient
from dbnorm_qdrant.qdrant._io import drive
from dbnorm_qdrant.qdrant.cache import StatsCache

from qdrant_helpers import make_collection


@pytest.mark.parametrize("distance", [models.Distance.DOT, models.Distance.COSINE])
@pytest.mark.parametrize("method", ["dualis", "dualdis"])
def test_a_stored_zero_vector_is_scored_not_refused(qclient, cname, small, distance, method):
    G = small["G"][:120].copy()
    G[42] = 0.0
    ids = list(range(1000, 1000 + len(G)))  # the point id is not the batch position
    make_collection(qclient, cname, G, distance=distance, ids=ids)
    db = DBNormClient(qclient, banks=BankSet(small["QB"], small["GB"]), params={"method": method})
    try:
        r = db.query_points(cname, query=small["Q"][0].tolist(), limit=len(G), candidates=len(G))
        assert len(r.points) == len(G) and 1042 in [p.id for p in r.points]
        assert all(np.isfinite(p.score) for p in r.points)
        db.forget(cname)
        rep = db.precompute(cname, progress=False)
        assert rep.written == len(G)
        r2 = db.query_points(cname, query=small["Q"][0].tolist(), limit=5)
        assert [p.id for p in r2.points] == [p.id for p in r.points[:5]]
    finally:
        qclient.delete_collection(cname)


def test_a_zero_query_is_refused_on_cosine_and_dot_only(small):
    c = QdrantClient(":memory:")
    db = DBNormClient(c, banks=BankSet(small["QB"], small["GB"]), params={"method": "dualis"})
    for dist in ("Euclid", "Cosine", "Dot"):
        make_collection(c, dist, small["G"][:100], distance=dist)
    for q in ([0.0] * 16, np.zeros(16)):
        assert len(db.query_points("Euclid", query=q, limit=3).points) == 3
        for dist in ("Cosine", "Dot"):
            with pytest.raises(InputError, match="query row 0 is a zero vector"):
                db.query_points(dist, query=q, limit=3)


@pytest.mark.parametrize("bad", ["x", None])
@pytest.mark.parametrize("at", [0, 15])
def test_a_list_query_holding_a_non_number_is_an_input_error(small, bad, at):
    c = QdrantClient(":memory:")
    make_collection(c, "c", small["G"][:50])
    db = DBNormClient(c, banks=BankSet(small["QB"], small["GB"]))
    q = small["Q"][0].tolist()
    q[at] = bad
    with pytest.raises(InputError, match=rf"query must be a list of numbers, but element {at} is {bad!r}"):
        db.query_points("c", query=q, limit=3)


def test_cache_size_zero_means_no_cache(small):
    c = QdrantClient(":memory:")
    make_collection(c, "c", small["G"][:100])
    banks = BankSet(small["QB"], small["GB"])
    q = small["Q"][0].tolist()
    want = [p.id for p in DBNormClient(c, banks=banks).query_points("c", query=q, limit=5).points]
    db = DBNormClient(c, banks=banks, cache_size=0)
    for _ in range(2):
        assert [p.id for p in db.query_points("c", query=q, limit=5).points] == want
    with pytest.raises(InputError, match="cache_size must be an integer >= 0, got -1"):
        DBNormClient(c, banks=banks, cache_size=-1)
    with pytest.raises(InputError, match="maxsize must be an integer >= 0"):
        StatsCache(-1)


def test_settings_that_cannot_work_are_refused_at_construction(small):
    c = QdrantClient(":memory:")
    full, no_gallery = BankSet(small["QB"], small["GB"]), BankSet(small["QB"])
    with pytest.raises(InputError, match="unknown backend 'bogus'; choose one of"):
        DBNormClient(c, banks=full, backend="bogus")
    for method in ("dualis", "dualdis"):
        with pytest.raises(InputError, match=f"method '{method}' needs a gallery bank .*add one"):
            DBNormClient(c, banks=no_gallery, params={"method": method})
    with pytest.raises(InputError, match="needs a gallery bank"):
        DBNormClient(c, banks=no_gallery)  # the default method, dualis
    for method in ("csls", "nnn"):
        with pytest.raises(InputError, match=r"k=201 is larger than the query bank .*choose k <= 200"):
            DBNormClient(c, banks=full, params={"method": method, "k": 201})
    with pytest.raises(InputError, match="k=128 is larger than the query bank of collection 'x'"):  # nnn's default k
        DBNormClient(c, banks=BankSet(small["QB"][:100]), params={"method": "is"},
                     collections={"x": CollectionConfig(params={"method": "nnn"})})
    db = DBNormClient(c, banks=no_gallery, params={"method": "is"})
    with pytest.raises(InputError, match="collection 'y': method 'dualis' needs a gallery bank"):
        db.configure("y", params={"method": "dualis"})
    # what works stays accepted
    DBNormClient(c, banks=full, backend="numpy", params={"method": "csls", "k": 200})
    DBNormClient(c, banks=no_gallery, params={"method": "dis"})


@pytest.mark.parametrize("sample", [-3, 0, 2.5, "10"])
def test_build_banks_gallery_sample_is_checked(small, sample):
    c = QdrantClient(":memory:")
    make_collection(c, "c", small["G"][:50])
    with pytest.raises(InputError, match=rf"gallery_sample must be an integer >= 1, got {sample!r}"):
        DBNormClient(c).build_banks("c", banks=BankSet(small["QB"]), gallery_sample=sample)


@pytest.mark.parametrize("distance", ["Cosine", "Euclid"])
def test_stat_fields_come_from_the_spec_table(small, distance):
    """Core.stat_fields (read from core.spec) equals the fields of statistics actually computed."""
    c = QdrantClient(":memory:")
    make_collection(c, "c", small["G"][:50], distance=distance)
    db = DBNormClient(c, banks=BankSet(small["QB"], small["GB"]))
    info = drive(db.core.info_logic("c", None), c)
    for method, center in itertools.product(METHODS, (False, True)):
        if center and distance == "Euclid":
            continue  # refused on Euclid
        db.configure("c", params={"method": method, "center": center})
        nz = db.core.normalizer("c", info)
        st = nz.gallery_stats(small["G"][:3], activation=False)
        assert db.core.stat_fields(nz) == tuple(f for f in st.present() if f not in ("act_q", "act_g"))


def test_an_index_vector_does_not_hide_the_one_dense_vector_of_a_hybrid_collection():
    """using=None means the collection's one dense vector; the layer's own ``_dbnorm_*`` index
    vectors (written by precompute(index=True) or a rebuild) are not a second user vector."""
    from dbnorm_qdrant.qdrant import vector_info

    c = QdrantClient(":memory:")
    c.create_collection("h", vectors_config={"text": models.VectorParams(size=4, distance=models.Distance.COSINE),
                                             "_dbnorm_0123456789ab": models.VectorParams(size=5, distance=models.Distance.DOT)},
                        sparse_vectors_config={"bm25": models.SparseVectorParams()})
    info = vector_info(c.get_collection("h"), "h")
    assert info.using == "text" and info.size == 4
    c.create_collection("two", vectors_config={"a": models.VectorParams(size=4, distance=models.Distance.COSINE),
                                               "b": models.VectorParams(size=4, distance=models.Distance.COSINE)})
    with pytest.raises(InputError, match="pass using="):  # two user vectors: the choice is the user's
        vector_info(c.get_collection("two"), "two")
