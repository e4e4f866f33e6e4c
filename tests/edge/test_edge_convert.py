"""The edge driver's translation helpers: the query vector read back from an edge
``QueryRequest`` (bit-exact), formula expressions, engine errors."""

from __future__ import annotations

import numpy as np
import pytest

qe = pytest.importorskip("qdrant_edge")

from qdrant_client import models  # noqa: E402

from dbnorm_qdrant.edge import _convert as cv  # noqa: E402
from dbnorm_qdrant.edge.client import engine_errors  # noqa: E402
from dbnorm_qdrant.errors import InputError  # noqa: E402


def _read_back(x: np.ndarray, using: str | None = "v"):
    """The vector and name as DBNormEdgeShard reads them from a request holding ``x``."""
    req = qe.QueryRequest(limit=1, query=qe.Query.Nearest(x.tolist(), using=using))
    return cv.nearest_of(req.query)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-30, 1e-40, 1e20, 1e30])
def test_vector_read_back_is_bit_exact(scale):
    rng = np.random.default_rng(7)
    x = (rng.normal(size=384) * scale).astype(np.float32)
    got = _read_back(x)
    assert got is not None
    assert _same_bits(got[0], x) and got[0].dtype == np.float32
    assert got[1] == "v"


def test_vector_read_back_any_bit_pattern_and_specials():
    rng = np.random.default_rng(3)
    for _ in range(200):  # every float32 bit pattern class: subnormals, huge, NaN, inf, -0
        x = rng.integers(0, 2**32, size=64, dtype=np.uint64).astype(np.uint32).view(np.float32)
        assert _same_bits(_read_back(x)[0], x)
    x = np.array([0.0, -0.0, 1e-45, 3.4028235e38, np.inf, -np.inf, np.nan, 16777217.0, 0.1, 123456789.0],
                 dtype=np.float32)
    assert _same_bits(_read_back(x)[0], x)
    # the tiny constant dimensions of real embeddings (written out in full by the engine)
    x = np.array([-3.8692194e-33, 1.6433389e-33, 0.25], dtype=np.float32)
    assert _same_bits(_read_back(x)[0], x)


def test_vector_read_back_names_and_other_forms():
    x = np.ones(3, dtype=np.float32)
    assert _read_back(x, None)[1] is None
    odd = 'we"ird], using=x'
    assert _read_back(x, odd)[1] == odd
    assert cv.nearest_of(qe.QueryRequest(limit=1, query=qe.Query.Nearest([[1.0, 2.0]], using="v")).query) is None
    sparse = qe.QueryRequest(limit=1, query=qe.Query.Nearest(qe.SparseVector([1], [2.0]), using="v")).query
    assert cv.nearest_of(sparse) is None


def test_parse_floats_matches_numpy_and_refuses_empty_fields():
    body = "0.5, -1.25, 3, 0.000000000000000000000000000000001, NaN, -inf"
    want = np.array(body.split(","), dtype=np.float32)
    assert _same_bits(cv.parse_floats(body), want)
    assert cv.parse_floats("").shape == (0,)
    with pytest.raises(ValueError):
        cv.parse_floats("1, 2,")


def test_formula_expressions_translate_and_refuse():
    f = models.FormulaQuery(formula=models.SumExpression(sum=[
        models.MultExpression(mult=[2.0, "$score"]), 1,
        models.MultExpression(mult=[-1.0, models.FieldCondition(key="k", match=models.MatchValue(value="a"))]),
        models.DivExpression(div=models.DivParams(left="x.y", right=2.0, by_zero_default=0.0)),
        np.float64(0.5)]), defaults={"x.y": 1})
    assert type(cv.to_formula(f)).__name__ == "Formula"
    with pytest.raises(InputError, match="boolean"):
        cv.to_expression(True)
    with pytest.raises(InputError, match="not supported"):
        cv.to_expression(models.GeoDistance(geo_distance=models.GeoDistanceParams(
            origin=models.GeoPoint(lat=0.0, lon=0.0), to="loc")))


def test_engine_errors_become_input_errors_with_a_fix():
    with pytest.raises(InputError, match="refused a query: Vector dimension error.*size the shard") as e:
        with engine_errors("a query"):
            raise Exception("Vector dimension error: expected dim: 64, got 10")
    assert isinstance(e.value.__cause__, Exception)
    with pytest.raises(InputError, match="^mine$"):
        with engine_errors("a query"):
            raise InputError("mine")
    with pytest.raises(KeyboardInterrupt):
        with engine_errors("a query"):
            raise KeyboardInterrupt
