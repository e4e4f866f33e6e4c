"""Translation between qdrant-client models and Qdrant Edge (``qdrant_edge``) objects.

Forward (qdrant-client -> edge): filters and their conditions, payload and vector
selectors, search parameters, queries (dense / sparse / multi-dense vectors,
``NearestQuery``, ``FormulaQuery`` expressions; fusion, MMR, recommend, discover and
context queries in :mod:`._queries`), points, sparse vector parameters. Backward (edge -> qdrant-client):
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

import numba as nb
import numpy as np
import qdrant_edge as qe
from pydantic import BaseModel
from qdrant_client import models
from qdrant_client.http.models import QueryResponse

from ..errors import InputError

__all__ = ["to_filter", "to_payload_selector", "to_search_params", "to_query", "to_expression", "to_formula",
           "to_point", "to_vector", "scored_point", "record", "query_request", "query_response", "parse_floats", "point_id", "from_filter", "from_search_params",
           "nearest_of", "nearest_text", "DISTANCE", "to_sparse_params", "sparse_params_of"]

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


def _expression_table() -> dict[type, Any]:
    """qdrant-client expression class -> its translation (one dict lookup per node: the
    server path translates a formula per query)."""
    E = qe.Expression
    table: dict[type, Any] = {}

    def nary(field: str, ctor: str) -> Any:
        return lambda e: getattr(E, ctor)([to_expression(x) for x in getattr(e, field)])

    def unary(field: str, ctor: str) -> Any:
        return lambda e: getattr(E, ctor)(to_expression(getattr(e, field)))

    for names, make in ((_NARY, nary), (_UNARY, unary)):
        for cls, field, ctor in names:
            if hasattr(models, cls):
                table[getattr(models, cls)] = make(field, ctor)
    table[models.DivExpression] = lambda e: E.Div(to_expression(e.div.left), to_expression(e.div.right),
                                                  e.div.by_zero_default)
    table[models.PowExpression] = lambda e: E.Pow(to_expression(e.pow.base), to_expression(e.pow.exponent))
    for cls in _CONDITIONS:
        table[cls] = lambda e: E.Condition(_condition(e))
    table[int] = table[float] = lambda e: E.Constant(float(e))
    table[str] = E.Variable
    return table


def to_expression(e: Any) -> Any:
    """A qdrant-client formula expression as an edge ``Expression`` (numbers become
    ``Constant``, strings ``Variable`` -- ``$score`` or a payload path --, conditions
    ``Condition``)."""
    conv = _EXPRESSIONS.get(type(e))
    if conv is None:
        if isinstance(e, bool):
            raise _unsupported("a boolean constant in a formula")
        conv = next((_EXPRESSIONS[c] for c in type(e).__mro__ if c in _EXPRESSIONS), None)  # subclasses
        if conv is None:
            if not _is_model(e):
                return e  # already an edge expression
            raise _unsupported(f"the formula expression {type(e).__name__}")
    return conv(e)


_EXPRESSIONS = _expression_table()


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
    if isinstance(q, qe.SparseVector):  # the vector of a point given by id
        return qe.Query.Nearest(q, using=using)
    if not _is_model(q):
        return q  # already an edge query
    raise _unsupported(f"a {type(q).__name__}")


# ------------------------------------------------------------------ sparse vector parameters
def to_sparse_params(p: Any) -> Any:
    """qdrant-client ``SparseVectorParams`` as the engine's: ``modifier`` (``IDF``) and the
    index's ``full_scan_threshold``, ``on_disk``, ``datatype``."""
    if p is None or not _is_model(p):
        return qe.EdgeSparseVectorParams() if p is None else p
    ix = p.index
    dt = None if ix is None or ix.datatype is None else getattr(qe.VectorStorageDatatype, ix.datatype.value.capitalize())
    return qe.EdgeSparseVectorParams(
        full_scan_threshold=None if ix is None else ix.full_scan_threshold, on_disk=None if ix is None else ix.on_disk,
        modifier=qe.Modifier.Idf if p.modifier == models.Modifier.IDF else None, datatype=dt)


def sparse_params_of(v: Any) -> models.SparseVectorParams:
    """The qdrant-client ``SparseVectorParams`` of an ``EdgeSparseVectorParams`` or of its
    entry in ``edge_config.json`` (``{"modifier": "idf", "full_scan_threshold": ..., ...}``)."""
    get = v.get if isinstance(v, dict) else lambda k: getattr(v, k, None)
    name = lambda x: None if x is None else str(x).rsplit(".", 1)[-1].lower()  # noqa: E731 (enum or its json name)
    fst, on_disk, dt = get("full_scan_threshold"), get("on_disk"), name(get("datatype"))
    index = None if fst is None and on_disk is None and dt is None else models.SparseIndexParams(
        full_scan_threshold=fst, on_disk=on_disk, datatype=None if dt is None else models.Datatype(dt))
    return models.SparseVectorParams(index=index, modifier=models.Modifier.IDF if name(get("modifier")) == "idf" else None)


_NEAREST_HEAD = "Query.Nearest(query=["
_USING = re.compile(r'None|"(?:[^"\\]|\\.)*"', re.S)
#: 10**k, exact in float64 for k <= 22
_POW10 = np.array([10.0**k for k in range(23)])


@nb.njit(nogil=True, cache=True)
def _parse_f32(buf: np.ndarray, pow10: np.ndarray, out: np.ndarray, slow: np.ndarray) -> tuple:  # pragma: no cover
    """Parse ``"a, b, c"`` (ASCII bytes of decimal numbers without exponent) into ``out``
    (float32); returns ``(count, count of slow tokens)``. A number parsed here is exact:
    its significand ``m`` (< 2**53) and ``10**|e|`` (|e| <= 22) are exact doubles, so
    ``m * 10**e`` is one correctly rounded double operation, and rounding that to float32
    is correctly rounded too (53 >= 2*24 + 2: double rounding of one operation is
    innocuous, Figueroa 1995). Any other token (NaN, inf, a significand over 2**53, an
    exponent beyond 22) is left to the caller: its index and byte span go to row
    ``k`` of ``slow`` (k-th such token)."""
    n = 0
    n_slow = 0
    i = 0
    size = len(buf)
    while i < size:
        while i < size and (buf[i] == 32 or buf[i] == 44):  # ' ' and ','
            i += 1
        if i >= size:
            break
        start = i
        neg = buf[i] == 45  # '-'
        if neg:
            i += 1
        m = 0
        e = 0
        frac = False
        ok = True
        digits = 0
        while i < size and buf[i] != 44:
            c = buf[i]
            if 48 <= c <= 57:
                digits += 1
                if m < 100000000000000000:  # room for one more digit in int64
                    m = m * 10 + (c - 48)
                    if frac:
                        e -= 1
                else:
                    ok = ok and c == 48
                    if not frac:
                        e += 1
            elif c == 46 and not frac:  # '.'
                frac = True
            else:
                ok = False
            i += 1
        while m != 0 and m % 10 == 0:
            m //= 10
            e += 1
        if ok and digits > 0 and m < 9007199254740992 and -22 <= e <= 22:
            v = m * pow10[e] if e >= 0 else m / pow10[-e]
            out[n] = np.float32(-v if neg else v)
        else:
            slow[n_slow, 0] = n
            slow[n_slow, 1] = start
            slow[n_slow, 2] = i
            n_slow += 1
        n += 1
    return n, n_slow


def parse_floats(body: str) -> np.ndarray:
    """The float32 values of ``"a, b, c"`` as the engine prints them (each float32 in its
    shortest round-trip decimal form, no exponent): exact to the bit, and a 384-d vector
    in a few us instead of ~80 us for ``float()`` per number. Tokens the fast path leaves
    (NaN, inf, values under 1e-22 written out in full) are parsed by numpy one by one."""
    if not body.strip():
        return np.zeros(0, dtype=np.float32)
    n_max = body.count(",") + 1
    out = np.empty(n_max, dtype=np.float32)
    slow = np.empty((n_max, 3), dtype=np.int64)
    # one byte per character ("replace"), so byte spans are string spans
    n, n_slow = _parse_f32(np.frombuffer(body.encode("ascii", "replace"), dtype=np.uint8), _POW10, out, slow)
    if n != n_max:  # an empty field (never printed by the engine): numpy's parsing and its error
        return np.array(body.split(","), dtype=np.float32)
    if n_slow:
        rows = slow[:n_slow].tolist()
        out[[r[0] for r in rows]] = np.array([body[r[1]:r[2]] for r in rows], dtype=np.float32)
    return out


def nearest_of(query: Any) -> tuple[np.ndarray, str | None] | None:
    """The dense vector and vector name of an edge ``Query.Nearest``; ``None`` for any
    other query form.

    The engine's ``QueryRequest.query`` gives no field access back (only its text form,
    ``Query.Nearest(query=[...], using=...)``, which prints each float32 in its shortest
    round-trip form), so the vector is read from that text (:func:`parse_floats`): exact
    to the bit.
    """
    if type(query).__name__ == "Nearest":  # a Query.Nearest made here, not read back from a request
        v = query.query
        if not v or isinstance(v[0], list) or type(v).__name__ == "SparseVector":
            return None
        return np.asarray(v, dtype=np.float32), query.using
    got = nearest_text(query)
    if got is None:
        return None
    text, end, name = got
    return parse_floats(text[len(_NEAREST_HEAD):end]), name


def nearest_text(query: Any) -> tuple[str, int, str | None] | None:
    """``(text, end, using)`` of an edge ``Query.Nearest`` with one dense vector read back
    from a request: its text form, where the vector's numbers end in it (they start at
    ``len("Query.Nearest(query=[")``) and its vector name; ``None`` for any other query."""
    text = repr(query)
    if not text.startswith(_NEAREST_HEAD) or not text.endswith(")"):
        return None
    h = len(_NEAREST_HEAD)
    end = text.find("]", h)  # the vector's end: no bracket inside a dense vector
    if end < 0 or text.find("[", h, end) >= 0 or not text.startswith("], using=", end):
        return None
    using = text[end + 9:-1]
    if _USING.fullmatch(using) is None:
        return None
    return text, end, None if using == "None" else using[1:-1].encode().decode("unicode_escape")


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


_QR_DEFAULTS = {n: f.default for n, f in models.QueryRequest.model_fields.items()}  # all optional
_QR_FIELDS = frozenset(_QR_DEFAULTS)
_RESP_FIELDS = frozenset(QueryResponse.model_fields)


def query_request(**values: Any) -> models.QueryRequest:
    """A qdrant-client ``QueryRequest`` from trusted values (the rest: the defaults), as
    ``model_construct`` with every field given builds it, at a tenth of the cost."""
    return _built(models.QueryRequest, _QR_FIELDS, {**_QR_DEFAULTS, **values})


def query_response(points: list[Any]) -> QueryResponse:
    """A qdrant-client ``QueryResponse`` of already built points (as ``model_construct``)."""
    return _built(QueryResponse, _RESP_FIELDS, {"points": points})


def scored_point(p: Any, _cls: Any = models.ScoredPoint, _uuid: type = uuid.UUID) -> models.ScoredPoint:
    """An edge ``ScoredPoint`` as qdrant-client's (UUID ids as strings). (:func:`_built`
    inlined: every candidate of every query passes here.)"""
    m = _cls.__new__(_cls)
    pid = p.id
    _set(m, "__dict__", {"id": str(pid) if type(pid) is _uuid else pid, "version": p.version, "score": p.score,
                         "payload": p.payload, "vector": p.vector, "shard_key": None, "order_value": p.order_value})
    _set(m, "__pydantic_fields_set__", set(_SP_FIELDS))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def record(r: Any) -> models.Record:
    """An edge ``Record`` as qdrant-client's."""
    return _built(models.Record, _REC_FIELDS, {"id": point_id(r.id), "payload": r.payload, "vector": r.vector,
                                               "shard_key": None, "order_value": r.order_value})
