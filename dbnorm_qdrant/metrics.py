"""Backward-compatible alias of :mod:`dbnorm_qdrant.eval.metrics` (the README of 0.1 named this path)."""

from .eval.metrics import *  # noqa: F401,F403
from .eval.metrics import __all__  # noqa: F401
