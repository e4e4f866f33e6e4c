"""The method and its parameters, validated once (:class:`Params`).

What each method reads, and what its ``k`` and ``alpha`` mean, come from the one table in
:mod:`.spec`; the formulas that use them are in :mod:`.scoring` (docs/methods.md §3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from ..kernels import Request
from .spec import ADDITIVE, DUAL, GATED, METHODS, NEIGHBOUR_K, SINKHORN, SPECS
from ..errors import InputError
from ..validation import check_beta, check_int, check_number

__all__ = ["Params", "as_params", "DEFAULT_BETA_Q", "DEFAULT_BETA_G"]

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
        The method's own neighbourhood size (never a result count: that is ``top_k``):
        ``dis`` / ``dualdis``: top-k of each bank item that forms the activation set
        (default 1). ``csls`` / ``nnn``: query-bank neighbours averaged (default 10 / 128).
        ``uniform``: its iteration budget, the maximum Sinkhorn iterations (default 50;
        1 = inverted softmax). ``SPECS[method].k_meaning`` says the same per method.
    alpha:
        The weight of the bias term: ``nnn`` (default 0.75), ``centrality`` (0.5) and
        ``uniform`` (0.5; there it is the damping lambda, in [0, 1]). Unused by the others.
    center:
        Center both sides on their bank means before normalising (vector level only;
        docs/methods.md §3.5).
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
        spec = SPECS[m]
        if self.k is None:
            object.__setattr__(self, "k", spec.default_k)
        else:
            hint = f"for {m!r} it is the {spec.k_meaning or 'unused k'}."
            object.__setattr__(self, "k", check_int(self.k, "k", hint=hint))
        if self.alpha is None:
            object.__setattr__(self, "alpha", spec.default_alpha)
        else:
            # the damping lambda of uniform is a share, in [0, 1]
            hint = f"for {m!r} it is the {spec.alpha_meaning or 'unused alpha'}."
            a = check_number(self.alpha, "alpha", low=0.0, high=1.0 if m in SINKHORN else None, hint=hint)
            object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "center", bool(self.center))

    # what each method needs: read from the spec table ------------------------------------
    @property
    def uses_query_bank(self) -> bool:
        return SPECS[self.method].uses_query_bank

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

    @property
    def k_counts_neighbours(self) -> bool:
        """``k`` is a number of query-bank neighbours (so it cannot exceed the query bank)."""
        return self.method in NEIGHBOUR_K

    def query_bank_request(self) -> Request:
        """The kernel reductions over the query bank that this method's statistics need."""
        fields = SPECS[self.method].bias_fields
        if "lse_q" in fields:
            return Request(betas=(self.beta_q,), row_topk=self.k if self.gated else 0)
        if "topk_mean_q" in fields:
            return Request(topk=int(self.k))
        if "mean_q" in fields:
            return Request(mean=True)
        return Request()  # none; uniform (a Sinkhorn solve, not a reduction)

    def gallery_bank_request(self) -> Request:
        """The kernel reductions over the gallery bank."""
        if self.uses_gallery_bank:
            return Request(betas=(self.beta_g,), row_topk=self.k if self.gated else 0)
        return Request()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly), e.g. for reports and fingerprints."""
        return asdict(self)

    @classmethod
    def coerce(cls, params: Any, what: str = "params") -> "Params":
        """``params`` as a :class:`Params`: see :func:`as_params`."""
        return as_params(params, what)

    def with_(self, **changes: Any) -> "Params":
        """A copy with some fields changed (``k`` / ``alpha`` re-resolved when the method changes)."""
        if "method" in changes and changes["method"] != self.method:
            changes.setdefault("k", None)
            changes.setdefault("alpha", None)
        return replace(self, **changes)


def as_params(params: Any, what: str = "params") -> Params:
    """``params`` (a :class:`Params`, a dict of its fields, or ``None``: the defaults) as a
    :class:`Params`: the one conversion every entry point uses. An unknown field name, an
    unknown method or a bad value is an :class:`InputError` (``what`` names the argument)."""
    if params is None:
        return Params()
    if isinstance(params, Params):
        return params
    if isinstance(params, Mapping):
        names = [f.name for f in fields(Params)]
        unknown = sorted(str(k) for k in params if k not in names)
        if unknown:
            raise InputError(f"{what}: unknown field(s) {unknown}; the fields are {', '.join(names)}.")
        return Params(**params)
    raise InputError(f"{what} must be a Params or a dict of its fields, got {type(params).__name__}.")
