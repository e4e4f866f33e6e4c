"""The package's one error type.

Every error raised on bad input is an :class:`InputError` (a :class:`ValueError`), and
its message names the problem *and* the fix.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input to a dbnorm_qdrant function (shape, dtype, values, parameters or files)."""
