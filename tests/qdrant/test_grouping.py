"""qdrant.groups: Qdrant's grouping over a ranked list equals ``query_points_groups``.

On qdrant-client local mode with the shipped sample and synthetic payloads (int and str keys,
arrays, nested keys, missing keys, bools, floats, mixed arrays), grouping the full ranking of
``query_points`` with :func:`group_points` gives the groups of ``query_points_groups``: the same
group ids in the same order, the same hits in the same order, the same scores.
"""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from dbnorm_qdrant.datasets import load_sample
from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.qdrant.groups import group_ids, group_points, groups_complete

KEYS = ("int_key", "str_key", "tags", "nested.k", "objs[].g", "flag", "mixed", "num", "sparse_key")
SHAPES = ((3, 1), (5, 3), (10, 2), (40, 4))  # (limit, group_size)


def _payload(i: int) -> dict:
    p = {
        "int_key": i % 7,
        "str_key": "abcd"[i % 4],
        "tags": [i % 5, (3 * i) % 5, f"t{i % 3}"],  # duplicates and mixed int / str: several groups
        "objs": [{"g": i % 3}, {"g": "s" if i % 2 else i % 3}],
        "flag": [True, 1, 0][i % 3],  # bool is no group id: a third of the points join no group
        "mixed": [i % 4, True] if i % 5 == 0 else [i % 4],  # one bad value drops the point
        "num": 1.5 if i % 6 == 0 else i % 6,  # a float is no group id
    }
    if i % 10:
        p["nested"] = {"k": i % 6}
    if i % 3 == 0:
        p["sparse_key"] = "x" if i % 9 == 0 else i % 2  # missing on two thirds of the points
    return p


@pytest.fixture(scope="module")
def sample():
    return load_sample()


#: points of the collection: the first N gallery items of the sample (local mode copies every
#: payload per grouped query, so a smaller collection keeps the test quick on shared cores)
N = 600


@pytest.fixture(scope="module")
def local(sample):
    """Local-mode Qdrant: the sample gallery with the synthetic payloads (the test of group_by)."""
    client = QdrantClient(":memory:")
    G = sample.gallery[:N]
    client.create_collection("g", vectors_config=models.VectorParams(size=G.shape[1], distance="Cosine"))
    points = [models.PointStruct(id=i, vector=g.tolist(), payload=_payload(i)) for i, g in enumerate(G)]
    client.upload_points("g", points, wait=True)
    yield client
    client.close()


def _summary(groups):
    return [(g.id, [h.id for h in g.hits], [h.score for h in g.hits]) for g in groups]


def _assert_same(mine, ref):
    assert [(g, ids) for g, ids, _ in _summary(mine)] == [(g, ids) for g, ids, _ in _summary(ref)]
    for (_, _, a), (_, _, b) in zip(_summary(mine), _summary(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("key", KEYS)
def test_group_points_equals_query_points_groups(local, sample, key):
    for qi in (42, 777):
        q = sample.queries[qi].tolist()
        ranked = local.query_points("g", query=q, limit=N, with_payload=True).points
        for limit, group_size in SHAPES:
            ref = local.query_points_groups("g", query=q, group_by=key, limit=limit, group_size=group_size)
            ref = ref.groups
            mine = group_points(ranked, key, limit, group_size)
            _assert_same(mine, ref)
            assert ref, key  # every key groups some points


def test_the_rules_are_exercised(local, sample):
    """Not vacuous: the payloads above do hit every rule the equality test claims to check."""
    ranked = local.query_points("g", query=sample.queries[0].tolist(), limit=N, with_payload=True).points
    tags = group_points(ranked, "tags", 100, N)
    assert {type(g.id) for g in tags} == {int, str}  # an array joins int and str groups
    assert sum(len(g.hits) for g in tags) > len(ranked)  # a point joins several groups
    flag = group_points(ranked, "flag", 100, N)
    assert sorted(g.id for g in flag) == [0, 1]  # True is no group id; 1 and 0 are
    assert sum(len(g.hits) for g in flag) == N * 2 // 3
    mixed = group_points(ranked, "mixed", 100, N)
    assert sum(len(g.hits) for g in mixed) == N * 4 // 5  # [x, True] drops the whole point
    nested = group_points(ranked, "nested.k", 100, N)
    assert sum(len(g.hits) for g in nested) == N * 9 // 10  # a missing key: no group
    assert group_points(ranked, "no_such_key", 10, 3) == []  # as Qdrant: no error, no group


def test_rank_order_decides_heads_and_group_order():
    """The ranking given, not the score, orders groups and hits (the normalised order)."""
    pts = [models.ScoredPoint(id=i, version=0, score=float(i), payload={"k": k})
           for i, k in enumerate(["b", "a", "b", "c", "a", "b", "a"])]
    groups = group_points(pts, "k", 2, 2)
    assert [(g.id, [h.id for h in g.hits]) for g in groups] == [("b", [0, 2]), ("a", [1, 4])]
    assert groups[0].hits[0] is pts[0]  # the given objects, not copies


def test_group_ids_rules():
    assert group_ids({"a": {"b": [1, "1", 1, 2]}}, "a.b") == [1, "1", 2]  # dedup, payload order, 1 != "1"
    assert group_ids({"a": [{"b": 3}, {"b": 4}]}, "a[].b") == [3, 4]
    assert group_ids({"a": True}, "a") is None and group_ids({"a": [1, None]}, "a") is None
    assert group_ids({"a": {"b": 1}}, "a") is None and group_ids(None, "a") is None
    assert group_ids({"a.b": 5}, '"a.b"') == [5]


def test_groups_complete_tells_when_the_window_suffices(local, sample):
    """Widening a prefix until groups_complete gives the groups of the whole ranking."""
    ranked = local.query_points("g", query=sample.queries[5].tolist(), limit=N, with_payload=True).points
    cases = [("int_key", 5, 3), ("str_key", 4, 10), ("tags", 8, 4), ("nested.k", 3, 20)]
    for key, limit, group_size in cases:
        full = group_points(ranked, key, limit, group_size)
        assert groups_complete(full, limit, group_size)
        window, windows = 8, []
        while True:
            groups = group_points(ranked[:window], key, limit, group_size)
            windows.append(window)
            if groups_complete(groups, limit, group_size) or window >= len(ranked):
                break
            window *= 2
        _assert_same(groups, full)
        assert len(windows) > 1  # the first window was too short: the check did its job
        short = group_points(ranked[: windows[-2]], key, limit, group_size)
        assert not groups_complete(short, limit, group_size)
    # more groups or hits asked than exist: never complete, the caller stops at the whole ranking
    assert not groups_complete(group_points(ranked, "str_key", 5, 1), 5, 1)  # 4 groups only
    assert not groups_complete(group_points(ranked, "int_key", 2, N), 2, N)
    assert not groups_complete([], 1, 1)


@pytest.mark.parametrize(
    "args, match",
    [
        (("", 3, 1), r"group_by must be a non-empty payload key.*group_by='document_id'"),
        ((None, 3, 1), r"group_by must be a non-empty payload key"),
        ((7, 3, 1), r"group_by must be a non-empty payload key"),
        (("a..b", 3, 1), r"group_by='a\.\.b' is not a valid payload path.*'a\[\]'"),
        (("k", 0, 1), r"limit must be an integer >= 1.*number of groups"),
        (("k", True, 1), r"limit must be an integer >= 1"),
        (("k", 3, 0), r"group_size must be an integer >= 1.*hits per group"),
        (("k", 3, 2.0), r"group_size must be an integer >= 1"),
    ],
)
def test_bad_input_names_the_fix(args, match):
    pts = [models.ScoredPoint(id=1, version=0, score=1.0, payload={"k": 1})]
    with pytest.raises(InputError, match=match):
        group_points(pts, *args)


def test_groups_complete_checks_its_numbers():
    with pytest.raises(InputError, match="limit must be an integer >= 1"):
        groups_complete([], 0, 1)
    with pytest.raises(InputError, match="group_size must be an integer >= 1"):
        groups_complete([], 1, -2)
