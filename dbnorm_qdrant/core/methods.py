"""The methods' public names in one import: parameters, scoring and the matrix API.

The code lives where the data flow puts it (docs/methods.md §3):

- :mod:`.spec`: the one table of what each method needs and what its ``k``/``alpha`` mean;
- :mod:`.params`: :class:`Params`, a validated method and its parameters;
- :mod:`.scoring`: :func:`bias`, :func:`gates`, :func:`score` (log-domain) and
  :func:`faithful` (the official code's values), from :class:`~.stats.GalleryStats`;
- :mod:`.matrix`: :func:`normalize`, :func:`stats_from_sims` and
  :func:`uniform_potentials`, from similarity matrices.

``from dbnorm_qdrant.core.methods import Params, score, bias, stats_from_sims`` keeps working.
"""

from __future__ import annotations

from .matrix import activation_from_topk, normalize, stats_from_sims, uniform_potentials
from .params import DEFAULT_BETA_G, DEFAULT_BETA_Q, Params
from .scoring import bias, faithful, gates, score
from .spec import METHODS

__all__ = [
    "METHODS",
    "DEFAULT_BETA_Q",
    "DEFAULT_BETA_G",
    "Params",
    "normalize",
    "bias",
    "gates",
    "score",
    "faithful",
    "stats_from_sims",
    "uniform_potentials",
    "activation_from_topk",
]
