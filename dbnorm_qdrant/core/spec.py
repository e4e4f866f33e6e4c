"""One table of the methods: their parameters, the statistics they need, the shape of their correction.

Every other module asks this table instead of keeping its own copy of "which method needs
what" (the statistics fields a method reads, whether its bias depends on the gallery item
alone, which banks it uses, what its ``k`` and ``alpha`` mean). The formulas themselves live
in :mod:`dbnorm_qdrant.core.scoring`; ``docs/methods.md`` §3 explains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "MethodSpec",
    "SPECS",
    "METHODS",
    "GATED",
    "DUAL",
    "ADDITIVE",
    "NEIGHBOUR_K",
    "SINKHORN",
    "GATE_FIELDS",
    "CENTER_FIELDS",
    "stat_fields",
]


@dataclass(frozen=True)
class MethodSpec:
    """What one method needs and how its correction is shaped.

    Attributes
    ----------
    name:
        The method's name, as :class:`~dbnorm_qdrant.core.methods.Params` takes it.
    bias_fields:
        The :class:`~dbnorm_qdrant.core.stats.GalleryStats` fields its per-item bias reads.
    gated:
        The correction is switched on per query (DIS, DualDIS): it also needs the
        activation flags (:data:`GATE_FIELDS`) and is not a per-item bias.
    uses_gallery_bank:
        It reads the gallery bank (DualIS, DualDIS); every method but ``none`` reads the
        query bank.
    k_meaning, alpha_meaning:
        What ``k`` and ``alpha`` mean for this method (``""``: not used). ``k`` is always
        the method's own neighbourhood size (or, for ``uniform``, its iteration budget),
        never a result count (that is ``top_k``); ``alpha`` is always the weight of the
        bias term.
    default_k, default_alpha:
        Their defaults.
    """

    name: str
    bias_fields: tuple[str, ...]
    gated: bool = False
    uses_gallery_bank: bool = False
    k_meaning: str = ""
    default_k: int = 1
    alpha_meaning: str = ""
    default_alpha: float = 1.0

    @property
    def per_item_bias(self) -> bool:
        """The normalised score is ``s(q, g) - bias(g)`` for every query (no gate)."""
        return not self.gated

    @property
    def uses_query_bank(self) -> bool:
        return self.name != "none"


_ACTIVATION = "top-k of each bank item forming the activation set"
_NEIGHBOURS = "query-bank neighbours averaged per gallery item"
_WEIGHT = "weight of the bias term"

SPECS: Mapping[str, MethodSpec] = MappingProxyType({
    s.name: s
    for s in (
        MethodSpec("none", ()),
        MethodSpec("is", ("lse_q",)),
        MethodSpec("dis", ("lse_q",), gated=True, k_meaning=_ACTIVATION),
        MethodSpec("dualis", ("lse_q", "lse_g"), uses_gallery_bank=True),
        MethodSpec("dualdis", ("lse_q", "lse_g"), gated=True, uses_gallery_bank=True, k_meaning=_ACTIVATION),
        MethodSpec("csls", ("topk_mean_q",), k_meaning=_NEIGHBOURS, default_k=10),
        MethodSpec("nnn", ("topk_mean_q",), k_meaning=_NEIGHBOURS, default_k=128,
                   alpha_meaning=_WEIGHT, default_alpha=0.75),
        MethodSpec("centrality", ("mean_q",), alpha_meaning=_WEIGHT, default_alpha=0.5),
        # ``k`` of uniform stays the Sinkhorn budget rather than a field of its own: Params is
        # hashed into the statistics' fingerprint, and a new field would change every stored one.
        MethodSpec("uniform", ("uniform_v",), k_meaning="maximum Sinkhorn iterations (1 = inverted softmax)",
                   default_k=50, alpha_meaning=_WEIGHT + ": the damping lambda, in [0, 1]", default_alpha=0.5),
    )
})

#: every method name, in a stable order
METHODS: tuple[str, ...] = tuple(SPECS)
GATED = frozenset(n for n, s in SPECS.items() if s.gated)
DUAL = frozenset(n for n, s in SPECS.items() if s.uses_gallery_bank)
ADDITIVE = frozenset(n for n, s in SPECS.items() if s.per_item_bias)
#: methods whose ``k`` counts query-bank neighbours (so ``k`` <= the query bank's size)
NEIGHBOUR_K = frozenset(n for n, s in SPECS.items() if "topk_mean_q" in s.bias_fields)
#: methods whose statistic comes from a Sinkhorn solve, not from a kernel reduction
SINKHORN = frozenset(n for n, s in SPECS.items() if "uniform_v" in s.bias_fields)
#: activation flags of the gated methods (query bank, gallery bank)
GATE_FIELDS: tuple[str, ...] = ("act_q", "act_g")
#: the two per-item numbers that turn a raw score into the centered one
CENTER_FIELDS: tuple[str, ...] = ("center_dot", "center_norm")


def stat_fields(method: str, *, center: bool = False, gates: bool = True) -> tuple[str, ...]:
    """The statistics fields ``method`` reads per gallery item.

    ``center`` adds :data:`CENTER_FIELDS`; ``gates=False`` leaves out the activation flags
    (the float statistics only, e.g. for a cache column or a payload formula).
    """
    s = SPECS[method]
    out = list(s.bias_fields)
    if s.gated and gates:
        out += ["act_q"] + (["act_g"] if s.uses_gallery_bank else [])
    if center:
        out += list(CENTER_FIELDS)
    return tuple(out)
