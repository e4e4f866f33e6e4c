"""One dict -> Params conversion (InputError on a bad field), and stored zero rows accepted (with
finite statistics) only where the caller says so."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dbnorm_qdrant.banks import BankSet, load_banks, save_banks
from dbnorm_qdrant.core.normalizer import BankNormalizer
from dbnorm_qdrant.core.params import Params, as_params
from dbnorm_qdrant.core.spec import METHODS
from dbnorm_qdrant.errors import InputError

rng = np.random.default_rng(5)
QB = rng.normal(size=(60, 8)).astype(np.float32)
GB = rng.normal(size=(50, 8)).astype(np.float32)


def test_as_params_is_the_one_conversion():
    assert as_params(None) == Params() and Params.coerce({"method": "is"}) == Params(method="is")
    p = Params(method="csls", k=3)
    assert as_params(p) is p
    with pytest.raises(InputError, match=r"params: unknown field\(s\) \['methd'\]; the fields are method, beta_q"):
        as_params({"methd": "is"})
    with pytest.raises(InputError, match="params must be a Params or a dict of its fields, got str"):
        as_params("is")
    with pytest.raises(InputError, match="unknown method 'bogus'"):
        as_params({"method": "bogus"})


def test_bank_api_refuses_bad_params_with_input_error(tmp_path):
    banks = BankSet(QB, GB)
    with pytest.raises(InputError, match=r"save_banks params: unknown field\(s\) \['methd'\]"):
        save_banks(tmp_path / "b.npz", banks, params={"methd": "is"})
    assert not (tmp_path / "b.npz").exists()
    with pytest.raises(InputError, match=r"BankSet.normalizer keywords: unknown field\(s\) \['foo'\]"):
        banks.normalizer(foo=1)
    with pytest.raises(InputError, match="not both"):
        banks.normalizer(Params(), method="is")
    assert banks.normalizer({"method": "is"}).params == banks.normalizer(method="is").params == Params(method="is")
    save_banks(tmp_path / "b.npz", banks, params={"method": "csls", "k": 4})
    assert load_banks(tmp_path / "b.npz").params == Params(method="csls", k=4)
    assert BankNormalizer(QB, GB, params={"method": "is"}).params == Params(method="is")


@pytest.mark.parametrize("method, center", list(itertools.product(METHODS, (False, True))))
def test_stored_zero_rows_get_finite_statistics_when_allowed(method, center):
    G = rng.normal(size=(30, 8)).astype(np.float32)
    G[7] = 0.0
    nz = BankNormalizer(QB, GB, params=Params(method=method, center=center, k=2 if method in ("csls", "nnn") else None))
    with pytest.raises(InputError, match="gallery row 7 is a zero vector"):
        nz.gallery_stats(G)
    st = nz.gallery_stats(G, nonzero=False)
    for f in st.present():
        assert np.isfinite(np.asarray(getattr(st, f), dtype=np.float64)).all(), f
    # the other rows' statistics do not depend on the zero row
    ref = nz.gallery_stats(np.delete(G, 7, axis=0), activation=False)
    part = nz.gallery_stats(G, nonzero=False, activation=False)
    for f in ref.present():
        np.testing.assert_allclose(np.delete(getattr(part, f), 7), getattr(ref, f), rtol=1e-5, atol=1e-6)
    a_q, a_g = nz.activation(G, nonzero=False)
    assert a_q.shape == a_g.shape == (30,)
    with pytest.raises(InputError, match="gallery row 7 is a zero vector"):
        nz.activation(G)
