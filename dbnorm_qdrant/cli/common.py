"""What the commands share: loading inputs, banks and parameters, and printing results.

Every bad input raises :class:`~dbnorm_qdrant.errors.InputError` (its message names the
problem and the fix); :func:`dbnorm_qdrant.cli.main` prints it as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from typing import Any, Sequence

import numpy as np

from .._io_utils import jsonable, load_npy
from ..banks import BankSet, load_banks
from ..core.methods import Params
from ..validation import as_matrix
from ..errors import InputError
from .options import PROG

log = logging.getLogger("dbnorm_qdrant.cli")

#: metrics of the ``evaluate`` contract, in order
CONTRACT_KEYS = ("R1", "R5", "R10", "MedR", "MeanR", "k_skewness")


# ------------------------------------------------------------------------ inputs
def progress(args: argparse.Namespace, **kw: Any) -> Any:
    """A tqdm bar on stderr (disabled by ``--quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(file=sys.stderr, disable=getattr(args, "quiet", False), leave=False, **kw)


def matrix(path: str | None, what: str, *, ncols: int | None = None, of: str | None = None,
           mmap: bool = False) -> np.ndarray:
    """A 2-D real float matrix from a ``.npy`` file (memory-mapped with ``mmap``, else validated)."""
    if path is None:
        raise InputError(f"{what} is required; pass a .npy file.")
    arr = load_npy(path, what, mmap=mmap)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{what}: {path} has dtype {arr.dtype}; vectors must be a real float array "
                         "(float16/32/64).")
    if arr.ndim != 2:
        raise InputError(f"{what}: {path} has shape {arr.shape}; vectors must be 2-D (rows x dimension).")
    if ncols is not None and arr.shape[1] != ncols:
        raise InputError(f"{what}: {path} has dimension {arr.shape[1]} but {of} has {ncols}; "
                         "use vectors from the same embedding model.")
    if mmap:
        return arr
    return as_matrix(arr, f"{what} ({path})")


def ground_truth(path: str | None, n_queries: int) -> np.ndarray | None:
    """``--gt``: one integer gallery index per query, or a boolean mask; ``None`` when not given."""
    if path is None:
        return None
    gt = load_npy(path, "--gt")
    if gt.dtype == bool:
        return gt
    if not np.issubdtype(gt.dtype, np.integer):
        raise InputError(f"--gt: {path} has dtype {gt.dtype}; pass integer gallery indices (one per query) "
                         "or a boolean mask.")
    if gt.ndim != 1 or len(gt) != n_queries:
        raise InputError(f"--gt: {path} has shape {gt.shape}; pass one gallery index per query ({n_queries}).")
    return gt


def point_ids(path: str | None, n_queries: int) -> list[Any]:
    """``--gt`` through Qdrant: one point id per query (default: the identity)."""
    if path is None:
        return list(range(n_queries))
    gt = load_npy(path, "--gt").tolist()
    if not isinstance(gt, list) or len(gt) != n_queries:
        raise InputError(f"--gt: {path} holds {len(gt) if isinstance(gt, list) else 'no list of'} entries for "
                         f"{n_queries} queries; pass one point id per query.")
    return gt


# ------------------------------------------------------------------------- banks
def banks(args: argparse.Namespace, dim: int | None = None, *,
          required: bool = True) -> tuple[BankSet | None, Params | None, bool]:
    """(BankSet, stored Params or None, paired) from ``--banks`` or ``--query-bank``/``--gallery-bank``."""
    if getattr(args, "banks", None):
        if getattr(args, "query_bank", None) or getattr(args, "gallery_bank", None):
            raise InputError("give either --banks or --query-bank/--gallery-bank, not both.")
        bank_set, stored, meta = load_banks(args.banks)
        if dim is not None and bank_set.dim != dim:
            raise InputError(f"--banks: the banks in {args.banks} have dimension {bank_set.dim}, but the vectors "
                             f"have {dim}; use banks embedded with the same model.")
        paired = bool(meta.get("paired", False))
    else:
        if not getattr(args, "query_bank", None):
            if not required:
                return None, None, False
            raise InputError("banks are required: pass --query-bank QB.npy [--gallery-bank GB.npy] or --banks FILE.npz.")
        qb = matrix(args.query_bank, "--query-bank", ncols=dim, of="the queries")
        gb = None
        if getattr(args, "gallery_bank", None):
            gb = matrix(args.gallery_bank, "--gallery-bank", ncols=qb.shape[1], of="--query-bank")
        bank_set, stored = BankSet.from_arrays(qb, gb), None
        paired = gb is not None and len(gb) == len(qb)
    flag = getattr(args, "paired", None)
    if flag is not None:
        paired = flag
    return bank_set, stored, paired


def check_dim(bank_set: BankSet, size: int, collection: str) -> None:
    """Refuse banks whose dimension is not the collection's vector size."""
    if bank_set.dim != size:
        raise InputError(f"the banks have dimension {bank_set.dim} but collection {collection!r} has size {size}; "
                         "use banks embedded with the collection's model.")


def explicit_params(args: argparse.Namespace) -> dict[str, Any]:
    """The method parameters given on the command line (``--beta-q`` ... ``--center``)."""
    kw: dict[str, Any] = {}
    for name in ("beta_q", "beta_g", "k", "alpha"):
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = v
    if getattr(args, "center", False):
        kw["center"] = True
    return kw


def check_method(args: argparse.Namespace) -> None:
    """Validate ``--method`` with its parameters before any work (tuning or I/O)."""
    method = getattr(args, "method", None)
    if method not in (None, "auto"):
        Params(method=method, **explicit_params(args))


def params(args: argparse.Namespace, bank_set: BankSet, stored: Params | None, paired: bool) -> tuple[Params, Any]:
    """The Params to use and the TuneResult (or None): explicit method, stored params, or tuning."""
    from ..core.tuning import tune

    method = getattr(args, "method", None)
    extra = explicit_params(args)
    if method is None and stored is not None:
        return (stored.with_(**extra) if extra else stored), None
    method = method or "auto"
    if method == "auto":
        if extra:
            log.warning("--method auto chooses betas, k, alpha and centering itself; ignoring %s", sorted(extra))
        log.info("tuning on the banks (%s, %d query-bank rows)...", "paired" if paired else "unpaired",
                 len(bank_set.query_bank))
        t0 = time.perf_counter()
        res = tune(bank_set.query_bank, bank_set.gallery_bank, paired=paired, seed=getattr(args, "seed", 0))
        log.info("%s [%.1fs]", res.reason, time.perf_counter() - t0)
        return res.params, res
    return Params(method=method, **extra), None


def method_name(p: Params) -> str:
    """``"dualis + centering"``: the method as a table shows it (the README quotes this label)."""
    return f"{p.method}{' + centering' if p.center else ''}"


# ------------------------------------------------------------------------ output
def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str], left: Sequence[int] = (0,)) -> None:
    """A plain-text table: the columns ``left`` (default the first) left-aligned, the others right."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


def fmt(x: Any, spec: str = "{:.2f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return spec.format(x)


def contract(m: dict[str, Any], p: Params) -> dict[str, Any]:
    """The ``evaluate`` contract of one retrieval: :data:`CONTRACT_KEYS` and the params used."""
    out = {k: m.get(k) for k in CONTRACT_KEYS}
    out["params"] = p.to_dict()
    return out


def print_runs(runs: Sequence[Any], hub_k: int) -> None:
    """The table of a report's retrievals (recall, hubness, the largest k-occurrence)."""
    rows = []
    for r in runs:
        m = r.metrics
        rows.append([r.name, fmt(m.get("R1")), fmt(m.get("R5")), fmt(m.get("R10")), fmt(m.get("k_skewness"), "{:.3f}"),
                     fmt(m.get("robin_hood"), "{:.3f}"), fmt(m.get("antihub_rate"), "{:.1%}"),
                     str(int(np.max(r.occurrence)))])
    print_table(rows, ["retrieval", "R@1", "R@5", "R@10", "k-skew", "Robin Hood", "antihubs", f"max N{hub_k}"])


__all__ = ["PROG", "CONTRACT_KEYS", "progress", "matrix", "ground_truth", "point_ids", "banks", "check_dim", "explicit_params",
           "check_method", "params", "method_name", "emit_json", "print_table", "fmt", "contract", "print_runs"]
