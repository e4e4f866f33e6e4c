"""Input checks shared by every public entry point.

Every check raises :class:`InputError` (a :class:`ValueError`) whose message names
the problem *and* what to do about it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "InputError",
    "as_matrix",
    "check_number",
    "check_int",
    "check_beta",
    "check_k",
    "check_finite",
    "check_vectors",
]


def check_finite(a: np.ndarray, name: str) -> None:
    """Raise if ``a`` holds NaN or infinite values.

    Fast path: a column sum is finite only if every summand is (NaN and inf propagate),
    and it needs no boolean temporary of ``a``'s size. Only when a sum is not finite
    (a bad value, or an overflow of huge values) is the exact element test run.
    """
    if not a.size:
        return
    if a.dtype.kind == "f":
        sums = np.add.reduce(a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1), axis=0)
        if np.isfinite(sums).all():
            return
    fin = np.isfinite(a)
    if not fin.all():
        bad = int(a.size - np.count_nonzero(fin))
        row = f" (first in row {int(np.argmin(fin.reshape(fin.shape[0], -1).all(axis=1)))})" if a.ndim > 1 else ""
        raise InputError(
            f"{name} contains {bad} NaN or infinite value(s){row}; clean or drop those rows "
            "(e.g. re-embed them or filter with numpy.isfinite) before normalising."
        )


def as_matrix(
    a: Any,
    name: str,
    *,
    ncols: int | None = None,
    ncols_of: str | None = None,
    allow_empty: bool = False,
    finite: bool = True,
) -> np.ndarray:
    """Return ``a`` as a 2-D float32/float64 array (no copy when already one).

    Integer and float16 input are promoted to float64 / float32. Raises
    :class:`InputError` for the wrong number of dimensions, a column count that does
    not match ``ncols``, an empty array, or (with ``finite``) NaN / inf.
    """
    if a is None:
        raise InputError(f"{name} is required but was None.")
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{name} must be a numeric array, got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise InputError(f"{name} must be real-valued, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be 2-D (rows x columns), got shape {arr.shape}; "
            "reshape a single vector with x[None, :]."
        )
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not allow_empty and (arr.shape[0] == 0 or arr.shape[1] == 0):
        raise InputError(
            f"{name} is empty (shape {arr.shape}); a bank or gallery needs at least one row."
        )
    if ncols is not None and arr.shape[1] != ncols:
        other = ncols_of or "the other input"
        raise InputError(
            f"{name} has {arr.shape[1]} columns but {other} has {ncols}; "
            "both must describe the same gallery (or the same embedding dimension)."
        )
    if finite:
        check_finite(arr, name)
    return arr


def check_number(
    x: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    hint: str = "",
) -> float:
    """Return ``x`` as a finite float; raise unless ``low <= x <= high`` (``low < x`` with ``low_open``).

    The one check of a float parameter (betas, weights, tolerances, learning rates):
    ``hint`` is appended to the message and should say what a good value is.
    """
    lo = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
    hi = "" if high is None else f"<= {high:g}"
    if low == 0 and low_open and high is None:
        want = "positive and finite"
    else:
        want = f"a finite number {' and '.join(w for w in (lo, hi) if w)}".rstrip()
    tail = f"; {hint}" if hint else "."
    if isinstance(x, bool):
        raise InputError(f"{name} must be {want}, got {x!r}{tail}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be {want}, got {x!r}{tail}") from None
    if (
        not math.isfinite(v)
        or (low is not None and (v <= low if low_open else v < low))
        or (high is not None and v > high)
    ):
        raise InputError(f"{name} must be {want}, got {x!r}{tail}")
    return v


def check_int(x: Any, name: str, *, low: int = 1, hint: str = "") -> int:
    """Return ``x`` as an int; raise unless it is an integer (not a bool) ``>= low``."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < low:
        tail = f"; {hint}" if hint else "."
        raise InputError(f"{name} must be an integer >= {low}, got {x!r}{tail}")
    return int(x)


def check_beta(beta: Any, name: str) -> float:
    """Return ``beta`` as a float; raise unless it is positive and finite."""
    return check_number(
        beta, name, low=0.0, low_open=True,
        hint="it is an inverse temperature (try 20 for cosine similarities, about 0.2 for CLIP-style x100 logits).",
    )


def check_k(k: Any, n: int, name: str = "k", what: str = "the gallery") -> int:
    """Return ``k`` as an int; raise unless ``1 <= k <= n``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {k!r}.")
    k = int(k)
    if k < 1:
        raise InputError(f"{name} must be at least 1, got {k}.")
    if k > n:
        raise InputError(f"{name}={k} is larger than {what} ({n} items); choose {name} <= {n}.")
    return k


def check_vectors(
    a: Any,
    name: str,
    *,
    dim: int | None = None,
    dim_of: str | None = None,
    nonzero: bool = True,
) -> np.ndarray:
    """Return ``a`` as a 2-D float array of embedding rows, or raise naming the first bad row.

    Refuses, with the index of the first offending row and the fix: a row with NaN or
    infinite values, a zero-norm row (with ``nonzero``; it has no direction, so its cosine
    with anything is undefined), and a column count other than ``dim``. A single vector
    (1-D) is taken as one row.
    """
    arr = np.asarray(a) if not isinstance(a, np.ndarray) else a
    if arr.ndim == 1:
        arr = arr[None, :]
    arr = as_matrix(arr, name, finite=False)
    if dim is not None and arr.shape[1] != dim:
        other = f" ({dim_of})" if dim_of else ""
        raise InputError(
            f"{name} has dimension {arr.shape[1]} but {dim} is expected{other}; embed it with the "
            "same model as the collection and the banks."
        )
    # fast path: one pass, no (rows x dim) temporary. A row's squared norm is finite and > 0
    # unless a value is NaN/inf, the row is all zeros, or it over/underflows; then test exactly.
    sq = np.einsum("ij,ij->i", arr, arr)
    if np.isfinite(sq).all() and (not nonzero or (sq > 0).all()):
        return arr
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise InputError(
            f"{name} row {i} contains NaN or infinite values; re-embed that input or drop it "
            "(numpy.isfinite(x).all(axis=1) finds such rows)."
        )
    if nonzero:
        zero = ~np.any(arr != 0, axis=1)
        if zero.any():
            i = int(np.argmax(zero))
            raise InputError(
                f"{name} row {i} is a zero vector (norm 0), which has no direction; re-embed that "
                "input or drop it (an empty text often embeds to zeros)."
            )
    return arr
