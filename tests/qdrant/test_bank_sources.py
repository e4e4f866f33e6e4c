"""Banks from collections and files: logged queries, a sampled gallery, build_banks, scrolling."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models

from dbnorm_qdrant.errors import InputError as _IE
from dbnorm_qdrant.qdrant import BankSet, DBNormClient

from qdrant_helpers import make_collection


def test_query_bank_from_collection_and_from_npy(qclient, small, cname, tmp_path):
    make_collection(qclient, cname, small["QB"])
    d = DBNormClient(qclient, banks=BankSet(small["QB"]), params={"method": "is"})
    allv = d.query_bank_from_collection(cname)
    np.testing.assert_allclose(allv, small["QB"], atol=1e-6)  # unit rows: Cosine keeps them
    sub = d.query_bank_from_collection(cname, 50, seed=3)
    assert sub.shape == (50, 16)
    np.testing.assert_array_equal(sub, d.query_bank_from_collection(cname, 50, seed=3))
    qclient.delete_collection(cname)
    with pytest.raises(_IE, match="empty"):
        qclient.create_collection(cname, vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE))
        d.query_bank_from_collection(cname)
    qclient.delete_collection(cname)
    np.save(tmp_path / "qb.npy", small["QB"])
    np.save(tmp_path / "gb.npy", small["GB"])
    bs = BankSet.from_npy(tmp_path / "qb.npy", tmp_path / "gb.npy")
    np.testing.assert_array_equal(bs.query_bank, small["QB"])
    np.testing.assert_array_equal(bs.gallery_bank, small["GB"])
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(_IE, match="pickled"):
        BankSet.from_npy(tmp_path / "evil.npy")
    with pytest.raises(_IE, match="does not exist"):
        BankSet.from_npy(tmp_path / "missing.npy")


def test_build_banks_from_arrays_and_collections(small):
    from qdrant_client import QdrantClient

    c = QdrantClient(":memory:")
    make_collection(c, "g", small["G"])
    make_collection(c, "logged", small["QB"])
    d = DBNormClient(c)
    assert d.build_banks("g") is None  # nothing asked
    b = d.build_banks("g", query_bank=small["QB"], gallery_sample=100, seed=2)
    vecs, keys = d.sample_gallery_bank("g", 100, seed=2)
    np.testing.assert_array_equal(b.query_bank, small["QB"])
    np.testing.assert_array_equal(b.gallery_bank, vecs)
    np.testing.assert_array_equal(b.gallery_bank_keys, keys)
    from_log = d.build_banks("g", banks=BankSet(small["QB"][:10], small["GB"]), query_collection="logged")
    np.testing.assert_allclose(from_log.query_bank, small["QB"], atol=1e-6)
    np.testing.assert_array_equal(from_log.gallery_bank, small["GB"])  # kept
    nz = BankSet(small["QB"], small["GB"]).normalizer()
    np.testing.assert_array_equal(d.build_banks("g", normalizer=nz, gallery_sample=5).query_bank, nz.query_bank)
    with pytest.raises(_IE, match="gallery_sample needs a query bank"):
        d.build_banks("g", gallery_sample=10)


def test_scroll_pages_visits_every_point_once(small):
    from qdrant_client import QdrantClient

    from dbnorm_qdrant.qdrant._io import drive
    from dbnorm_qdrant.qdrant.sources import iter_pages, scroll_pages

    c = QdrantClient(":memory:")
    make_collection(c, "g", small["G"][:250])
    pages = list(iter_pages(c, "g", page_size=100, with_vectors=True))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [r.id for p in pages for r in p] == list(range(250)) and len(pages[0][0].vector) == 16
    flt = models.Filter(must=[models.FieldCondition(key="odd", match=models.MatchValue(value=1))])
    seen: list = []
    drive(scroll_pages("g", lambda recs: seen.extend(r.id for r in recs), page_size=64, scroll_filter=flt), c)
    assert seen == list(range(1, 250, 2))
    assert list(iter_pages(c, "g", scroll_filter=models.Filter(must=[models.HasIdCondition(has_id=[999])]))) == []
