"""The bank file: dbnorm_qdrant.banks.save_banks / load_banks (format version, round trip, refusals)."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant import InputError, Params
from dbnorm_qdrant.banks import BANK_FORMAT_VERSION, BankSet, load_banks, save_banks

rng = np.random.default_rng(0)
QB = rng.standard_normal((40, 8)).astype(np.float32)
GB = rng.standard_normal((30, 8)).astype(np.float32)
KEYS = np.arange(100, 130, dtype=np.int64)


def test_round_trip_with_params_meta_and_keys(tmp_path):
    path = tmp_path / "sub" / "banks.npz"
    params = Params("dualdis", beta_q=15, k=2)
    assert save_banks(path, BankSet.from_arrays(QB, GB, KEYS), params=params, meta={"paired": False, "who": "me"}) == path
    banks, p, meta = load_banks(path)
    assert np.array_equal(banks.query_bank, QB) and np.array_equal(banks.gallery_bank, GB)
    assert np.array_equal(banks.gallery_bank_keys, KEYS)
    assert p == params and meta == {"paired": False, "who": "me"}
    with np.load(path, allow_pickle=False) as z:
        assert int(z["format_version"]) == BANK_FORMAT_VERSION == 1
    assert sorted(x.name for x in path.parent.iterdir()) == ["banks.npz"]  # no temporary file left


def test_query_bank_keys_round_trip(tmp_path):
    path = tmp_path / "cold.npz"
    save_banks(path, BankSet(QB, query_bank_keys=np.arange(40)), params={"method": "csls", "k": 10})
    banks, p, _ = load_banks(path)
    assert np.array_equal(banks.query_bank_keys, np.arange(40)) and banks.gallery_bank is None
    assert p.method == "csls"


def test_query_bank_only_and_params_as_dict(tmp_path):
    path = tmp_path / "b.npz"
    save_banks(path, BankSet.from_arrays(QB), params={"method": "is", "beta_q": 10.0})
    f = load_banks(path)
    assert f.banks.gallery_bank is None and f.params == Params("is", beta_q=10.0) and f.meta == {}


def test_file_of_version_1_without_a_version_key_reads(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, query_bank=QB, meta=np.array('{"paired": true}'))
    f = load_banks(path)
    assert f.params is None and f.meta["paired"] is True and f.banks.query_bank.shape == QB.shape


def test_newer_version_is_refused_by_number(tmp_path):
    path = tmp_path / "new.npz"
    np.savez(path, query_bank=QB, format_version=np.array(BANK_FORMAT_VERSION + 1))
    with pytest.raises(InputError, match=f"format version {BANK_FORMAT_VERSION + 1}.*upgrade"):
        load_banks(path)


@pytest.mark.parametrize(("content", "match"), [
    (b"", "empty"),
    (b"hello, banks\n", "not an .npz archive"),
    (b"PK\x03\x04 broken", "corrupt or truncated"),
    (b"\x80\x04K\x01.", "pickled objects"),
])
def test_foreign_files_are_refused_naming_the_file(tmp_path, content, match):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match) as exc:
        load_banks(path)
    assert str(path) in str(exc.value) and "save_banks" in str(exc.value)


def test_invalid_banks_in_a_file_are_refused(tmp_path):
    path = tmp_path / "nan.npz"
    bad = QB.copy()
    bad[3, 0] = np.nan
    np.savez(path, query_bank=bad)
    with pytest.raises(InputError, match=str(path)):
        load_banks(path)


def test_save_refuses_what_is_not_a_bank_set(tmp_path):
    with pytest.raises(InputError, match="BankSet"):
        save_banks(tmp_path / "b.npz", QB)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
