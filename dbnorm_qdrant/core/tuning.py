"""Choosing a method and its parameters on a validation split carved from the banks.

The test queries are never looked at. With aligned bank pairs (``paired=True``,
query-bank row ``i`` matches gallery-bank row ``i``) tuning is supervised: it
maximises R@1 on held-out pairs. Without pairs it is unsupervised: it minimises the
k-skewness (hubness) of held-out bank queries against a held-out gallery sample.
Either way it only moves away from the raw scores when something beats them on
validation; otherwise it returns ``method="none"`` and says why.

The beta grid is scale-free: betas are multiples of ``1 / std(s)``, the spread of the
bank similarities, so it covers cosine scores, CLIP-style logits and the narrow bands
some models produce (std ~0.025), where centring is usually what rescues recall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .validation import InputError, as_matrix
from ..kernels import Request, get_backend
from .methods import METHODS, Params, activation_from_topk, score
from ..eval.metrics import hubness_metrics, ranks
from .normalizer import bank_means, centre
from .stats import GalleryStats

__all__ = ["TuneResult", "tune", "DEFAULT_BETA_MULTIPLES", "DEFAULT_BETA_G_MULTIPLES"]

log = logging.getLogger(__name__)

#: beta_q candidates, in units of 1/std(bank similarities)
DEFAULT_BETA_MULTIPLES: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
#: beta_g candidates for the dual methods, same units
DEFAULT_BETA_G_MULTIPLES: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
_ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: what method="auto" considers; "uniform" is left out (a Sinkhorn solve per beta is too
#: slow for a grid search; tune its beta/lambda by hand)
_AUTO_METHODS = tuple(m for m in METHODS if m not in ("none", "uniform"))


@dataclass
class TuneResult:
    """What tuning chose and why.

    Attributes
    ----------
    params:
        The chosen :class:`Params` (``method="none"`` when nothing beat raw).
    objective:
        ``"R1"`` (supervised, higher is better) or ``"k_skewness"`` (unsupervised, lower).
    value, raw_value:
        The objective of the chosen parameters and of the raw scores on validation.
    reason:
        One sentence on the choice.
    table:
        Every configuration tried with its objective (for reports).
    """

    params: Params
    objective: str
    value: float
    raw_value: float
    reason: str
    n_validation: int
    scale: float
    table: list[dict[str, Any]] = field(default_factory=list)


def _split(n: int, n_val: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    return np.sort(perm[:n_val]), np.sort(perm[n_val:])


def _val_size(n: int, val_size: int | None) -> int:
    if val_size is None:
        if n < 100:
            raise InputError(
                f"tuning needs a bank of at least 100 rows to carve a validation split from, got {n}; "
                "pass a larger bank or set the method and betas by hand."
            )
        val_size = int(min(2000, max(50, 0.2 * n)))
    if not 1 <= val_size < n:
        raise InputError(f"val_size={val_size} must be between 1 and the bank size minus one ({n - 1}).")
    return val_size


def tune(
    query_bank: np.ndarray,
    gallery_bank: np.ndarray | None = None,
    *,
    paired: bool = False,
    methods: Sequence[str] | None = None,
    center: Iterable[bool] = (False, True),
    beta_multiples: Sequence[float] = DEFAULT_BETA_MULTIPLES,
    beta_g_multiples: Sequence[float] = DEFAULT_BETA_G_MULTIPLES,
    val_size: int | None = None,
    k_hub: int = 10,
    seed: int = 0,
    backend: str = "auto",
) -> TuneResult:
    """Pick method, betas and centring on a validation split of the banks.

    Parameters
    ----------
    query_bank, gallery_bank:
        The banks. With ``paired=True`` they must have the same length and row ``i`` of
        each is a matching pair; a random ``val_size`` of the pairs becomes validation
        queries and gallery, the rest stays as banks.
    methods:
        Methods to consider (default: all of them; give one to tune only its betas).
    center:
        Centring options to try.
    beta_multiples, beta_g_multiples:
        Beta grids in units of ``1/std`` of the bank similarities.
    val_size:
        Validation size (default 20% of the bank, at most 2,000).
    k_hub:
        k of the k-occurrence used by the unsupervised objective.
    seed:
        Seed of the split (deterministic).
    """
    QB = as_matrix(query_bank, "query_bank")
    GB = None if gallery_bank is None else as_matrix(gallery_bank, "gallery_bank", ncols=QB.shape[1], ncols_of="query_bank")
    methods = tuple(_AUTO_METHODS if methods is None else methods)
    for m in methods:
        Params(method=m)  # validates the name
        if m == "uniform":
            raise InputError("tuning does not cover 'uniform' (a Sinkhorn solve per beta); set its beta and lambda by hand.")
    if GB is None:
        methods = tuple(m for m in methods if m not in ("dualis", "dualdis"))
    rng = np.random.default_rng(seed)
    if paired:
        if GB is None or len(GB) != len(QB):
            raise InputError("paired tuning needs a gallery bank with one row per query-bank row (aligned pairs).")
        n_val = _val_size(len(QB), val_size)
        val, rest = _split(len(QB), n_val, rng)
        Qv, Gv, QBr, GBr = QB[val], GB[val], QB[rest], GB[rest]
    else:
        if GB is None:
            raise InputError(
                "tuning without pairs needs a gallery bank (e.g. a sample of the collection) to measure hubness; "
                "pass gallery_bank= or paired=True with aligned pairs."
            )
        n_val_q = _val_size(len(QB), val_size)
        n_val_g = _val_size(len(GB), val_size)
        val_q, rest_q = _split(len(QB), n_val_q, rng)
        val_g, rest_g = _split(len(GB), n_val_g, rng)
        Qv, QBr, Gv, GBr = QB[val_q], QB[rest_q], GB[val_g], GB[rest_g]
        k_hub = min(k_hub, len(Gv))
    be = get_backend(backend)
    objective = "R1" if paired else "k_skewness"

    def evaluate(S: np.ndarray) -> float:
        if paired:
            return float(100.0 * np.mean(ranks(S) < 1))
        return float(hubness_metrics(S, k=k_hub)["k_skewness"])

    better = (lambda a, b: a > b) if paired else (lambda a, b: a < b)
    S_raw = Qv @ Gv.T
    raw_value = evaluate(S_raw)
    raw_top1 = np.argmax(S_raw, axis=1)  # dis/dualdis gate on the raw top-1, also with centring
    del S_raw
    table: list[dict[str, Any]] = [{"method": "none", "center": False, objective: raw_value}]
    best: tuple[float, Params] | None = None
    scale = 1.0
    for c in center:
        if c:
            mu_q, mu_g = bank_means(QBr, GBr)
            q, g, qb = centre(Qv, mu_q), centre(Gv, mu_g), centre(QBr, mu_q)
            gb = None if GBr is None else centre(GBr, mu_g)
        else:
            q, g, qb, gb = Qv, Gv, QBr, GBr
        S = q @ g.T
        if c:
            table.append({"method": "none", "center": True, objective: evaluate(S)})
        sample = qb[: min(len(qb), 2000)] @ g[: min(len(g), 2000)].T
        sd = float(np.std(sample)) or 1.0
        if not c:
            scale = sd
        betas = tuple(float(x / sd) for x in beta_multiples)
        betas_g = tuple(float(x / sd) for x in beta_g_multiples)
        gated = any(m in ("dis", "dualdis") for m in methods)
        rq = be.reduce_vectors(qb, g, Request(betas=betas, row_topk=1 if gated else 0, mean="centrality" in methods))
        n = g.shape[0]
        act_q = activation_from_topk(rq.row_topk, n) if gated else None
        lse_g = act_g = None
        if gb is not None and any(m in ("dualis", "dualdis") for m in methods):
            rg = be.reduce_vectors(gb, g, Request(betas=betas_g, row_topk=1 if "dualdis" in methods else 0))
            lse_g = rg.lse
            act_g = activation_from_topk(rg.row_topk, n) if rg.row_topk is not None else None
        topk10 = be.reduce_vectors(qb, g, Request(topk=min(10, len(qb)))).topk_mean if "csls" in methods else None
        k_nnn = min(128, len(qb))
        topk_nnn = be.reduce_vectors(qb, g, Request(topk=k_nnn)).topk_mean if "nnn" in methods else None

        def candidates():
            for m in methods:
                if m in ("is", "dis"):
                    for i, b in enumerate(betas):
                        yield Params(method=m, beta_q=b, center=c), GalleryStats(n=n, lse_q=rq.lse[i], act_q=act_q)
                elif m in ("dualis", "dualdis"):
                    for i, b in enumerate(betas):
                        for j, bg in enumerate(betas_g):
                            yield (
                                Params(method=m, beta_q=b, beta_g=bg, center=c),
                                GalleryStats(n=n, lse_q=rq.lse[i], lse_g=lse_g[j], act_q=act_q, act_g=act_g),
                            )
                elif m == "csls":
                    yield Params(method=m, center=c, k=min(10, len(qb))), GalleryStats(n=n, topk_mean_q=topk10)
                elif m == "nnn":
                    for a in _ALPHAS:
                        yield Params(method=m, center=c, k=k_nnn, alpha=a), GalleryStats(n=n, topk_mean_q=topk_nnn)
                elif m == "centrality":
                    for a in _ALPHAS:
                        yield Params(method=m, center=c, alpha=a), GalleryStats(n=n, mean_q=rq.mean)

        out = np.empty_like(S)
        for p, st in candidates():
            v = evaluate(score(S, st, p, top1=raw_top1 if p.gated else None, out=out))
            table.append({**p.to_dict(), objective: v})
            if best is None or better(v, best[0]):
                best = (v, p)
    if best is None or not better(best[0], raw_value):
        reason = (
            f"no configuration beat the raw scores on {len(Qv)} validation queries "
            f"({objective}: raw {raw_value:.3f}, best {best[0] if best else float('nan'):.3f}); keeping raw scores"
        )
        log.debug(reason)
        return TuneResult(Params(method="none"), objective, raw_value, raw_value, reason, len(Qv), scale, table)
    v, p = best
    reason = (
        f"{'supervised' if paired else 'unsupervised'} tuning on {len(Qv)} held-out bank queries: "
        f"{objective} {raw_value:.3f} (raw) -> {v:.3f} with {p.method}"
        f"{' + centring' if p.center else ''}"
    )
    log.debug(reason)
    return TuneResult(p, objective, v, raw_value, reason, len(Qv), scale, table)
