"""Translation between qdrant-client models and Qdrant Edge (``qdrant_edge``) objects.

Forward (qdrant-client -> edge): filters and their conditions, payload and vector
selectors, search parameters, queries (dense / sparse / multi-dense vectors,
``NearestQuery``, ``FormulaQuery`` expressions), points. Backward (edge -> qdrant-client):
results (``ScoredPoint``, ``Record``, built with ``model_construct``: the values are the
engine's, already valid), and the parts of an edge ``QueryRequest`` the reranking layer
reads (filter, search parameters, the dense query vector). An object that is already an
edge object passes through the forward direction unchanged. Anything without a
translation raises :class:`~dbnorm_qdrant.InputError` naming it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import numpy as np
import qdrant_edge as qe
from pydantic import BaseModel
from qdrant_client import models

from ..errors import InputError

__all__ = ["to_filter", "to_payload_selector", "to_search_params", "to_query", "to_expression", "to_formula",
           "to_point", "to_vector", "scored_point", "record", "point_id", "from_filter", "from_search_params",
           "nearest_of", "DISTANCE"]

#: qdrant-client distance name -> edge Distance
DISTANCE = {"Cosine": qe.Distance.Cosine, "Euclid": qe.Distance.Euclid, "Dot": qe.Distance.Dot,
            "Manhattan": qe.Distance.Manhattan}


def _unsupported(what: str) -> InputError:
    return InputError(f"{what} is not supported by the Qdrant Edge driver (dbnorm_qdrant.edge); run it on a "
                      "Qdrant server or in local mode (qdrant_client.QdrantClient), or see docs/edge.md.")


def _is_model(x: Any) -> bool:
    """A qdrant-client (pydantic) model, as opposed to an engine object passed through."""
    return isinstance(x, BaseModel)


# ------------------------------------------------------------------ ids, points
def point_id(pid: Any) -> Any:
    """An engine point id as qdrant-client gives it: ints as they are, UUIDs as strings."""
    return str(pid) if isinstance(pid, uuid.UUID) else pid


def to_vector(v: Any) -> Any:
    """A point's vector(s) for the engine (numpy arrays to lists, sparse vectors converted)."""
    if isinstance(v, dict):
        return {k: to_vector(x) for k, x in v.items()}
    if isinstance(v, models.SparseVector):
        return qe.SparseVector(list(v.indices), [float(x) for x in v.values])
    if isinstance(v, np.ndarray):
        return v.astype(np.float32, copy=False).tolist()
    return v


def to_point(p: models.PointStruct) -> Any:
    """A qdrant-client ``PointStruct`` as an edge ``Point``."""
    return qe.Point(p.id, to_vector(p.vector), p.payload)


# ------------------------------------------------------------------ filters
def _match(m: Any) -> Any:
    if isinstance(m, models.MatchValue):
        return qe.MatchValue(m.value)
    if isinstance(m, models.MatchAny):
        return qe.MatchAny(list(m.any))
    if isinstance(m, models.MatchExcept):
        return qe.MatchExcept(list(m.except_))
    if isinstance(m, models.MatchText):
        return qe.MatchText(m.text)
    if hasattr(models, "MatchPhrase") and isinstance(m, models.MatchPhrase):
        return qe.MatchPhrase(m.phrase)
    if hasattr(models, "MatchTextAny") and isinstance(m, models.MatchTextAny):
        return qe.MatchTextAny(m.text_any)
    raise _unsupported(f"the match condition {type(m).__name__}")


def _condition(c: Any) -> Any:
    if not _is_model(c):
        return c  # already an edge condition
    if isinstance(c, models.Filter):
        return to_filter(c)
    if isinstance(c, models.FieldCondition):
        if c.geo_bounding_box is not None or c.geo_radius is not None or c.geo_polygon is not None:
            raise _unsupported("a geo condition")
        rng = None
        if c.range is not None:
            if not isinstance(c.range, models.Range):
                raise _unsupported(f"the range {type(c.range).__name__}")
            rng = qe.RangeFloat(gte=c.range.gte, gt=c.range.gt, lte=c.range.lte, lt=c.range.lt)
        vc = None
        if c.values_count is not None:
            v = c.values_count
            vc = qe.ValuesCount(gte=v.gte, gt=v.gt, lte=v.lte, lt=v.lt)
        return qe.FieldCondition(key=c.key, match=None if c.match is None else _match(c.match), range=rng,
                                 values_count=vc, is_empty=c.is_empty, is_null=c.is_null)
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition({i for i in c.has_id})
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, models.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(c.nested.key, to_filter(c.nested.filter))
    raise _unsupported(f"the filter condition {type(c).__name__}")


def _conditions(cs: Any) -> list[Any] | None:
    if cs is None:
        return None
    return [_condition(c) for c in (cs if isinstance(cs, list) else [cs])]


def to_filter(f: Any) -> Any:
    """A qdrant-client ``Filter`` as an edge ``Filter`` (``None`` and edge filters as they are)."""
    if f is None or not _is_model(f):
        return f
    ms = None
    if f.min_should is not None:
        ms = qe.MinShould(_conditions(f.min_should.conditions), f.min_should.min_count)
    return qe.Filter(must=_conditions(f.must), should=_conditions(f.should), must_not=_conditions(f.must_not),
                     min_should=ms)


def _from_condition(c: Any) -> Any:
    name = type(c).__name__
    if name == "Filter":
        return from_filter(c)
    if name == "FieldCondition":
        m = c.match
        match = None
        if m is not None:
            mn = type(m).__name__
            if mn == "MatchValue":
                match = models.MatchValue(value=m.value)
            elif mn == "MatchAny":
                match = models.MatchAny(any=list(m.value))
            elif mn == "MatchExcept":
                match = models.MatchExcept(**{"except": list(m.value)})
            elif mn == "MatchText":
                match = models.MatchText(text=m.text)
            else:
                raise _unsupported(f"reading back the match condition {mn}")
        r = c.range
        rng = None if r is None else models.Range(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)
        if type(r).__name__ not in ("RangeFloat", "NoneType"):
            raise _unsupported(f"reading back the range {type(r).__name__}")
        v = c.values_count
        vc = None if v is None else models.ValuesCount(gte=v.gte, gt=v.gt, lte=v.lte, lt=v.lt)
        if c.geo_bounding_box is not None or c.geo_radius is not None or c.geo_polygon is not None:
            raise _unsupported("a geo condition")
        return models.FieldCondition(key=c.key, match=match, range=rng, values_count=vc, is_empty=c.is_empty,
                                     is_null=c.is_null)
    if name == "HasIdCondition":
        return models.HasIdCondition(has_id=[point_id(i) for i in c.point_ids])
    if name == "IsEmptyCondition":
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=c.key))
    if name == "IsNullCondition":
        return models.IsNullCondition(is_null=models.PayloadField(key=c.key))
    if name == "HasVectorCondition":
        return models.HasVectorCondition(has_vector=c.vector)
    if name == "NestedCondition":
        return models.NestedCondition(nested=models.Nested(key=c.key, filter=from_filter(c.filter)))
    raise _unsupported(f"reading back the filter condition {name}")


def from_filter(f: Any) -> models.Filter | None:
    """An edge ``Filter`` as a qdrant-client ``Filter`` (what the reranking layer handles)."""
    if f is None:
        return None
    conv = lambda cs: None if cs is None else [_from_condition(c) for c in cs]  # noqa: E731
    ms = None
    if f.min_should is not None:
        ms = models.MinShould(conditions=conv(f.min_should.conditions), min_count=f.min_should.min_count)
    return models.Filter(must=conv(f.must), should=conv(f.should), must_not=conv(f.must_not), min_should=ms)


# ------------------------------------------------------------------ selectors, params
def to_payload_selector(s: Any) -> Any:
    """``with_payload`` for the engine: bool, list of keys, or an Include/Exclude selector."""
    if s is None:
        return False
    if isinstance(s, models.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(s.include))
    if isinstance(s, models.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(s.exclude))
    if isinstance(s, (list, tuple)):
        return list(s)
    return s


def to_vector_selector(s: Any) -> Any:
    """``with_vectors`` for the engine: bool or a list of vector names."""
    if s is None:
        return False
    return list(s) if isinstance(s, (list, tuple)) else s


def to_search_params(p: Any) -> Any:
    """qdrant-client ``SearchParams`` as edge ``SearchParams`` (hnsw_ef, exact, indexed_only)."""
    if p is None or not _is_model(p):
        return p
    if p.quantization is not None or getattr(p, "acorn", None) is not None:
        raise _unsupported("SearchParams.quantization / acorn")
    return qe.SearchParams(hnsw_ef=p.hnsw_ef, exact=bool(p.exact), indexed_only=bool(p.indexed_only))


def from_search_params(p: Any) -> models.SearchParams | None:
    """Edge ``SearchParams`` as qdrant-client ``SearchParams``."""
    if p is None:
        return None
    if p.quantization is not None or p.acorn is not None:
        raise _unsupported("SearchParams.quantization / acorn")
    return models.SearchParams(hnsw_ef=p.hnsw_ef, exact=p.exact, indexed_only=p.indexed_only)


# ------------------------------------------------------------------ queries, formulas
_UNARY = (("NegExpression", "neg", "Neg"), ("AbsExpression", "abs", "Abs"), ("SqrtExpression", "sqrt", "Sqrt"),
          ("ExpExpression", "exp", "Exp"), ("LnExpression", "ln", "Ln"), ("Log10Expression", "log10", "Log10"),
          ("AcoshExpression", "acosh", "Acosh"))
_NARY = (("SumExpression", "sum", "Sum"), ("MultExpression", "mult", "Mult"), ("MaxExpression", "max", "Max"),
         ("MinExpression", "min", "Min"))
_CONDITIONS = (models.FieldCondition, models.Filter, models.HasIdCondition, models.IsEmptyCondition,
               models.IsNullCondition, models.HasVectorCondition, models.NestedCondition)


def to_expression(e: Any) -> Any:
    """A qdrant-client formula expression as an edge ``Expression`` (numbers become
    ``Constant``, strings ``Variable`` -- ``$score`` or a payload path --, conditions
    ``Condition``)."""
    E = qe.Expression
    if isinstance(e, bool):
        raise _unsupported("a boolean constant in a formula")
    if isinstance(e, (int, float)):
        return E.Constant(float(e))
    if isinstance(e, str):
        return E.Variable(e)
    if isinstance(e, _CONDITIONS):
        return E.Condition(_condition(e))
    name = type(e).__name__
    for cls, field, ctor in _NARY:
        if name == cls:
            return getattr(E, ctor)([to_expression(x) for x in getattr(e, field)])
    for cls, field, ctor in _UNARY:
        if name == cls:
            return getattr(E, ctor)(to_expression(getattr(e, field)))
    if name == "DivExpression":
        d = e.div
        return E.Div(to_expression(d.left), to_expression(d.right), d.by_zero_default)
    if name == "PowExpression":
        return E.Pow(to_expression(e.pow.base), to_expression(e.pow.exponent))
    if not _is_model(e):
        return e  # already an edge expression
    raise _unsupported(f"the formula expression {name}")


def to_formula(f: models.FormulaQuery) -> Any:
    """A qdrant-client ``FormulaQuery`` as an edge ``Formula``."""
    defaults = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                for k, v in (f.defaults or {}).items()}
    return qe.Formula(to_expression(f.formula), defaults=defaults or None)


def to_query(q: Any, using: str | None) -> Any:
    """A qdrant-client query (a vector, ``NearestQuery``, ``SparseVector``, multi-vector or
    ``FormulaQuery``) as an edge query. Point-id queries are resolved by the caller."""
    if q is None:
        return None
    if isinstance(q, np.ndarray):
        q = q.astype(np.float32, copy=False).tolist()
    if isinstance(q, list):
        return qe.Query.Nearest(q, using=using)
    if isinstance(q, models.NearestQuery):
        if q.mmr is not None:
            raise _unsupported("an MMR query")
        return to_query(q.nearest, using)
    if isinstance(q, models.SparseVector):
        return qe.Query.Nearest(qe.SparseVector(list(q.indices), [float(x) for x in q.values]), using=using)
    if isinstance(q, models.FormulaQuery):
        return to_formula(q)
    if not _is_model(q):
        return q  # already an edge query
    raise _unsupported(f"a {type(q).__name__}")


_NEAREST = re.compile(r"^Query\.Nearest\(query=\[([^\[\]]*)\], using=(None|\"(?:[^\"\\]|\\.)*\")\)$", re.S)


def nearest_of(query: Any) -> tuple[np.ndarray, str | None] | None:
    """The dense vector and vector name of an edge ``Query.Nearest``; ``None`` for any
    other query form.

    The engine's ``QueryRequest.query`` gives no field access back (only its text form,
    which prints each float32 in its shortest round-trip form), so the vector is read
    from that text: exact to the bit.
    """
    if type(query).__name__ == "Nearest":  # a Query.Nearest made here, not read back from a request
        v = query.query
        if not v or isinstance(v[0], list) or type(v).__name__ == "SparseVector":
            return None
        return np.asarray(v, dtype=np.float32), query.using
    m = _NEAREST.match(repr(query))
    if m is None:
        return None
    body, using = m.group(1), m.group(2)
    vec = np.array(body.split(","), dtype=np.float32) if body.strip() else np.zeros(0, dtype=np.float32)
    name = None if using == "None" else using[1:-1].encode().decode("unicode_escape")
    return vec, name


# ------------------------------------------------------------------ results
_SP_FIELDS = frozenset(models.ScoredPoint.model_fields)
_REC_FIELDS = frozenset(models.Record.model_fields)
_set = object.__setattr__


def _built(cls: Any, fields: frozenset, values: dict[str, Any]) -> Any:
    """A pydantic model from trusted values, as ``model_construct`` builds it (the
    instance dict, fields set, no extra, no private), minus its per-call overhead: the
    engine's values are valid already, and the candidates of every query pass here."""
    m = cls.__new__(cls)
    _set(m, "__dict__", values)
    _set(m, "__pydantic_fields_set__", set(fields))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def scored_point(p: Any) -> models.ScoredPoint:
    """An edge ``ScoredPoint`` as qdrant-client's (UUID ids as strings)."""
    pid = p.id
    return _built(models.ScoredPoint, _SP_FIELDS, {
        "id": str(pid) if type(pid) is uuid.UUID else pid, "version": p.version, "score": p.score,
        "payload": p.payload, "vector": p.vector, "shard_key": None, "order_value": p.order_value})


def record(r: Any) -> models.Record:
    """An edge ``Record`` as qdrant-client's."""
    return _built(models.Record, _REC_FIELDS, {"id": point_id(r.id), "payload": r.payload, "vector": r.vector,
                                               "shard_key": None, "order_value": r.order_value})
