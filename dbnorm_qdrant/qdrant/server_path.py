"""The server-side path: the rerank as one Qdrant ``FormulaQuery`` over a prefetch.

For every method the normalised score is linear in the raw similarity and in the
statistics: ``c_s * s - sum_f c_f * stat_f`` (docs/methods.md §3.6; for ``dis``/``dualdis``
once the gates are fixed). The coefficients are *read off* :func:`methods.score` by
evaluating it on unit statistics, so the maths stays in :mod:`dbnorm_qdrant.core.methods`
and this module only writes it down as a Qdrant formula over ``$score`` and the payload
fields ``<key>.<stat>`` (:func:`formula_query`), and runs it (:func:`server_logic`): once
the payload holds statistics with the current fingerprint (``precompute``), one
``query_points`` with a ``prefetch`` of N and that formula (plus a raw top-1 query for
``dis``/``dualdis``, whose gates are decided on the client). A candidate without current
statistics sends the query back to the client-side path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_client import models

from ..core.methods import Params, score
from ..core.spec import CENTER_FIELDS, GATE_FIELDS
from ..core.stats import STAT_FIELDS, GalleryStats
from ..errors import InputError
from ._io import Logic
from .planning import Plan, merge_payload
from .results import build_result, empty_result

if TYPE_CHECKING:
    from .core import Core

__all__ = ["coefficients", "formula_query", "bias_field", "soundness", "raw_similarity", "server_logic",
           "LINEAR_FIELDS"]

#: statistics that enter a score linearly: all but the gates and the centering terms
#: (derived, so a new additive statistic reaches the server formula by itself)
LINEAR_FIELDS = tuple(f for f in STAT_FIELDS if f not in GATE_FIELDS + CENTER_FIELDS)
#: default for a missing payload field: pushes a point without statistics to the top,
#: where the client sees it and falls back to the client-side path
MISSING = 1.0e6


def _unit_stats(field: str | None, a_q: bool, a_g: bool) -> GalleryStats:
    kw = {f: np.zeros(1) for f in LINEAR_FIELDS}
    if field is not None:
        kw[field] = np.ones(1)
    return GalleryStats(n=1, act_q=np.array([a_q]), act_g=np.array([a_g]), **kw)


@lru_cache(maxsize=256)
def coefficients(p: Params, a_q: bool = True, a_g: bool = True) -> tuple[float, dict[str, float]]:
    """``(c_s, {stat: c_f})`` with ``score = c_s * s - sum c_f * stat`` for these gates."""
    if p.center:
        raise InputError("centering makes the score non-linear in the raw similarity: no server formula; "
                         "use center=False or the client-side path (mode='client').")
    top1 = np.zeros(1, dtype=np.int64)
    c0 = float(score(np.zeros((1, 1)), _unit_stats(None, a_q, a_g), p, top1=top1)[0, 0])
    c_s = float(score(np.ones((1, 1)), _unit_stats(None, a_q, a_g), p, top1=top1)[0, 0]) - c0
    coefs = {}
    for f in LINEAR_FIELDS:
        c = c0 - float(score(np.zeros((1, 1)), _unit_stats(f, a_q, a_g), p, top1=top1)[0, 0])
        if c != 0.0:
            coefs[f] = c
    assert c0 == 0.0 and set(coefs) <= set(STAT_FIELDS)
    return c_s, coefs


def bias_field(p: Params, fingerprint: str) -> str | None:
    """The field, under the reserved key, that holds a point's bias ``sum c_f * stat_f`` under
    one normaliser (an additive method without centering; ``None`` for the others). Named by
    the fingerprint, so a value written for other banks or parameters is never read: the
    formula reads this one field instead of the fingerprint and every statistic, which on
    Qdrant's engine costs half as much over and above the prefetch (docs/edge.md)."""
    return f"b_{fingerprint}" if p.additive and not p.center else None


@lru_cache(maxsize=256)
def formula_query(
    p: Params, key: str, sign: float, a_q: bool = True, a_g: bool = True, *, fingerprint: str | None = None,
    bias: bool = False,
) -> models.FormulaQuery:
    """The normalised score as a formula: ``c_s * sign * $score - sum c_f * $payload[key.f]``.

    Built once per argument set and shared (treat it as read-only).

    ``sign`` is -1 for Euclid (Qdrant returns the distance) and +1 otherwise. With
    ``fingerprint``, a point whose stored statistics carry another fingerprint (left from
    other banks or parameters) gets ``+MISSING``, like a point without statistics: it
    rises to the top, where the client sees it and redoes the query on the client path.
    With ``bias`` too (an additive method), the formula is ``c_s * sign * $score -
    $payload[key.b_<fingerprint>]`` (:func:`bias_field`, ``+MISSING`` where it is absent).
    """
    c_s, coefs = coefficients(p, a_q, a_g)
    field = bias_field(p, fingerprint) if bias and fingerprint is not None else None
    if field is not None:
        path = f"{key}.{field}"
        return models.FormulaQuery(
            formula=models.SumExpression(sum=[models.MultExpression(mult=[c_s * sign, "$score"]),
                                              models.NegExpression(neg=path)]),
            defaults={path: -MISSING})
    terms: list = [models.MultExpression(mult=[c_s * sign, "$score"])]
    if fingerprint is not None:
        current = models.FieldCondition(key=f"{key}.fp", match=models.MatchValue(value=fingerprint))
        terms += [MISSING, models.MultExpression(mult=[-MISSING, current])]
    defaults = {}
    for f, c in coefs.items():
        terms.append(models.MultExpression(mult=[-c, f"{key}.{f}"]))
        defaults[f"{key}.{f}"] = -MISSING if c > 0 else MISSING
    return models.FormulaQuery(formula=models.SumExpression(sum=terms), defaults=defaults)


def soundness(rec: Any, p: Params, fingerprint: str, bias: bool) -> str:
    """What a stored record (the reserved key's value of a point the formula returned) says:
    ``"ok"`` (current statistics), ``"stale"`` (none, or another fingerprint's) or
    ``"legacy"`` (current statistics without the bias field that ``bias`` formulas read)."""
    if not (isinstance(rec, dict) and rec.get("fp") == fingerprint):
        return "stale"
    field = bias_field(p, fingerprint) if bias else None
    return "legacy" if field is not None and field not in rec else "ok"


def raw_similarity(score_value: float, rec: dict, p: Params, a_q: bool = True, a_g: bool = True) -> float:
    """Invert :func:`formula_query` for one point: its raw similarity from its score and statistics."""
    c_s, coefs = coefficients(p, a_q, a_g)
    return (score_value + sum(c * float(rec[f]) for f, c in coefs.items())) / c_s


def server_logic(core: Core, collection: str, plans: list[Plan], extra: dict[str, Any]) -> Logic:
    """Logic: run ``plans`` inside Qdrant; a plan that cannot be (no current statistics)
    is switched to ``mode="client"`` and left without a result."""
    gates = yield from _gates(core, collection, plans, extra)
    todo = [i for i, p in enumerate(plans) if p.mode == "server" and p.result is None]
    if not todo:
        return
    key = core.payload_key
    reqs = []
    bias = [core.bias_stored((collection, plans[i].info.using, plans[i].nz.fingerprint)) for i in todo]
    for i, b in zip(todo, bias):
        p, s = plans[i], plans[i].spec
        reqs.append(
            dict(
                prefetch=models.Prefetch(query=s.query, using=s.using, filter=s.filter, params=s.params, limit=p.n),
                query=formula_query(p.nz.params, key, p.info.sign, *gates[i], fingerprint=p.nz.fingerprint, bias=b),
                # offset and threshold are applied here, after checking that every point
                # up to offset + limit has current statistics (a stale or missing one is
                # pushed to the very top by the formula, so it cannot hide behind the offset)
                limit=(s.offset or 0) + s.limit,
                with_payload=merge_payload(s.with_payload, key), with_vectors=s.with_vector,
                shard_key_selector=s.shard_key,
            )
        )
    res = yield from core.batch_call(collection, reqs, extra)
    for i, b, r in zip(todo, bias, res):
        p = plans[i]
        fp = p.nz.fingerprint
        sk = (collection, p.info.using, fp)
        raws: list[float] | None = []
        for pt in r.points:
            pr = (pt.payload or {}).get(key)
            state = soundness(pr, p.nz.params, fp, b)
            if state != "ok":  # a candidate without current statistics (or bias field): redo on the client
                raws = None
                if state == "legacy":
                    core.mark_legacy(sk)  # the next queries read the statistics fields
                else:
                    core.mark_payload_ready(sk, False)
                break
            raws.append(p.info.sign * raw_similarity(pt.score, pr, p.nz.params, *gates[i]))
        if raws is None:
            p.mode = "client"
        else:  # the formula's score is the normalised score; offset and threshold now
            pts = r.points
            order = list(range(min(p.spec.offset or 0, len(pts)), len(pts)))
            build_result(p, pts, order, [pts[j].score for j in order], key, raws)


def _gates(core: Core, collection: str, plans: list[Plan], extra: dict[str, Any]) -> Logic:
    """Logic: the gates ``(act_q, act_g)`` of each plan (``dis``/``dualdis``: the stored
    flags of the raw top-1, asked with one ``limit=1`` query; others: open). A plan whose
    top-1 has no current statistics is switched to the client path; one without any
    candidate gets an empty result."""
    key = core.payload_key
    gates: list[tuple[bool, bool]] = [(True, True)] * len(plans)
    gated = [i for i, p in enumerate(plans) if p.nz.params.gated]
    if not gated:
        return gates
    reqs = [
        dict(query=plans[i].spec.query, using=plans[i].spec.using, query_filter=plans[i].spec.filter,
             search_params=plans[i].spec.params, limit=1, with_payload=[key], with_vectors=False,
             shard_key_selector=plans[i].spec.shard_key)
        for i in gated
    ]
    tops = yield from core.batch_call(collection, reqs, extra)
    for i, r in zip(gated, tops):
        if not r.points:
            plans[i].result = empty_result()
            continue
        pr = (r.points[0].payload or {}).get(key)
        if not (isinstance(pr, dict) and pr.get("fp") == plans[i].nz.fingerprint and "act_q" in pr):
            plans[i].mode = "client"  # no current statistics: the client path computes them
            continue
        gates[i] = (bool(pr.get("act_q")), bool(pr.get("act_g", False)))
    return gates
