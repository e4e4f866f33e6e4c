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
        assert set(live.tolist()) == {k for k in t.rows if k < len(t.dense)}
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
@pytest.mark.parametrize("offset,limit", [(0, 10), (3, 7), (0, 100), (20, 90), (95, 10), (0, 1)])
def test_additive_topk_is_a_stable_sort(sign, offset, limit):
    rng = np.random.default_rng(2)
    c = StatsCache(5000)
    keys = [int(k) for k in rng.choice(3000, size=600, replace=False)]
    rows = np.zeros((600, len(FIELDS)))
    rows[:, BIAS] = np.round(rng.normal(size=600), 1)  # coarse values: many ties
    c.put_rows("a", keys, rows, FP)
    bias_of = dict(zip(keys, rows[:, BIAS]))
    for _ in range(5):
        cand = [int(k) for k in rng.choice(keys, size=100, replace=False)]
        raw = np.round(rng.normal(size=100), 1)
        got = c.additive_topk("a", np.array(cand + raw.tolist()), FP, sign, offset, limit)
        assert got is not None
        pos, scores = got
        ref_pos, ref_scores = _reference(cand, raw, sign, bias_of, offset, limit)
        assert pos == ref_pos and scores == ref_scores


def test_additive_topk_declines_what_it_cannot_score():
    c = StatsCache(100)
    rows = np.zeros((3, len(FIELDS)))
    rows[:, BIAS] = [0.1, 0.2, np.nan]  # key 2: no bias filled
    c.put_rows("a", [0, 1, 2], rows, FP)
    c.put_rows("a", [c.dense_bound + 1], rows[:1], FP)  # cached, but not in the dense index
    ok = c.additive_topk("a", np.array([0.0, 1.0, 0.5, 0.5]), FP, 1.0, 0, 10)
    assert ok == ([0, 1], [0.5 - 0.1, 0.5 - 0.2])
    for cand in ([0, 5], [0, 2], [0, c.dense_bound + 1], [0, -1]):  # not cached / NaN bias / outside
        assert c.additive_topk("a", np.array(cand + [0.5, 0.5], dtype=float), FP, 1.0, 0, 10) is None
    assert c.additive_topk("a", np.array([0.0, 1.0, np.nan, 0.5]), FP, 1.0, 0, 10) is None  # NaN score
    assert c.additive_topk("other", np.array([0.0, 0.5]), FP, 1.0, 0, 10) is None
