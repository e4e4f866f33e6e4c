"""The statistics cache: rows by key, the dense index, CLOCK eviction, and the compiled rerank."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant.qdrant.cache import BIAS, FIELDS, StatsCache

FP = "f" * 64


def _rows(keys, rng) -> np.ndarray:
    r = rng.normal(size=(len(keys), len(FIELDS)))
    r[:, 0] = keys  # column 0 remembers the key, so a wrong row is noticed
    return r


def _check_index(c: StatsCache) -> None:
    """The dict, the dense index and the row owners agree."""
    n = 0
    for t in c._tables.values():
        n += len(t.rows)
        for k, r in t.rows.items():
            assert c._owner[r] == (t, k)
            if k < len(t.dense):
                assert t.dense[k] == r
        live = np.flatnonzero(t.dense >= 0)
        assert set(live.tolist()) == {k for k in t.rows if 0 <= k < len(t.dense)}
        assert t.rows  # no empty table
    assert n == len(c) <= c.maxsize


def test_rows_by_dense_and_sparse_keys():
    rng = np.random.default_rng(0)
    c = StatsCache(1000)
    small = list(range(0, 300, 3))
    big = [c.dense_bound + 5, 2**40 + 1, 2**62 + 7]  # beyond the dense index: the dict
    keys = small + big
    rows = _rows(keys, rng)
    c.put_rows("a", keys, rows, FP)
    _check_index(c)
    q = [big[1], 3, 4, small[-1], big[2], 2**63 - 1]  # 4 and 2**63-1 are not cached
    got, missing = c.get_rows("a", q, FP)
    assert missing == [2, 5]
    assert got[0, 0] == big[1] and got[1, 0] == 3 and got[3, 0] == small[-1] and got[4, 0] == big[2]
    assert np.isnan(got[2]).all() and np.isnan(got[5]).all()
    # other fingerprints and collections see nothing
    assert c.get_rows("a", q, "g" * 64) == (None, list(range(6)))
    assert c.get_rows("b", q, FP) == (None, list(range(6)))
    # a refresh replaces the row in place
    c.put_rows("a", [3], np.full((1, len(FIELDS)), 7.0), FP)
    assert c.get_rows("a", [3], FP)[0][0, 1] == 7.0 and len(c) == len(keys)


def test_clock_gives_a_used_row_a_second_chance():
    c = StatsCache(4)
    z = np.zeros((1, len(FIELDS)))
    for k in range(4):
        c.put_rows("a", [k], z + k, FP)
    c.get_rows("a", [0], FP)  # key 0 is used again
    c.put_rows("a", [10], z + 10, FP)  # full: evicts the first row not used since (key 1)
    _, missing = c.get_rows("a", [0, 1, 2, 3, 10], FP)
    assert missing == [1]
    _check_index(c)


def test_random_operations_against_a_dict_model():
    rng = np.random.default_rng(1)
    c = StatsCache(64)
    model: dict[tuple[str, int], float] = {}
    universe = list(range(200)) + [c.dense_bound + i for i in range(40)]
    for step in range(400):
        coll = "ab"[step % 2]
        if rng.random() < 0.5:
            keys = [int(k) for k in rng.choice(universe, size=rng.integers(1, 30), replace=False)]
            vals = rng.normal(size=len(keys))
            rows = np.zeros((len(keys), len(FIELDS)))
            rows[:, 1] = vals
            c.put_rows(coll, keys, rows, FP)
            model.update({(coll, k): v for k, v in zip(keys, vals)})
            assert all(j not in c.get_rows(coll, keys, FP)[1] for j in range(len(keys)))  # just put: cached
        else:
            keys = [int(k) for k in rng.choice(universe, size=20, replace=False)]
            got, missing = c.get_rows(coll, keys, FP)
            for j, k in enumerate(keys):
                if j not in missing:  # whatever is returned is the latest value put
                    assert got[j, 1] == model[(coll, k)]
        if step % 50 == 0:
            c.clear("b")
            model = {k: v for k, v in model.items() if k[0] != "b"}
        _check_index(c)


def _reference(keys, raw, sign, bias_of, offset, limit):
    norm = np.array([sign * r - bias_of[k] for k, r in zip(keys, raw)])
    order = np.argsort(-norm, kind="stable")[offset : offset + limit]
    return order.tolist(), norm[order].tolist()


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("offset,limit", [(0, 10), (3, 7), (0, 100), (20, 90), (95, 10), (0, 1), (0, 0)])
@pytest.mark.parametrize("big", [False, True])
def test_additive_topk_is_a_stable_sort(sign, offset, limit, big):
    """The compiled rerank equals a stable argsort, for keys in the dense index and for
    keys beyond it (found through the dict)."""
    rng = np.random.default_rng(2)
    c = StatsCache(5000)
    keys = [int(k) + (2**62 if big else 0) for k in rng.choice(3000, size=600, replace=False)]
    rows = np.zeros((600, len(FIELDS)))
    rows[:, BIAS] = np.round(rng.normal(size=600), 1)  # coarse values: many ties
    c.put_rows("a", keys, rows, FP)
    bias_of = dict(zip(keys, rows[:, BIAS]))
    for _ in range(5):
        cand = [int(k) for k in rng.choice(keys, size=100, replace=False)]
        raw = np.round(rng.normal(size=100), 1)
        got = c.additive_topk("a", cand, raw.tolist(), FP, sign, offset, limit)
        assert got is not None
        assert got == _reference(cand, raw, sign, bias_of, offset, limit)


def test_additive_topk_declines_what_it_cannot_score():
    c = StatsCache(100)
    rows = np.zeros((3, len(FIELDS)))
    rows[:, BIAS] = [0.1, 0.2, np.nan]  # key 2: no bias filled
    c.put_rows("a", [0, 1, 2], rows, FP)
    big = c.dense_bound + 1
    c.put_rows("a", [big], rows[:1], FP)  # cached, beyond the dense index
    assert c.additive_topk("a", [0, 1], [0.5, 0.5], FP, 1.0, 0, 10) == ([0, 1], [0.5 - 0.1, 0.5 - 0.2])
    assert c.additive_topk("a", [big, 1], [0.5, 0.5], FP, 1.0, 0, 10) == ([0, 1], [0.5 - 0.1, 0.5 - 0.2])
    for cand in ([0, 5], [0, 2], [0, big + 1], [0, -1], [0, "x"]):  # not cached / NaN bias / odd keys
        assert c.additive_topk("a", cand, [0.5, 0.5], FP, 1.0, 0, 10) is None
    assert c.additive_topk("a", [0, 1], [1.0, float("nan")], FP, 1.0, 0, 10) is None  # a NaN score
    assert c.additive_topk("other", [0], [0.5], FP, 1.0, 0, 10) is None


def test_dense_index_stays_small_and_tables_go_when_emptied():
    c = StatsCache(1_000_000)
    z = np.zeros((1, len(FIELDS)))
    for i in range(5):  # one large id under five fingerprints: no large dense arrays
        c.put_rows("a", [3_999_999], z, f"fp{i}")
    assert all(t.dense.nbytes <= 4096 for t in c._tables.values())
    keys = list(range(0, 30_000, 2))  # a table that grows: its index follows, re-indexing old keys
    c.put_rows("b", keys[:10], np.zeros((10, len(FIELDS))), FP)
    c.put_rows("b", keys[10:], np.zeros((len(keys) - 10, len(FIELDS))), FP)
    t = c._tables[("b", FP)]
    assert keys[-1] < len(t.dense) <= 4 * len(keys) and all(t.dense[k] == t.rows[k] for k in keys)
    _check_index(c)
    small = StatsCache(2)
    for i in range(5):  # every put evicts the previous fingerprint's only row
        small.put_rows("a", [i], z, f"fp{i}")
    assert len(small._tables) <= 2
    _check_index(small)


def test_negative_keys_and_bad_keys_leave_the_cache_consistent():
    c = StatsCache(2)
    z = np.zeros((1, len(FIELDS)))
    c.put_rows("a", [-1], z, FP)
    c.put_rows("a", [1023], z + 1, FP)
    c.get_rows("a", [1023], FP)
    c.put_rows("a", [5], z, FP)  # evicts -1, must not touch 1023's index entry
    assert c.get_rows("a", [1023], FP)[1] == []
    _check_index(c)
    with pytest.raises(TypeError):
        c.put_rows("a", ["not a key"], z, FP)
    _check_index(c)
