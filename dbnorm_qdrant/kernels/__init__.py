"""Kernels: the bank-by-gallery reductions behind every method.

Three interchangeable backends implement the :class:`Backend` protocol (the same
:class:`Request`, the same :class:`Reduced`):

- ``"numpy"`` — dense float64 reference (:mod:`.reference`), for tests and small inputs;
- ``"numba"`` — streaming, multi-threaded CPU kernels (:mod:`.numba_cpu`);
- ``"torch"`` — torch, on CUDA when available, else CPU (:mod:`.torch_backend`; optional extra).

``get_backend("auto")`` picks torch when a CUDA device is present, otherwise numba.
"""

from __future__ import annotations

import functools
import importlib
import logging
from types import ModuleType

from ..errors import InputError
from .base import Backend, Reduced, Request

__all__ = ["Backend", "Reduced", "Request", "get_backend", "available_backends", "BACKENDS"]

log = logging.getLogger(__name__)

BACKENDS = ("numpy", "numba", "torch")
_MODULES = {"numpy": ".reference", "numba": ".numba_cpu", "torch": ".torch_backend"}


@functools.lru_cache(maxsize=None)
def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(_MODULES[name], __name__)
    except ImportError as exc:  # optional dependency missing
        log.debug("backend %s unavailable: %s", name, exc)
        return None


def available_backends() -> list[str]:
    """Names of the backends that import on this machine."""
    return [b for b in BACKENDS if _load(b) is not None]


@functools.lru_cache(maxsize=None)
def _cuda_available() -> bool:
    mod = _load("torch")
    return bool(mod is not None and mod.cuda_available())


def get_backend(name: str = "auto") -> Backend:
    """Return the :class:`Backend` called ``name`` (``auto``, ``numpy``, ``numba`` or ``torch``).

    ``auto`` is torch when a CUDA device is present, else numba, else the NumPy reference.
    """
    if name == "auto":
        mod = _load("torch") if _cuda_available() else (_load("numba") or _load("numpy"))
        return mod.backend  # type: ignore[union-attr]
    if name not in _MODULES:
        raise InputError(f"unknown backend {name!r}; choose one of 'auto', {', '.join(map(repr, BACKENDS))}.")
    mod = _load(name)
    if mod is None:
        hint = 'pip install "dbnorm-qdrant[torch]"' if name == "torch" else f"pip install {name}"
        raise InputError(f"backend {name!r} is not installed; install it with {hint} or use backend='auto'.")
    return mod.backend
