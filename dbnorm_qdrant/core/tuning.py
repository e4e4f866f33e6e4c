"""Choosing a method and its parameters on a validation split carved from the banks.

The test queries are never looked at. With aligned bank pairs (``paired=True``,
query-bank row ``i`` matches gallery-bank row ``i``) tuning is supervised: it
maximises R@1 on held-out pairs. Without pairs it is unsupervised: it minimises the
k-skewness (hubness) of held-out bank queries against a held-out gallery sample.
Either way it only moves away from the raw scores when something beats them on
validation; otherwise it returns ``method="none"`` and says why.

The beta grid is scale-free: betas are multiples of ``1 / std(s)``, the spread of the
bank similarities, so it covers cosine scores, CLIP-style logits and the narrow bands
some models produce (std ~0.025), where centering is usually what rescues recall.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..eval.metrics import hubness_metrics, ranks
from ..kernels import Backend, Request, get_backend
from . import centering
from .centering import bank_means
from .matrix import activation_from_topk
from .params import Params
from .scoring import score
from .spec import DUAL, GATED, METHODS, SINKHORN
from .stats import GalleryStats
from ..errors import InputError
from ..validation import as_matrix

__all__ = ["TuneResult", "tune", "DEFAULT_BETA_MULTIPLES", "DEFAULT_BETA_G_MULTIPLES"]

log = logging.getLogger(__name__)

#: beta_q candidates, in units of 1/std(bank similarities)
DEFAULT_BETA_MULTIPLES: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
#: beta_g candidates for the dual methods, same units
DEFAULT_BETA_G_MULTIPLES: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
_ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: what method="auto" considers; "uniform" is left out (a Sinkhorn solve per beta is too
#: slow for a grid search; tune its beta/lambda by hand)
_AUTO_METHODS = tuple(m for m in METHODS if m != "none" and m not in SINKHORN)
#: neighbours of csls / nnn on the validation split (their defaults, capped by the bank)
_K_CSLS, _K_NNN = 10, 128


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
    """Pick method, betas and centering on a validation split of the banks.

    Parameters
    ----------
    query_bank, gallery_bank:
        The banks. With ``paired=True`` they must have the same length and row ``i`` of
        each is a matching pair; a random ``val_size`` of the pairs becomes validation
        queries and gallery, the rest stays as banks.
    methods:
        Methods to consider (default: all of them; give one to tune only its betas).
    center:
        Centering options to try.
    beta_multiples, beta_g_multiples:
        Beta grids in units of ``1/std`` of the bank similarities.
    val_size:
        Validation size (default 20% of the bank, at most 2,000).
    k_hub:
        k of the k-occurrence used by the unsupervised objective (its neighbourhood size).
    seed:
        Seed of the split (deterministic).
    """
    QB = as_matrix(query_bank, "query_bank")
    GB = None if gallery_bank is None else as_matrix(gallery_bank, "gallery_bank", ncols=QB.shape[1], ncols_of="query_bank")
    methods = _check_methods(methods, GB is not None)
    split = _carve(QB, GB, paired, val_size, np.random.default_rng(seed))
    obj = _Objective(paired, min(k_hub, len(split.Gv)) if not paired else k_hub)
    S_raw = split.Qv @ split.Gv.T
    raw_value = obj(S_raw)
    raw_top1 = np.argmax(S_raw, axis=1)  # dis/dualdis gate on the raw top-1, also with centering
    del S_raw
    table: list[dict[str, Any]] = [{"method": "none", "center": False, obj.name: raw_value}]
    best: tuple[float, Params] | None = None
    scale = 1.0
    be = get_backend(backend)
    for c in center:
        q, g, qb, gb = _sides(split, c)
        S = q @ g.T
        if c:
            table.append({"method": "none", "center": True, obj.name: obj(S)})
        sample = qb[: min(len(qb), 2000)] @ g[: min(len(g), 2000)].T
        sd = float(np.std(sample)) or 1.0
        if not c:
            scale = sd
        betas = tuple(float(x / sd) for x in beta_multiples)
        betas_g = tuple(float(x / sd) for x in beta_g_multiples)
        red = _reduce_banks(be, methods, qb, g, gb, betas, betas_g)
        out = np.empty_like(S)
        for p, st in _candidates(methods, c, betas, betas_g, red):
            v = obj(score(S, st, p, top1=raw_top1 if p.gated else None, out=out))
            table.append({**p.to_dict(), obj.name: v})
            if best is None or obj.better(v, best[0]):
                best = (v, p)
    return _result(best, raw_value, obj, paired, len(split.Qv), scale, table)


def _check_methods(methods: Sequence[str] | None, has_gallery_bank: bool) -> tuple[str, ...]:
    """The methods to try: validated, without those that need a missing gallery bank."""
    methods = tuple(_AUTO_METHODS if methods is None else methods)
    for m in methods:
        Params(method=m)  # validates the name
        if m in SINKHORN:
            raise InputError(
                f"tuning does not cover {m!r} (a Sinkhorn solve per beta); set its beta and lambda by hand."
            )
    if not has_gallery_bank:
        methods = tuple(m for m in methods if m not in DUAL)
    return methods


@dataclass
class _Split:
    """Validation queries and gallery, and the banks left for the statistics."""

    Qv: np.ndarray
    Gv: np.ndarray
    QBr: np.ndarray
    GBr: np.ndarray | None


def _carve(
    QB: np.ndarray, GB: np.ndarray | None, paired: bool, val_size: int | None, rng: np.random.Generator
) -> _Split:
    """Carve the validation split out of the banks (aligned pairs, or two independent samples)."""
    if paired:
        if GB is None or len(GB) != len(QB):
            raise InputError("paired tuning needs a gallery bank with one row per query-bank row (aligned pairs).")
        n_val = _val_size(len(QB), val_size)
        val, rest = _split(len(QB), n_val, rng)
        return _Split(QB[val], GB[val], QB[rest], GB[rest])
    if GB is None:
        raise InputError(
            "tuning without pairs needs a gallery bank (e.g. a sample of the collection) to measure hubness; "
            "pass gallery_bank= or paired=True with aligned pairs."
        )
    n_val_q = _val_size(len(QB), val_size)
    n_val_g = _val_size(len(GB), val_size)
    val_q, rest_q = _split(len(QB), n_val_q, rng)
    val_g, rest_g = _split(len(GB), n_val_g, rng)
    return _Split(QB[val_q], GB[val_g], QB[rest_q], GB[rest_g])


class _Objective:
    """R@1 on held-out pairs (higher is better) or k-skewness of held-out queries (lower)."""

    def __init__(self, paired: bool, k_hub: int) -> None:
        self.paired, self.k_hub = paired, k_hub
        self.name = "R1" if paired else "k_skewness"

    def __call__(self, S: np.ndarray) -> float:
        if self.paired:
            return float(100.0 * np.mean(ranks(S) < 1))
        return float(hubness_metrics(S, k=self.k_hub)["k_skewness"])

    def better(self, a: float, b: float) -> bool:
        return a > b if self.paired else a < b


def _sides(split: _Split, c: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validation queries, gallery and the two banks, centered on the remaining banks' means when ``c``."""
    if not c:
        return split.Qv, split.Gv, split.QBr, split.GBr
    mu_q, mu_g = bank_means(split.QBr, split.GBr)
    q, g, qb = (centering.center(X, mu) for X, mu in ((split.Qv, mu_q), (split.Gv, mu_g), (split.QBr, mu_q)))
    gb = None if split.GBr is None else centering.center(split.GBr, mu_g)
    return q, g, qb, gb


@dataclass
class _Reductions:
    """Every statistic the grid needs, for all betas at once (one kernel pass per kind)."""

    n: int
    lse_q: np.ndarray  # (len(betas), n)
    mean_q: np.ndarray | None
    act_q: np.ndarray | None
    lse_g: np.ndarray | None
    act_g: np.ndarray | None
    topk_csls: np.ndarray | None
    topk_nnn: np.ndarray | None
    k_csls: int
    k_nnn: int


def _reduce_banks(
    be: Backend,
    methods: tuple[str, ...],
    qb: np.ndarray,
    g: np.ndarray,
    gb: np.ndarray | None,
    betas: tuple[float, ...],
    betas_g: tuple[float, ...],
) -> _Reductions:
    """The bank reductions of the whole grid over the validation gallery ``g``."""
    gated = any(m in GATED for m in methods)
    rq = be.reduce_vectors(qb, g, Request(betas=betas, row_topk=1 if gated else 0, mean="centrality" in methods))
    n = g.shape[0]
    act_q = activation_from_topk(rq.row_topk, n) if gated else None
    lse_g = act_g = None
    if gb is not None and any(m in DUAL for m in methods):
        dual_gated = any(m in DUAL and m in GATED for m in methods)
        rg = be.reduce_vectors(gb, g, Request(betas=betas_g, row_topk=1 if dual_gated else 0))
        lse_g = rg.lse
        act_g = activation_from_topk(rg.row_topk, n) if rg.row_topk is not None else None
    k_csls, k_nnn = min(_K_CSLS, len(qb)), min(_K_NNN, len(qb))
    topk_csls = be.reduce_vectors(qb, g, Request(topk=k_csls)).topk_mean if "csls" in methods else None
    topk_nnn = be.reduce_vectors(qb, g, Request(topk=k_nnn)).topk_mean if "nnn" in methods else None
    return _Reductions(n, rq.lse, rq.mean, act_q, lse_g, act_g, topk_csls, topk_nnn, k_csls, k_nnn)


def _candidates(
    methods: tuple[str, ...], c: bool, betas: tuple[float, ...], betas_g: tuple[float, ...], r: _Reductions
) -> Iterator[tuple[Params, GalleryStats]]:
    """Every (parameters, statistics) pair of the grid, for one centering option."""
    n = r.n
    for m in methods:
        if m in ("is", "dis"):
            for i, b in enumerate(betas):
                yield Params(method=m, beta_q=b, center=c), GalleryStats(n=n, lse_q=r.lse_q[i], act_q=r.act_q)
        elif m in DUAL:
            for i, b in enumerate(betas):
                for j, bg in enumerate(betas_g):
                    yield (
                        Params(method=m, beta_q=b, beta_g=bg, center=c),
                        GalleryStats(n=n, lse_q=r.lse_q[i], lse_g=r.lse_g[j], act_q=r.act_q, act_g=r.act_g),
                    )
        elif m == "csls":
            yield Params(method=m, center=c, k=r.k_csls), GalleryStats(n=n, topk_mean_q=r.topk_csls)
        elif m == "nnn":
            for a in _ALPHAS:
                yield Params(method=m, center=c, k=r.k_nnn, alpha=a), GalleryStats(n=n, topk_mean_q=r.topk_nnn)
        elif m == "centrality":
            for a in _ALPHAS:
                yield Params(method=m, center=c, alpha=a), GalleryStats(n=n, mean_q=r.mean_q)


def _result(
    best: tuple[float, Params] | None,
    raw_value: float,
    obj: _Objective,
    paired: bool,
    n_val: int,
    scale: float,
    table: list[dict[str, Any]],
) -> TuneResult:
    """The chosen parameters, or raw scores when nothing beat them on validation."""
    if best is None or not obj.better(best[0], raw_value):
        reason = (
            f"no configuration beat the raw scores on {n_val} validation queries "
            f"({obj.name}: raw {raw_value:.3f}, best {best[0] if best else float('nan'):.3f}); keeping raw scores"
        )
        log.debug(reason)
        return TuneResult(Params(method="none"), obj.name, raw_value, raw_value, reason, n_val, scale, table)
    v, p = best
    reason = (
        f"{'supervised' if paired else 'unsupervised'} tuning on {n_val} held-out bank queries: "
        f"{obj.name} {raw_value:.3f} (raw) -> {v:.3f} with {p.method}"
        f"{' + centering' if p.center else ''}"
    )
    log.debug(reason)
    return TuneResult(p, obj.name, v, raw_value, reason, n_val, scale, table)
