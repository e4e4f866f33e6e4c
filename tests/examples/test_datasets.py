"""dbnorm_qdrant.datasets: the shipped sample loads with the right shapes, texts and provenance."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant import datasets
from dbnorm_qdrant.datasets import Sample, load_sample
from support import PACKAGE_DATA


@pytest.fixture(scope="module")
def s() -> Sample:
    return load_sample()


def test_shapes_dtypes_and_meta(s):
    n, m, d = s.meta["n_test"], s.meta["n_bank"], s.meta["dim"]
    assert (n, m, d) == (1500, 2500, 384)
    assert s.queries.shape == s.gallery.shape == (n, d)
    assert s.query_bank.shape == s.gallery_bank.shape == (m, d)
    for a in (s.queries, s.gallery, s.query_bank, s.gallery_bank):
        assert a.dtype == np.float32
        # unit rows, up to the float16 rounding of the shipped file
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=0, atol=2e-3)
    assert s.dim == d
    assert np.array_equal(s.ground_truth, np.arange(n))
    assert "1500 queries" in repr(s)


def test_arrays_are_the_shipped_ones(s):
    with np.load(PACKAGE_DATA / "demo_wordnet.npz", allow_pickle=False) as z:
        for attr, key in (("queries", "Q_test"), ("gallery", "G_test"), ("query_bank", "Q_bank"),
                          ("gallery_bank", "G_bank")):
            assert np.array_equal(getattr(s, attr), z[key].astype(np.float32))


def test_texts_line_up_with_rows(s):
    assert len(s.query_texts) == len(s.queries) and len(s.gallery_texts) == len(s.gallery)
    assert all(isinstance(t, str) and t for t in s.query_texts + s.gallery_texts)
    assert s.gallery_texts[0] == "guitarfish"
    assert "guitar-shaped" in s.query_texts[0]


def test_ground_truth_is_meaningful(s):
    # query i's answer is item i: raw cosine R@1 is far above chance (1/1500) on this sample
    top1 = np.argmax(s.queries @ s.gallery.T, axis=1)
    assert np.mean(top1 == s.ground_truth) > 0.4


def test_each_call_returns_fresh_arrays(s):
    a = load_sample()
    a.queries[0] = 0.0
    assert np.array_equal(load_sample().queries[0], s.queries[0])
    with pytest.raises(AttributeError):
        a.queries = a.gallery  # frozen


def test_missing_files_say_how_to_fix(monkeypatch):
    monkeypatch.setattr(datasets, "SAMPLE_NAME", "no_such_sample")
    with pytest.raises(FileNotFoundError, match="reinstall"):
        load_sample()
