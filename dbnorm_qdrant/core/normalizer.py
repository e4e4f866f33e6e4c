"""Vector-level API: banks + method -> gallery statistics, reranking, search.

:class:`BankNormalizer` holds the query bank, the gallery bank and a :class:`Params`.
It computes :class:`~dbnorm_qdrant.core.stats.GalleryStats` from gallery vectors with the
kernels, then scores raw candidate lists (``rerank``) or whole galleries (``search``)
from those statistics alone. The statistics are the only state that passes from
index time to query time; :attr:`BankNormalizer.fingerprint` names them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import numpy as np

from ..kernels import Backend, Reduced, Request, get_backend
from . import centering
from .centering import bank_means, neg_euclid
from .matrix import activation_from_topk
from .params import Params, as_params
from .scoring import score
from .spec import SINKHORN
from .stats import GalleryStats
from ..errors import InputError
from ..validation import as_matrix, check_finite, check_int, check_k, check_vectors

__all__ = ["BankNormalizer", "SIMILARITIES"]

#: pair similarities a :class:`BankNormalizer` can use (``dot``: cosine for unit rows)
SIMILARITIES = ("dot", "neg_euclid")
#: elements per similarity block on the ``neg_euclid`` path (float64: 64 MiB)
_BLOCK_ELEMS = 1 << 23

log = logging.getLogger(__name__)


def _hash_array(h: "hashlib._Hash", a: np.ndarray | None) -> None:
    if a is None:
        h.update(b"none")
        return
    a = np.ascontiguousarray(a)
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(memoryview(a).cast("B"))


class BankNormalizer:
    """Bank normalisation over embedding vectors.

    Parameters
    ----------
    query_bank:
        ``(M, d)`` vectors of the query modality (not the test queries).
    gallery_bank:
        ``(L, d)`` vectors of the gallery modality, needed by ``dualis``/``dualdis``.
        It may be a sample of the indexed collection itself: pass ``gallery_bank_keys``
        (and ``gallery_keys`` to :meth:`gallery_stats`) so an item never counts itself.
    method, beta_q, beta_g, k, alpha, center:
        See :class:`~dbnorm_qdrant.core.params.Params`. ``method="auto"`` tunes them on a
        validation split carved from the banks (:func:`~dbnorm_qdrant.core.tuning.tune`);
        with ``paired=True`` the banks are aligned pairs and tuning is supervised.
    gallery_bank_keys:
        Integer keys of the gallery-bank rows (one per row; ``-1``: no key). A gallery item
        whose key (``gallery_keys``) equals a bank row's key is left out of that row's terms.
    query_bank_keys:
        The same for the query-bank rows, for a query bank sampled from the collection
        itself (the cold start of a query log uses the items as pseudo-queries,
        docs/lifecycle.md): an item never counts itself as a query-bank neighbour.
    params:
        A ready :class:`Params` (instead of the individual arguments).
    backend:
        Kernel backend: ``auto``, ``numpy``, ``numba`` or ``torch``.
    similarity:
        ``"dot"`` (default; the cosine for unit rows) or ``"neg_euclid"``: every
        bank-gallery similarity is ``-||b - g||`` (:func:`neg_euclid`), matching raw
        scores that are negated Euclidean distances (a Qdrant ``Euclid`` collection).
        Centering and ``method="auto"`` assume dot similarities and are refused with it.
        Under ``"dot"`` every query and gallery vector must have a non-zero norm (a zero
        vector has no direction); under ``"neg_euclid"`` zero vectors are fine. NaN and
        infinite values are refused either way, naming the first bad row.

    Notes
    -----
    Scores are raw similarities minus a per-item bias (docs/methods.md §3.6). With
    ``center=True`` the raw score is first turned into the cosine of the centered
    vectors, ``(s - q.mu_G - mu_Q.g + mu_Q.mu_G) / (|q - mu_Q| |g - mu_G|)``, which
    needs only the query vector and two per-item statistics (so candidates can still
    be reranked without their vectors). Centering assumes dot/cosine similarities.
    """

    def __init__(
        self,
        query_bank: np.ndarray,
        gallery_bank: np.ndarray | None = None,
        *,
        method: str = "dualis",
        beta_q: float | None = None,
        beta_g: float | None = None,
        k: int | None = None,
        alpha: float | None = None,
        center: bool = False,
        params: Params | None = None,
        paired: bool = False,
        gallery_bank_keys: np.ndarray | None = None,
        query_bank_keys: np.ndarray | None = None,
        backend: str = "auto",
        seed: int = 0,
        similarity: str = "dot",
    ) -> None:
        if similarity not in SIMILARITIES:
            raise InputError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}.")
        self.similarity = similarity
        self.query_bank = as_matrix(query_bank, "query_bank")
        d = self.query_bank.shape[1]
        self.gallery_bank = (
            None if gallery_bank is None else as_matrix(gallery_bank, "gallery_bank", ncols=d, ncols_of="query_bank")
        )
        self.gallery_bank_keys = None if gallery_bank_keys is None else np.asarray(gallery_bank_keys, dtype=np.int64)
        if self.gallery_bank_keys is not None and (
            self.gallery_bank is None or len(self.gallery_bank_keys) != len(self.gallery_bank)
        ):
            raise InputError("gallery_bank_keys must have one key per gallery_bank row.")
        self.query_bank_keys = None if query_bank_keys is None else np.asarray(query_bank_keys, dtype=np.int64)
        if self.query_bank_keys is not None and self.query_bank_keys.shape != (len(self.query_bank),):
            raise InputError("query_bank_keys must have one key per query_bank row (the point key of each row "
                             "sampled from the collection, -1 for none).")
        self.backend: Backend = get_backend(backend)
        self.tuning = None
        if params is None and method == "auto":
            if similarity != "dot":
                raise InputError(
                    "method='auto' tunes on dot/cosine similarities; with similarity='neg_euclid' pick the "
                    "method and betas yourself (negated distances have another scale)."
                )
            from .tuning import tune

            self.tuning = tune(
                self.query_bank, self.gallery_bank, paired=paired, backend=backend, seed=seed
            )
            params = self.tuning.params
            log.info("tuned parameters: %s (%s)", params, self.tuning.reason)
        if params is None:
            kw: dict[str, Any] = {"method": method, "k": k, "alpha": alpha, "center": center}
            if beta_q is not None:
                kw["beta_q"] = beta_q
            if beta_g is not None:
                kw["beta_g"] = beta_g
            params = kw
        params = as_params(params)
        self.params = params
        if params.center and similarity != "dot":
            raise InputError(
                "centering (center=True) is defined for dot/cosine similarities only; it cannot be combined "
                f"with similarity={similarity!r} (e.g. a Euclid collection). Use center=False."
            )
        if params.uses_gallery_bank and self.gallery_bank is None:
            raise InputError(
                f"method {params.method!r} needs a gallery bank; pass gallery_bank= or use method='is'/'dis'."
            )
        if params.method in SINKHORN and self.gallery_bank is None:
            raise InputError(
                "method 'uniform' solves its Sinkhorn on the query bank x a gallery sample: pass gallery_bank= "
                "(e.g. a sample of the collection, or the gallery itself)."
            )
        self._uniform = None  # SinkhornResult, solved on first use
        if params.k_counts_neighbours:
            check_k(params.k, len(self.query_bank), "k", "the query bank")
        # centering: bank means and the transformed banks
        self.mu_q = self.mu_g = None
        self._qb, self._gb = self.query_bank, self.gallery_bank
        if params.center:
            self.mu_q, self.mu_g = bank_means(self.query_bank, self.gallery_bank)
            self._qb = centering.center(self.query_bank, self.mu_q)
            if self.gallery_bank is not None:
                self._gb = centering.center(self.gallery_bank, self.mu_g)
        self.fingerprint = self._fingerprint()

    # ------------------------------------------------------------------ identity
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        _hash_array(h, self.query_bank)
        uses_gb = self.params.uses_gallery_bank or self.params.center or self.params.method in SINKHORN
        _hash_array(h, self.gallery_bank if uses_gb else None)
        _hash_array(h, self.gallery_bank_keys)
        if self.query_bank_keys is not None:  # hashed only when present: older fingerprints stay as they were
            _hash_array(h, self.query_bank_keys)
        h.update(json.dumps(self.params.to_dict(), sort_keys=True).encode())
        if self.similarity != "dot":  # dot keeps the fingerprints it always had
            h.update(f"similarity={self.similarity}".encode())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        g = None if self.gallery_bank is None else self.gallery_bank.shape
        sim = "" if self.similarity == "dot" else f", similarity={self.similarity!r}"
        return (
            f"BankNormalizer({self.params}, query_bank={self.query_bank.shape}, gallery_bank={g}{sim}, "
            f"fingerprint={self.fingerprint!r})"
        )

    @property
    def dim(self) -> int:
        return self.query_bank.shape[1]

    def _vectors(self, X: Any, name: str, nonzero: bool = True) -> np.ndarray:
        """``X`` as checked embedding rows of the banks' dimension (see the class notes);
        ``nonzero=False`` accepts zero rows even under ``"dot"`` (stored data, see
        :meth:`gallery_stats`)."""
        return check_vectors(X, name, dim=self.dim, dim_of="the banks", nonzero=nonzero and self.similarity == "dot")

    def _gallery_keys(self, gallery_keys: Any, n: int) -> np.ndarray | None:
        if gallery_keys is None:
            return None
        keys = np.asarray(gallery_keys, dtype=np.int64)
        if keys.shape != (n,):
            raise InputError(
                f"gallery_keys must have one entry per gallery row ({n}), got shape {keys.shape}; "
                "pass the integer key of each gallery item, in gallery order."
            )
        return keys

    # -------------------------------------------------------------- similarities
    def pair_sims(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """The raw similarity of every row pair of ``A`` and ``B`` (``A @ B.T`` or :func:`neg_euclid`)."""
        if self.similarity == "neg_euclid":
            return neg_euclid(A, B)
        return A @ B.T

    def reduce(
        self,
        bank: np.ndarray,
        G: np.ndarray,
        req: Request,
        bank_keys: np.ndarray | None = None,
        gallery_keys: np.ndarray | None = None,
    ) -> Reduced:
        """The kernels' bank-by-gallery reduction under this normalizer's similarity."""
        if self.similarity == "dot":
            return self.backend.reduce_vectors(bank, G, req, bank_keys, gallery_keys)
        # neg_euclid: column blocks of the similarity matrix, reduced by the backend;
        # row top-k (activation sets) merged across blocks here
        m, n = bank.shape[0], G.shape[0]
        col_req = Request(betas=req.betas, topk=req.topk, mean=req.mean)
        kk = req.row_topk
        step = max(1, _BLOCK_ELEMS // max(m, 1), kk)
        parts: list[Reduced] = []
        rv = np.full((m, kk), -np.inf) if kk else None
        ri = np.full((m, kk), -1, dtype=np.int64) if kk else None
        bk = None if bank_keys is None else np.asarray(bank_keys, dtype=np.int64)
        for j0 in range(0, n, step):
            j1 = min(j0 + step, n)
            S = neg_euclid(bank, G[j0:j1])
            gk = None if gallery_keys is None else gallery_keys[j0:j1]
            if not col_req.is_empty():
                parts.append(self.backend.reduce_sims(S, col_req, bk, gk))
            if kk and j1 > j0:
                if bk is not None and gk is not None:
                    S[(bk[:, None] == gk[None, :]) & (bk[:, None] >= 0)] = -np.inf
                c = min(kk, j1 - j0)
                idx = np.sort(np.argpartition(-S, c - 1, axis=1)[:, :c], axis=1)  # index order: ties -> lower
                vals = np.concatenate([rv, np.take_along_axis(S, idx, axis=1)], axis=1)
                alli = np.concatenate([ri, idx + j0], axis=1)
                order = np.argsort(-vals, axis=1, kind="stable")[:, :kk]
                rv, ri = np.take_along_axis(vals, order, axis=1), np.take_along_axis(alli, order, axis=1)
        out = Reduced(lse=np.empty((len(req.betas), n)))
        if parts:
            out.lse = np.concatenate([p.lse for p in parts], axis=1)
            if req.topk:
                out.topk_mean = np.concatenate([p.topk_mean for p in parts])
            if req.mean:
                out.mean = np.concatenate([p.mean for p in parts])
        if kk:
            ri[~np.isfinite(rv)] = -1
            out.row_topk = ri
        return out

    # -------------------------------------------------------------- statistics
    def _center_gallery(self, G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Gc = G - self.mu_g
        norm = np.linalg.norm(Gc, axis=1)
        dot = G.astype(np.float64) @ self.mu_q
        Gn = (Gc / np.where(norm == 0, 1, norm)[:, None]).astype(G.dtype)
        return Gn, dot, norm

    def gallery_stats(
        self,
        gallery: np.ndarray,
        *,
        gallery_keys: np.ndarray | None = None,
        activation: bool = True,
        nonzero: bool = True,
    ) -> GalleryStats:
        """Compute the statistics of gallery items from their vectors.

        Parameters
        ----------
        gallery:
            ``(n, d)`` gallery vectors.
        gallery_keys:
            Integer keys of the gallery items; an item whose key equals a
            ``gallery_bank_keys`` entry is left out of its own gallery-bank statistics.
        activation:
            Compute the activation flags of ``dis``/``dualdis`` (top-k of each bank item
            over *this* gallery, so ``gallery`` must then be the whole gallery). Pass
            False when computing statistics page by page; fill the flags separately.
        nonzero:
            Refuse zero rows under ``"dot"`` (the default, for arrays a user passes). The
            Qdrant layer passes False for a collection's *stored* vectors: a stored zero
            vector is not refused there; its similarity to every bank item is 0, so its
            statistics are finite (and it ranks by them like any other item).
        """
        G = self._vectors(gallery, "gallery", nonzero)
        return self._stats(G, self._gallery_keys(gallery_keys, G.shape[0]), activation)[0]

    def stats_and_topk(self, gallery: np.ndarray, k: int, *, gallery_keys: np.ndarray | None = None
                       ) -> tuple[GalleryStats, np.ndarray]:
        """:meth:`gallery_stats` of a page of stored vectors (no activation flags, zero vectors
        accepted) and, from the same kernel pass over the query bank, each bank query's ``k``
        nearest of these items by the raw similarity (``(M, k)`` positions, best first; ``-1``
        where a key excluded too many). Used by the hub audit (core/audit.py): the statistics
        and the k-occurrence cost one pass instead of two. Centering needs the raw top-k on
        uncentered vectors: refused (the audit then makes its own pass)."""
        if self.params.center:
            raise InputError("stats_and_topk ranks by the raw similarity, which centering changes; call "
                             "gallery_stats and the kernels' row top-k separately.")
        G = self._vectors(gallery, "gallery", False)
        st, top = self._stats(G, self._gallery_keys(gallery_keys, G.shape[0]), False, row_topk=k)
        return st, top

    def _stats(self, G: np.ndarray, keys: np.ndarray | None, activation: bool,
               row_topk: int = 0) -> tuple[GalleryStats, np.ndarray | None]:
        """:meth:`gallery_stats` of checked vectors; ``row_topk > 0``: also the query bank's row
        top-k over ``G`` from the same pass (uncentered only; the activation flags then off)."""
        p = self.params
        n = G.shape[0]
        st = GalleryStats(n=n, fingerprint=self.fingerprint)
        if p.center:
            G, st.center_dot, st.center_norm = self._center_gallery(G)
        if p.gated and activation:
            check_k(p.k, n, "k")
        rq = p.query_bank_request()
        if not activation and rq.row_topk:
            rq = type(rq)(betas=rq.betas, topk=rq.topk, mean=rq.mean)
        if row_topk:
            rq = type(rq)(betas=rq.betas, topk=rq.topk, mean=rq.mean, row_topk=row_topk)
        top = None
        if not rq.is_empty():
            r = self.reduce(self._qb, G, rq, self.query_bank_keys, keys)
            if rq.betas:
                st.lse_q = r.lse[0]
            if row_topk:
                top = r.row_topk
            elif rq.row_topk:
                st.act_q = activation_from_topk(r.row_topk, n)
            st.topk_mean_q, st.mean_q = r.topk_mean, r.mean
        if p.method in SINKHORN:
            sol = self.uniform_solution()
            st.uniform_v = self._column_potentials(sol, G) / p.beta_q
        rg = p.gallery_bank_request()
        if not activation and rg.row_topk:
            rg = type(rg)(betas=rg.betas)
        if not rg.is_empty():
            r = self.reduce(self._gb, G, rg, self.gallery_bank_keys, keys)
            st.lse_g = r.lse[0]
            if not np.isfinite(st.lse_g).all():
                bad = int(np.count_nonzero(~np.isfinite(st.lse_g)))
                raise InputError(
                    f"the gallery bank leaves no other item for {bad} gallery item(s): every bank item was "
                    "excluded as the item itself; use a larger gallery bank (or one not sampled from the gallery)."
                )
            if rg.row_topk:
                st.act_g = activation_from_topk(r.row_topk, n)
        return st, top

    # ------------------------------------------------------------ uniform retrieval
    def uniform_solution(self):  # -> sinkhorn.SinkhornResult
        """The Sinkhorn of ``uniform``: solved once on the query bank x the gallery bank.

        The gallery bank stands for the gallery (pass a sample of the collection, or the
        gallery itself). Its bank potentials ``u(b)`` are kept; the statistic of every item
        (of the gallery bank, of the collection, page by page, or new) is then the column
        half-step ``v(g) = log(1/n_ref) - LSE_b(beta s(b, g) + u(b))``, so statistics never
        need the whole collection and new items need no re-solve. For an item of the
        gallery bank it equals the full solve's potential. Streamed over bank blocks.
        """
        if self._uniform is None:
            from .sinkhorn import sinkhorn_vectors

            p = self.params
            self._uniform = sinkhorn_vectors(self._qb, self._gb, p.beta_q, sims=self.pair_sims, n_iter=int(p.k))
            log.info(
                "uniform: Sinkhorn on %d x %d in %d iterations, row-marginal error %.2g",
                len(self._qb), len(self._gb), self._uniform.iterations, self._uniform.error,
            )
        return self._uniform

    def _column_potentials(self, sol, G: np.ndarray) -> np.ndarray:
        from .sinkhorn import column_potentials

        return column_potentials(sol.u, sol.beta, sol.n_ref, bank=self._qb, gallery=G, sims=self.pair_sims)

    def activation(
        self, gallery: np.ndarray, *, gallery_keys: np.ndarray | None = None, nonzero: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Activation flags ``(act_q, act_g)`` of a gated method over the *whole* gallery.

        The top-``k`` of each query-bank (and, for ``dualdis``, gallery-bank) item among
        ``gallery`` under this normalizer's similarity; a sampled gallery-bank item skips
        itself (``gallery_keys``). For other methods both arrays are all False.
        ``nonzero=False`` accepts zero rows (stored vectors; see :meth:`gallery_stats`).
        """
        p = self.params
        G = self._vectors(gallery, "gallery", nonzero)
        n = G.shape[0]
        keys = self._gallery_keys(gallery_keys, n)
        act_q = np.zeros(n, dtype=bool)
        act_g = np.zeros(n, dtype=bool)
        if not p.gated or n == 0:
            return act_q, act_g
        if p.center:  # the same (centered) similarity as gallery_stats
            G = self._center_gallery(G)[0]
        k = min(int(p.k), n)
        act_q = activation_from_topk(self.reduce(self._qb, G, Request(row_topk=k), self.query_bank_keys, keys).row_topk, n)
        if p.gated and p.uses_gallery_bank:
            r = self.reduce(self._gb, G, Request(row_topk=k), self.gallery_bank_keys, keys)
            act_g = activation_from_topk(r.row_topk, n)
        return act_q, act_g

    # ------------------------------------------------------------------ scoring
    def base_scores(self, Q: np.ndarray, raw: np.ndarray, stats: GalleryStats) -> np.ndarray:
        """Raw scores, or their centered-cosine counterpart when centering is on."""
        if not self.params.center:
            return raw
        if stats.center_dot is None or stats.center_norm is None:
            raise InputError("centering is on but the statistics lack center_dot/center_norm; recompute them with gallery_stats().")
        Q = np.asarray(Q, dtype=np.float64)
        q_dot = Q @ self.mu_g  # (nq,)
        q_norm = np.linalg.norm(Q - self.mu_q, axis=1)
        c = float(self.mu_q @ self.mu_g)
        num = raw - q_dot[:, None] - stats.center_dot[None, :] + c
        den = np.maximum(q_norm[:, None] * stats.center_norm[None, :], 1e-12)
        return (num / den).astype(raw.dtype, copy=False)

    def check_stats(self, stats: GalleryStats) -> None:
        """Raise if ``stats`` were computed with other banks or parameters."""
        if stats.fingerprint and stats.fingerprint != self.fingerprint:
            raise InputError(
                f"statistics fingerprint {stats.fingerprint!r} does not match this normalizer's "
                f"{self.fingerprint!r}: the banks or parameters changed; recompute the statistics."
            )

    def rerank(
        self,
        query: np.ndarray,
        raw_scores: np.ndarray,
        stats: GalleryStats,
        *,
        top1: int | None = None,
    ) -> np.ndarray:
        """Normalised scores of one query's candidates (same order as ``raw_scores``).

        ``raw_scores[j]`` is the raw score of the candidate whose statistics are
        ``stats`` row ``j``. For gated methods the gate looks at the raw top-1 item,
        which is the best raw candidate (``top1`` overrides). ``query`` (one vector) is
        needed with centering only; when given it is checked like every input vector.
        """
        self.check_stats(stats)
        raw = np.asarray(raw_scores, dtype=np.float64).reshape(1, -1)
        if raw.shape[1] != stats.n:
            raise InputError(f"got {raw.shape[1]} raw scores for {stats.n} candidates' statistics.")
        check_finite(raw, "raw_scores")
        if raw.shape[1] == 0:
            return np.empty(0)
        q = None if query is None else self._vectors(query, "query").astype(np.float64, copy=False)
        if q is not None and q.shape[0] != 1:
            raise InputError(f"rerank scores one query at a time, got {q.shape[0]} query rows; loop over them.")
        if self.params.center and q is None:
            raise InputError("centering needs the query vector; pass query=.")
        base = self.base_scores(q, raw, stats)
        # the gate of dis/dualdis looks at the *raw* top-1 item (docs/methods.md §3.2), also with centering
        t1 = np.asarray([int(np.argmax(raw[0])) if top1 is None else top1])
        return score(base, stats, self.params, top1=t1)[0]

    def scores(self, queries: np.ndarray, gallery: np.ndarray, stats: GalleryStats | None = None) -> np.ndarray:
        """The full normalised ``(n_queries, n_gallery)`` score matrix."""
        Q = self._vectors(queries, "queries")
        G = self._vectors(gallery, "gallery")
        return self._scores(Q, G, self._stats(G, None, True)[0] if stats is None else self._matching(stats, G))

    def _matching(self, stats: GalleryStats, G: np.ndarray) -> GalleryStats:
        """``stats``, checked against this normalizer and the ``G`` they should describe."""
        self.check_stats(stats)
        if stats.n != G.shape[0]:
            raise InputError(
                f"stats describe {stats.n} items but gallery has {G.shape[0]} rows; "
                "pass the statistics gallery_stats() returned for this gallery."
            )
        return stats

    def _scores(self, Q: np.ndarray, G: np.ndarray, stats: GalleryStats) -> np.ndarray:
        """:meth:`scores` of checked inputs."""
        raw = self.pair_sims(Q, G)
        # the gate of dis/dualdis looks at the *raw* top-1 item (docs/methods.md §3.2), also with centering
        top1 = np.argmax(raw, axis=1) if self.params.gated else None
        return score(self.base_scores(Q, raw, stats), stats, self.params, top1=top1)

    def search(
        self,
        queries: np.ndarray,
        gallery: np.ndarray,
        stats: GalleryStats | None = None,
        *,
        top_k: int = 10,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``top_k`` best gallery items of each query: ``(scores, ids)``, best first.

        Like FAISS's ``index.search`` and scikit-learn's ``kneighbors``: ``scores`` are the
        normalised scores (float64, ``(n_queries, top_k)``), ``ids`` the gallery row
        indices (int64, same shape); ties go to the lower index. (Before 0.2 this returned
        ``(ids, scores)``.) Queries are processed in batches so memory stays
        ``batch_size x n_gallery``.
        """
        Q = self._vectors(queries, "queries")
        G = self._vectors(gallery, "gallery")
        top_k = check_k(top_k, G.shape[0], "top_k")
        batch_size = check_int(batch_size, "batch_size", hint="it is the number of queries scored at once.")
        stats = self._stats(G, None, True)[0] if stats is None else self._matching(stats, G)
        ids = np.empty((Q.shape[0], top_k), dtype=np.int64)
        val = np.empty((Q.shape[0], top_k))
        for i0 in range(0, Q.shape[0], batch_size):
            sc = self._scores(Q[i0 : i0 + batch_size], G, stats)
            part = np.argpartition(-sc, top_k - 1, axis=1)[:, :top_k]
            pv = np.take_along_axis(sc, part, axis=1)
            order = np.lexsort((part, -pv), axis=1)
            ids[i0 : i0 + batch_size] = np.take_along_axis(part, order, axis=1)
            val[i0 : i0 + batch_size] = np.take_along_axis(pv, order, axis=1)
        return val, ids
