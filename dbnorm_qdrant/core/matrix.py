"""The matrix-level API: normalise a query-by-gallery similarity matrix given bank similarities.

:func:`normalize` takes ``S`` and the bank-by-gallery matrices, reduces the banks with a
kernel backend into :class:`~dbnorm_qdrant.core.stats.GalleryStats`
(:func:`stats_from_sims`) and scores ``S`` with them (:mod:`.scoring`).
"""

from __future__ import annotations

import numpy as np

from ..kernels import Reduced, get_backend
from .params import DEFAULT_BETA_G, DEFAULT_BETA_Q, Params
from .scoring import faithful as _faithful
from .scoring import score
from .spec import SPECS
from .stats import GalleryStats
from ..errors import InputError
from ..validation import as_matrix, check_finite, check_k

__all__ = ["normalize", "stats_from_sims", "uniform_potentials", "activation_from_topk"]


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

    def checked(r: Reduced, M: np.ndarray, name: str) -> Reduced:
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
    if "uniform_v" in SPECS[p.method].bias_fields:
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
    ``beta_q * query_bank_sims`` (:mod:`dbnorm_qdrant.core.sinkhorn`), streamed over row blocks;
    ``p.k`` is the maximum number of iterations.
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
        ``centrality`` or ``uniform`` (docs/methods.md §3).
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
        The method's neighbourhood size (:class:`Params`): activation top-k for
        ``dis``/``dualdis`` (default 1); query-bank neighbours for ``csls`` (10) and
        ``nnn`` (128); for ``uniform`` the maximum number of Sinkhorn iterations (50).
    alpha:
        The weight of the bias term: ``nnn`` (0.75), ``centrality`` (0.5), ``uniform``
        (0.5, the damping lambda in [0, 1]). For ``uniform`` ``beta_q`` is the Sinkhorn's
        beta and the Sinkhorn runs on ``query_bank_sims`` itself, i.e. on this gallery.
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
    if p.k_counts_neighbours:
        check_k(p.k, query_bank_sims.shape[0], "k", "the query bank")
    if p.method == "none":
        return np.array(S, dtype=np.float64 if faithful else S.dtype)
    st = stats_from_sims(p, query_bank_sims, gallery_bank_sims, backend=backend)
    if faithful:
        return _faithful(S, st, p)
    return score(S, st, p)
