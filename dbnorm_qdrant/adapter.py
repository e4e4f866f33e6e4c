"""Backward-compatible alias of :mod:`dbnorm_qdrant.experimental.adapter` (the README of 0.1 named this path)."""

from .experimental.adapter import *  # noqa: F401,F403
from .experimental.adapter import __all__  # noqa: F401
