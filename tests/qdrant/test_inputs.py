"""Bad input to the Qdrant layer: each refused with an InputError that names the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.qdrant import BankSet, CollectionConfig, DBNormClient, vector_info

from qdrant_helpers import make_collection


@pytest.fixture
def db(small):
    c = QdrantClient(":memory:")
    make_collection(c, "c", small["G"])
    return DBNormClient(c, banks=BankSet(small["QB"], small["GB"]), params={"method": "dualis"})


def test_limit_zero_is_refused_like_qdrant(db, small):
    with pytest.raises(InputError, match=r"limit must be a positive integer .*got 0"):
        db.query_points("c", query=small["Q"][0], limit=0)
    with pytest.raises(InputError, match="limit must be a positive integer"):
        db.query_batch_points("c", [models.QueryRequest(query=small["Q"][0].tolist(), limit=0)])
    assert len(db.query_points("c", query=small["Q"][0], limit=1).points) == 1


@pytest.mark.parametrize("form", ["list", "array"])
def test_bad_query_vectors_are_refused_naming_the_row(db, small, form):
    good = small["Q"][0].astype(np.float64)
    cases = [
        (np.zeros(16), "zero vector"),
        (np.where(np.arange(16) == 3, np.nan, good), "NaN or infinite"),
        (np.where(np.arange(16) == 5, np.inf, good), "NaN or infinite"),
        (good[:8], r"dimension 8 but 16 is expected"),
    ]
    for v, what in cases:
        q = v.tolist() if form == "list" else v
        with pytest.raises(InputError, match=f"query .*{what}"):
            db.query_points("c", query=q, limit=3)
    # in a batch, the request is named
    reqs = [models.QueryRequest(query=good.tolist(), limit=3), models.QueryRequest(query=[0.0] * 16, limit=3)]
    with pytest.raises(InputError, match=r"requests\[1\]\.query row 0 is a zero vector"):
        db.query_batch_points("c", reqs)


def test_dis_k_larger_than_the_collection(small):
    c = QdrantClient(":memory:")
    make_collection(c, "c", small["G"][:50])
    for method in ("dis", "dualdis"):
        d = DBNormClient(c, banks=BankSet(small["QB"], small["GB"]), params={"method": method, "k": 51})
        with pytest.raises(InputError, match=r"k=51 but collection 'c' holds 50 points; k must be at most"):
            d.query_points("c", query=small["Q"][0], limit=3)
        with pytest.raises(InputError, match="k=51"):
            d.precompute("c", progress=False)
    ok = DBNormClient(c, banks=BankSet(small["QB"], small["GB"]), params={"method": "dis", "k": 50})
    assert len(ok.query_points("c", query=small["Q"][0], limit=3).points) == 3


def test_unknown_method_and_options_fail_at_construction(small):
    c = QdrantClient(":memory:")
    banks = BankSet(small["QB"], small["GB"])
    with pytest.raises(InputError, match="unknown method 'bogus'"):
        DBNormClient(c, banks=banks, params={"method": "bogus"})
    with pytest.raises(InputError, match="unknown method"):
        DBNormClient(c, banks=banks, collections={"x": CollectionConfig(params={"method": "bogus"})})
    with pytest.raises(InputError, match="unknown method"):
        DBNormClient(c, banks=banks).configure("x", params={"method": "bogus"})
    with pytest.raises(InputError, match=r"params: .*beta_x.*the fields are"):
        DBNormClient(c, banks=banks, params={"beta_x": 1.0})
    with pytest.raises(InputError, match=r"unknown option\(s\) \['candidate'\]; the options are"):
        DBNormClient(c, banks=banks, candidate=10)
    with pytest.raises(InputError, match="mode must be one of"):
        DBNormClient(c, banks=banks, mode="fast")
    with pytest.raises(InputError, match="candidates"):
        DBNormClient(c, banks=banks, candidates=0)
    with pytest.raises(InputError, match="payload_key"):
        DBNormClient(c, banks=banks, payload_key="a.b")


def _desc(vectors, sparse=None):
    return models.CollectionInfo.model_construct(config=models.CollectionConfig.model_construct(
        params=models.CollectionParams(vectors=vectors, sparse_vectors=sparse)))


def test_vector_info_names_the_bad_vector_and_the_valid_ones():
    vp = models.VectorParams(size=8, distance=models.Distance.COSINE)
    named = _desc({"text": vp, "image": models.VectorParams(size=4, distance=models.Distance.EUCLID)},
                  {"bm25": models.SparseVectorParams()})
    assert vector_info(named, "c", "image") == vector_info(named, "c", "image")
    info = vector_info(named, "c", "image")
    assert (info.using, info.distance, info.size, info.sign) == ("image", "Euclid", 4, -1.0)
    with pytest.raises(InputError, match=r"no dense vector 'wrong' \(not one of its vectors\); it has dense vectors "
                                         r"\['image', 'text'\] and sparse vectors \['bm25'\]: choose using= one of "
                                         r"the dense vectors"):
        vector_info(named, "c", "wrong")
    with pytest.raises(InputError, match=r"'bm25' \(a sparse vector, which cannot be reranked\)"):
        vector_info(named, "c", "bm25")
    with pytest.raises(InputError, match=r"has dense vectors \['image', 'text'\] and sparse vectors \['bm25'\]; for a "
                                         r"dense query pass using= one of the dense vectors"):
        vector_info(named, "c", None)
    hybrid = _desc({"dense": vp}, {"bm25": models.SparseVectorParams()})
    assert vector_info(hybrid, "c", None).using == "dense"  # the one dense vector is what a dense query means
    plain = _desc(vp)
    assert vector_info(plain, "c", None).using is None and vector_info(plain, "c", "").size == 8
    with pytest.raises(InputError, match="single unnamed dense vector, not 'text'"):
        vector_info(plain, "c", "text")
    manhattan = _desc(models.VectorParams(size=8, distance=models.Distance.MANHATTAN))
    with pytest.raises(InputError, match="Manhattan distance"):
        vector_info(manhattan, "c")
    assert vector_info(manhattan, "c", supported=False).distance == "Manhattan"
    multi = _desc(models.VectorParams(size=8, distance=models.Distance.DOT, multivector_config=models.MultiVectorConfig(
        comparator=models.MultiVectorComparator.MAX_SIM)))
    with pytest.raises(InputError, match="multivector"):
        vector_info(multi, "c")


def test_unknown_using_through_the_wrapper(small):
    c = QdrantClient(":memory:")
    make_collection(c, "n", small["G"], named=True)
    d = DBNormClient(c, banks=BankSet(small["QB"], small["GB"]))
    with pytest.raises(InputError, match=r"no dense vector 'txt'.*'other', 'text'"):
        d.query_points("n", query=small["Q"][0], using="txt")


def test_unexpected_keyword_lists_the_options(db, small):
    with pytest.raises(InputError, match=r"unexpected keyword argument\(s\) \['rerank_mode'\].*with_raw_score"):
        db.query_points("c", query=small["Q"][0], rerank_mode="x")
