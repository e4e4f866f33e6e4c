"""The optional torch import of the adapter (the ``torch`` extra), in one place."""

from __future__ import annotations

try:  # optional extra
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - exercised without torch
    torch = None  # type: ignore[assignment]
    F = None  # type: ignore[assignment]
    nn = None  # type: ignore[assignment]

__all__ = ["torch", "F", "nn", "need_torch"]


def need_torch() -> None:
    """Raise :class:`ImportError` with the install command when torch is missing."""
    if torch is None:
        raise ImportError("the adapter needs torch: pip install 'dbnorm-qdrant[torch]'")
