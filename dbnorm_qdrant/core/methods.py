"""The methods, as maths: parameters, per-item biases, and the matrix-level API.

Every method scores a (query, gallery item) pair as ``s(q, g) - bias(g)`` in the
units of the similarity itself (methods.md §3.6). Only the dynamic methods (``dis``,
``dualdis``) look at the query, through two gates: whether the query's raw top-1 item
is in the query-bank (resp. gallery-bank) activation set.

Two modes (methods.md §3):

- **log-domain** (default): the score above. For ``is`` and ``dualis`` it equals
  ``log(official value) / (beta_q + beta_g)``, so rankings are identical and nothing
  overflows. For ``dis`` an activated row is ``s - lse_q`` and a closed one raw ``s``.
  For ``dualdis`` it is the clean gated form
  ``s - (a_q beta_q lse_q + a_g beta_g lse_g) / (beta_q + beta_g)``.
- **faithful**: the values the official QB-Norm / DBNorm code returns (ratios of
  exponentials; a closed DualDIS gate contributes the raw score as a factor, so a row
  with both gates closed scores ``s**2`` — the official quirk). Computed from the same
  statistics as ``exp(beta * (s - lse))``, so it matches the official values to
  round-off without overflowing where they do not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .validation import InputError, as_matrix, check_beta, check_finite, check_k
from ..kernels import Request, get_backend
from ..kernels._tiles import for_row_chunks
from .spec import ADDITIVE, DUAL, GATED, METHODS, SPECS
from .stats import GalleryStats

__all__ = [
    "METHODS",
    "Params",
    "normalize",
    "bias",
    "score",
    "stats_from_sims",
    "activation_from_topk",
]

DEFAULT_BETA_Q = 20.0
DEFAULT_BETA_G = 3.0


def _check_method(method: Any) -> str:
    if isinstance(method, str) and method.lower() == "auto":
        raise InputError(
            "method='auto' tunes on a validation split of the bank *vectors*; use "
            "BankNormalizer(query_bank, gallery_bank, method='auto', paired=...) or dbnorm_qdrant.tune()."
        )
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    return method.lower()


@dataclass(frozen=True)
class Params:
    """A method and its parameters (validated; ``k`` and ``alpha`` resolved to defaults).

    Parameters
    ----------
    method:
        One of :data:`METHODS`.
    beta_q, beta_g:
        Inverse temperatures of the query-bank and gallery-bank softmax (``beta_g`` is
        used by ``dualis`` / ``dualdis`` only). Defaults 20 and 3 suit cosine
        similarities; for CLIP-style logits (x100) divide by ~100.
    k:
        ``dis`` / ``dualdis``: top-k of each bank item that forms the activation set
        (default 1). ``csls`` / ``nnn``: neighbours averaged (default 10 / 128).
        ``uniform``: maximum Sinkhorn iterations (default 50; 1 = inverted softmax).
    alpha:
        Weight of the bias for ``nnn`` (default 0.75) and ``centrality`` (default 0.5);
        for ``uniform`` the damping lambda in [0, 1] (default 0.5).
    center:
        Centre both sides on their bank means before normalising (vector level only).
    """

    method: str = "dualis"
    beta_q: float = DEFAULT_BETA_Q
    beta_g: float = DEFAULT_BETA_G
    k: int | None = None
    alpha: float | None = None
    center: bool = False

    def __post_init__(self) -> None:
        m = _check_method(self.method)
        object.__setattr__(self, "method", m)
        object.__setattr__(self, "beta_q", check_beta(self.beta_q, "beta_q"))
        object.__setattr__(self, "beta_g", check_beta(self.beta_g, "beta_g"))
        if self.k is None:
            object.__setattr__(self, "k", SPECS[m].default_k)
        elif isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise InputError(f"k must be an integer >= 1, got {self.k!r}.")
        else:
            object.__setattr__(self, "k", int(self.k))
        if self.alpha is None:
            object.__setattr__(self, "alpha", SPECS[m].default_alpha)
        else:
            try:
                a = float(self.alpha)
            except (TypeError, ValueError):
                raise InputError(f"alpha must be a number, got {self.alpha!r}.") from None
            if not math.isfinite(a) or a < 0:
                raise InputError(f"alpha must be a finite number >= 0, got {self.alpha!r}.")
            if m == "uniform" and a > 1:
                raise InputError(f"alpha (the damping lambda of 'uniform') must be in [0, 1], got {self.alpha!r}.")
            object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "center", bool(self.center))

    # what each method needs --------------------------------------------------------
    @property
    def uses_query_bank(self) -> bool:
        return self.method != "none"

    @property
    def uses_gallery_bank(self) -> bool:
        return self.method in DUAL

    @property
    def gated(self) -> bool:
        return self.method in GATED

    @property
    def additive(self) -> bool:
        """True when the score is ``s - bias(g)`` for every query (no gate)."""
        return self.method in ADDITIVE

    def query_bank_request(self) -> Request:
        """The reductions needed over the query bank."""
        m = self.method
        if m in ("is", "dis", "dualis", "dualdis"):
            return Request(betas=(self.beta_q,), row_topk=self.k if m in GATED else 0)
        if m in ("csls", "nnn"):
            return Request(topk=int(self.k))
        if m == "centrality":
            return Request(mean=True)
        return Request()

    def gallery_bank_request(self) -> Request:
        """The reductions needed over the gallery bank."""
        if self.method in DUAL:
            return Request(betas=(self.beta_g,), row_topk=self.k if self.method == "dualdis" else 0)
        return Request()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly), e.g. for reports and fingerprints."""
        return asdict(self)

    def with_(self, **changes: Any) -> "Params":
        """A copy with some fields changed (``k`` / ``alpha`` re-resolved when the method changes)."""
        if "method" in changes and changes["method"] != self.method:
            changes.setdefault("k", None)
            changes.setdefault("alpha", None)
        return replace(self, **changes)


# --------------------------------------------------------------------------- biases
def _weights(p: Params) -> tuple[float, float]:
    if p.method in DUAL:
        tot = p.beta_q + p.beta_g
        return p.beta_q / tot, p.beta_g / tot
    return 1.0, 0.0


def _need(stats: GalleryStats, field: str, p: Params) -> np.ndarray:
    v = getattr(stats, field)
    if v is None:
        raise InputError(
            f"method {p.method!r} needs the gallery statistic {field!r}, which these statistics lack; "
            "recompute them with the same Params (BankNormalizer.gallery_stats)."
        )
    return v


def bias(stats: GalleryStats, p: Params) -> np.ndarray:
    """The additive bias of each item for an additive method (gates open for ``dis``/``dualdis``)."""
    m = p.method
    if m == "none":
        return np.zeros(stats.n)
    if m in ("is", "dis"):
        return _need(stats, "lse_q", p).astype(np.float64, copy=False)
    if m in DUAL:
        wq, wg = _weights(p)
        return wq * _need(stats, "lse_q", p) + wg * _need(stats, "lse_g", p)
    if m == "csls":
        return 0.5 * _need(stats, "topk_mean_q", p)
    if m == "nnn":
        return float(p.alpha) * _need(stats, "topk_mean_q", p)
    if m == "centrality":
        return float(p.alpha) * _need(stats, "mean_q", p)
    if m == "uniform":  # s + lambda * v / beta, v the Sinkhorn gallery potential (uniform_v = v / beta)
        return -float(p.alpha) * _need(stats, "uniform_v", p)
    raise AssertionError(m)


def gates(stats: GalleryStats, p: Params, top1: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Gate values ``(a_q, a_g)`` (bool arrays) for queries whose raw top-1 item is ``top1``."""
    top1 = np.atleast_1d(np.asarray(top1, dtype=np.int64))
    if p.method not in GATED:
        ones = np.ones(top1.shape, dtype=bool)
        return ones, ones if p.method in DUAL else np.zeros(top1.shape, dtype=bool)
    a_q = _need(stats, "act_q", p)[top1]
    a_g = _need(stats, "act_g", p)[top1] if p.method == "dualdis" else np.zeros(top1.shape, dtype=bool)
    return a_q, a_g


def score(
    S: np.ndarray,
    stats: GalleryStats,
    p: Params,
    *,
    top1: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Log-domain scores of a (queries x items) raw score block, in similarity units.

    ``S[i, j]`` is the raw score of query ``i`` and item ``j`` whose statistics are
    ``stats.take([j])``. For gated methods ``top1[i]`` is the column of query ``i``'s
    raw top-1 item (default: the row argmax of ``S``, right when ``S`` covers the
    whole gallery or the raw top-N candidates).
    """
    S = np.asarray(S)
    dtype = S.dtype if S.dtype in (np.float32, np.float64) else np.float64
    if out is None:
        out = np.empty(S.shape, dtype=dtype)
    if p.method == "none":
        np.copyto(out, S)
        return out
    if not p.gated:
        b = bias(stats, p).astype(dtype)
        for_row_chunks(S.shape[0], S.size, lambda r0, r1: np.subtract(S[r0:r1], b, out=out[r0:r1]))
        return out
    if top1 is None:
        top1 = np.argmax(S, axis=1)
    a_q, a_g = gates(stats, p, top1)
    wq, wg = _weights(p)
    bq = (wq * _need(stats, "lse_q", p)).astype(dtype)
    bg = (wg * _need(stats, "lse_g", p)).astype(dtype) if p.method == "dualdis" else None
    np.copyto(out, S)
    rows_q = np.flatnonzero(a_q)
    if rows_q.size:
        out[rows_q] -= bq
    if bg is not None:
        rows_g = np.flatnonzero(a_g)
        if rows_g.size:
            out[rows_g] -= bg
    return out


def _faithful(S: np.ndarray, stats: GalleryStats, p: Params) -> np.ndarray:
    """The official implementations' values (see module docstring), in float64."""
    S = np.asarray(S, dtype=np.float64)
    m = p.method
    if m in ("none", "csls", "nnn", "centrality", "uniform"):
        return score(S, stats, p)  # no official code: the log-domain score is the definition
    top1 = np.argmax(S, axis=1)
    lse_q = stats.lse_q
    f_q = np.exp(p.beta_q * (S - lse_q))
    if m == "is":
        return f_q
    if m == "dualis":
        f_q *= np.exp(p.beta_g * (S - stats.lse_g))
        return f_q
    a_q, a_g = gates(stats, p, top1)
    f_q[~a_q] = S[~a_q]  # closed gate: the raw score
    if m == "dis":
        return f_q
    f_g = np.exp(p.beta_g * (S - stats.lse_g))
    f_g[~a_g] = S[~a_g]
    f_q *= f_g  # both gates closed -> s * s (official quirk)
    return f_q


# ---------------------------------------------------------------- stats from matrices
def activation_from_topk(row_topk: np.ndarray, n: int) -> np.ndarray:
    """Activation flags: items that appear in any bank row's top-k list."""
    act = np.zeros(n, dtype=bool)
    idx = row_topk[row_topk >= 0]
    act[idx] = True
    return act


def stats_from_sims(
    p: Params,
    query_bank_sims: np.ndarray | None,
    gallery_bank_sims: np.ndarray | None = None,
    *,
    backend: str = "auto",
) -> GalleryStats:
    """Gallery statistics from bank-by-gallery similarity matrices (matrix-level path)."""
    be = get_backend(backend)
    n = (query_bank_sims if query_bank_sims is not None else gallery_bank_sims).shape[1]
    st = GalleryStats(n=n)

    def checked(r, M, name):
        if r.finite is not True:
            check_finite(M, name)  # raises InputError on NaN / inf
        return r

    rq = p.query_bank_request()
    if not rq.is_empty():
        r = checked(be.reduce_sims(query_bank_sims, rq), query_bank_sims, "query_bank_sims")
        if rq.betas:
            st.lse_q = r.lse[0]
        if rq.row_topk:
            st.act_q = activation_from_topk(r.row_topk, n)
        st.topk_mean_q = r.topk_mean
        st.mean_q = r.mean
    if p.method == "uniform":
        check_finite(query_bank_sims, "query_bank_sims")
        st.uniform_v = uniform_potentials(query_bank_sims, p)
    rg = p.gallery_bank_request()
    if not rg.is_empty():
        r = checked(be.reduce_sims(gallery_bank_sims, rg), gallery_bank_sims, "gallery_bank_sims")
        st.lse_g = r.lse[0]
        if rg.row_topk:
            st.act_g = activation_from_topk(r.row_topk, n)
    return st


def uniform_potentials(query_bank_sims: np.ndarray, p: Params) -> np.ndarray:
    """The ``uniform_v`` statistic of the columns of a bank-by-gallery matrix: ``v(g) / beta``.

    ``v`` are the gallery potentials of the uniform-marginal Sinkhorn on
    ``beta_q * query_bank_sims`` (:mod:`dbnorm_qdrant.sinkhorn`), streamed over row blocks.
    """
    from .sinkhorn import sinkhorn_sims

    r = sinkhorn_sims(query_bank_sims, p.beta_q, n_iter=int(p.k))
    return r.v / p.beta_q


# ------------------------------------------------------------------ the matrix API
def normalize(
    S: np.ndarray,
    method: str,
    *,
    query_bank_sims: np.ndarray | None = None,
    gallery_bank_sims: np.ndarray | None = None,
    beta_q: float = DEFAULT_BETA_Q,
    beta_g: float = DEFAULT_BETA_G,
    k: int | None = None,
    alpha: float | None = None,
    faithful: bool = False,
    backend: str = "auto",
) -> np.ndarray:
    """Normalise a query-by-gallery similarity matrix with a hubness method.

    Parameters
    ----------
    S:
        ``(n_queries, n_gallery)`` raw similarities (cosine, dot, or negated distance).
    method:
        ``none``, ``is``, ``dis``, ``dualis``, ``dualdis``, ``csls``, ``nnn``,
        ``centrality`` or ``uniform`` (methods.md §3).
    query_bank_sims:
        ``(n_query_bank, n_gallery)`` similarities of query-bank items to the same
        gallery. Needed by every method but ``none``.
    gallery_bank_sims:
        ``(n_gallery_bank, n_gallery)`` similarities of gallery-bank items to the same
        gallery. Needed by ``dualis`` and ``dualdis``.
    beta_q, beta_g:
        Inverse temperatures (default 20 and 3, for cosine similarities). For ``is``
        and ``dis``, ``beta_q`` is the single beta.
    k:
        Activation top-k for ``dis``/``dualdis`` (default 1); neighbours for ``csls``
        (10) and ``nnn`` (128).
    alpha:
        Bias weight of ``nnn`` (0.75) and ``centrality`` (0.5); damping lambda in [0, 1]
        of ``uniform`` (0.5). For ``uniform``, ``k`` is the maximum number of Sinkhorn
        iterations (50) and ``beta_q`` its beta; the Sinkhorn runs on
        ``query_bank_sims`` itself, i.e. on this gallery.
    faithful:
        Return the official code's values (float64) instead of the log-domain scores.
    backend:
        Kernel backend for the bank reductions (``auto``, ``numpy``, ``numba``, ``torch``).

    Returns
    -------
    numpy.ndarray
        A new array shaped like ``S``; the inputs are never modified. Log-domain scores
        keep ``S``'s float dtype; faithful values are float64.
    """
    p = Params(method=method, beta_q=beta_q, beta_g=beta_g, k=k, alpha=alpha)
    S = as_matrix(S, "S")
    n = S.shape[1]
    # Bank matrices are the bulk of the input: their NaN/inf check rides on the kernel's
    # own passes where the backend offers it (Reduced.finite), else runs here.
    if p.uses_query_bank:
        if query_bank_sims is None:
            raise InputError(f"method {p.method!r} needs query_bank_sims (query-bank x gallery similarities).")
        query_bank_sims = as_matrix(query_bank_sims, "query_bank_sims", ncols=n, ncols_of="S", finite=False)
    if p.uses_gallery_bank:
        if gallery_bank_sims is None:
            raise InputError(
                f"method {p.method!r} needs gallery_bank_sims (gallery-bank x gallery similarities); "
                "use method='is' or 'dis' if you have no gallery bank."
            )
        gallery_bank_sims = as_matrix(gallery_bank_sims, "gallery_bank_sims", ncols=n, ncols_of="S", finite=False)
    if p.gated:
        check_k(p.k, n, "k")
    if p.method in ("csls", "nnn"):
        check_k(p.k, query_bank_sims.shape[0], "k", "the query bank")
    if p.method == "none":
        return np.array(S, dtype=np.float64 if faithful else S.dtype)
    st = stats_from_sims(p, query_bank_sims, gallery_bank_sims, backend=backend)
    if faithful:
        return _faithful(S, st, p)
    return score(S, st, p)
