"""The index form of a per-item-bias method: the normalised score as one inner product.

For a method whose correction is a per-item bias (docs/methods.md §3.6; every method of
:data:`~.spec.ADDITIVE` without centering) the normalised score of a query ``q`` and an
item ``g`` is ``s(q, g) - bias(g)``. With ``s`` the dot product of the vectors as the
collection scores them (unit-normalised for Cosine)::

    s(q, g) - bias(g) = <[q, 1], [g, -bias(g)]>

so a maximum-inner-product search over the ``d + 1``-dimensional *index rows*
``[g, -bias(g)]`` with the *index query* ``[q, 1]`` returns the normalised ranking over
the whole collection, with the normalised score itself. ``bias`` is
:func:`~.scoring.bias`, already in the similarity's units (the inverse temperatures are
inside it). For the gated methods (``dis``, ``dualdis``) the same rows, gates taken open,
give the ``is`` / ``dualis`` ordering: a candidate generator, not the method itself.
Centering makes the score non-linear in ``s``: no index form.
"""

from __future__ import annotations

import math

import hashlib

import numpy as np

from ..errors import InputError
from .params import Params
from .scoring import bias
from .stats import GalleryStats

__all__ = ["INDEX_PREFIX", "index_name", "index_form", "index_rows", "index_query", "bias_of_row"]

#: prefix of every index vector name the layer writes (``_dbnorm_<short fingerprint>``)
INDEX_PREFIX = "_dbnorm_"
#: distances whose similarity is an inner product of (possibly normalised) vectors
_INDEXABLE = ("Cosine", "Dot")


def index_name(fingerprint: str, using: str | None = None) -> str:
    """The named vector holding the index rows of one normaliser (``fingerprint``) for the
    source vector ``using``: ``_dbnorm_`` + 12 hex digits (the fingerprint itself for the
    unnamed vector, so it reads like the statistics' ``fp``)."""
    if using:
        fingerprint = hashlib.blake2b(f"{fingerprint}|{using}".encode(), digest_size=6).hexdigest()
    return INDEX_PREFIX + fingerprint[:12]


def index_form(p: Params, distance: str = "Cosine") -> str:
    """``"exact"`` (the index search is the method), ``"candidates"`` (``dis``/``dualdis``:
    the index gives the open-gate ordering, the method reranks it), or an
    :class:`InputError` when there is no index form (centering; a distance that is not an
    inner product)."""
    if p.center:
        raise InputError(
            "centering (center=True) makes the normalised score non-linear in the raw similarity, so it has no "
            "index vector; use center=False, or the rerank path (mode='client')."
        )
    if distance not in _INDEXABLE:
        raise InputError(
            f"the {distance} distance is not an inner product, so the normalised score has no index vector; "
            "index mode needs a Cosine or Dot collection (use mode='client' or 'server' here)."
        )
    return "candidates" if p.gated else "exact"


def _unit(X: np.ndarray, what: str) -> np.ndarray:
    n = np.linalg.norm(X, axis=1, keepdims=True)
    bad = np.flatnonzero(n[:, 0] == 0)
    if bad.size:
        raise InputError(f"{what} row {int(bad[0])} is a zero vector: it has no direction under Cosine, so it "
                         "cannot be normalised; remove or replace it.")
    return X / n


def index_rows(G: np.ndarray, stats: GalleryStats, p: Params, *, unit: bool = True) -> np.ndarray:
    """The float32 index rows ``[g, -bias(g)]`` (``g`` unit-normalised when ``unit``, as a
    Cosine collection scores it) of the items ``G`` with statistics ``stats``.

    Refused (:func:`index_form`): centering. A zero row under ``unit`` is refused too.
    """
    index_form(p)
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or len(G) != stats.n:
        raise InputError(f"index_rows needs one statistics row per vector: {G.shape} vectors, {stats.n} statistics.")
    out = np.empty((len(G), G.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = _unit(G, "gallery") if unit else G
    out[:, -1] = -bias(stats, p)
    return out


def index_query(q: np.ndarray | list[float], *, unit: bool = True) -> list[float]:
    """The index query ``[q, 1]`` (``q`` unit-normalised when ``unit``) as a list of floats.

    A list already of unit norm within 1e-6 (a float32 embedding normalised by its model is
    within ~1e-7) is sent as it is: every score moves by less than 1e-6 relative, below the
    engine's float32 rounding of 384 products, and the query skips two array conversions."""
    if type(q) is list and unit:
        n = math.hypot(*q)
        if abs(n - 1.0) <= 1e-6:
            return [*q, 1.0]
    a = np.asarray(q, dtype=np.float64).ravel()
    if unit:
        n = float(np.sqrt(a @ a))
        if n == 0.0:
            _unit(a.reshape(1, -1), "query")  # raises, naming the fix
        a = a / n
    out = a.tolist()
    out.append(1.0)
    return out


def bias_of_row(row: np.ndarray | list[float]) -> float:
    """The bias an index row holds (its last component is ``-bias``)."""
    return -float(row[-1])
