"""Server-side rescoring: the rerank as one Qdrant ``FormulaQuery`` over a prefetch.

For every method the normalised score is linear in the raw similarity and in the
statistics: ``c_s * s - sum_f c_f * stat_f`` (methods.md §3.6; for ``dis``/``dualdis``
once the gates are fixed). The coefficients are *read off* :func:`methods.score` by
evaluating it on unit statistics, so the maths stays in :mod:`dbnorm_qdrant.methods`
and this module only writes it down as a Qdrant formula over ``$score`` and the payload
fields ``<key>.<stat>``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from qdrant_client import models

from ..core.methods import Params, score
from ..core.stats import STAT_FIELDS, GalleryStats

__all__ = ["coefficients", "formula_query", "LINEAR_FIELDS"]

#: statistics that enter a score linearly: all but the gates and the centring terms
#: (derived, so a new additive statistic reaches the server formula by itself)
LINEAR_FIELDS = tuple(f for f in STAT_FIELDS if f not in ("act_q", "act_g", "center_dot", "center_norm"))
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
        raise ValueError("centring makes the score non-linear in the raw similarity")
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


@lru_cache(maxsize=256)
def formula_query(
    p: Params, key: str, sign: float, a_q: bool = True, a_g: bool = True, *, fingerprint: str | None = None
) -> models.FormulaQuery:
    """The normalised score as a formula: ``c_s * sign * $score - sum c_f * $payload[key.f]``.

    Built once per argument set and shared (treat it as read-only).

    ``sign`` is -1 for Euclid (Qdrant returns the distance) and +1 otherwise. With
    ``fingerprint``, a point whose stored statistics carry another fingerprint (left from
    other banks or parameters) gets ``+MISSING``, like a point without statistics: it
    rises to the top, where the client sees it and redoes the query on the client path.
    """
    c_s, coefs = coefficients(p, a_q, a_g)
    terms: list = [models.MultExpression(mult=[c_s * sign, "$score"])]
    if fingerprint is not None:
        current = models.FieldCondition(key=f"{key}.fp", match=models.MatchValue(value=fingerprint))
        terms += [MISSING, models.MultExpression(mult=[-MISSING, current])]
    defaults = {}
    for f, c in coefs.items():
        terms.append(models.MultExpression(mult=[-c, f"{key}.{f}"]))
        defaults[f"{key}.{f}"] = -MISSING if c > 0 else MISSING
    return models.FormulaQuery(formula=models.SumExpression(sum=terms), defaults=defaults)


def raw_similarity(score_value: float, rec: dict, p: Params, a_q: bool = True, a_g: bool = True) -> float:
    """Invert :func:`formula_query` for one point: its raw similarity from its score and statistics."""
    c_s, coefs = coefficients(p, a_q, a_g)
    return (score_value + sum(c * float(rec[f]) for f, c in coefs.items())) / c_s
