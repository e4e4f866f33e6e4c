"""Bank sets: the query bank, the gallery bank, and where they come from.

A :class:`BankSet` holds the two banks (and, for a gallery bank sampled from the
indexed collection itself, the int64 keys of the sampled points so an item never
counts itself). Sources: arrays, ``.npy`` files (``allow_pickle=False``), and the
collection helpers of :mod:`dbnorm_qdrant.qdrant.sources`.

The bank file (:func:`save_banks` / :func:`load_banks`, at the bottom) stores a bank set,
optional method parameters and metadata in one ``.npz`` archive with a format version.

The fingerprint of the statistics is :attr:`BankNormalizer.fingerprint` (a hash of the
bank contents, the gallery-bank keys and the method parameters).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np

from .core.centering import unit_rows
from .core.params import Params, as_params
from .core.normalizer import BankNormalizer
from .errors import InputError
from .validation import as_matrix
from ._io_utils import atomic_path, sniff
from ._io_utils import load_npy as _load_npy

__all__ = ["BankSet", "BankFile", "save_banks", "load_banks", "BANK_FORMAT_VERSION"]


@dataclass(frozen=True)
class BankSet:
    """A query bank, an optional gallery bank, and the gallery bank's point keys (if sampled).

    Build one with :meth:`from_arrays`, :meth:`from_npy`, or the collection helpers, then
    :meth:`normalizer` turns it into a :class:`BankNormalizer` for a method.

    Attributes
    ----------
    query_bank, gallery_bank:
        ``(m, d)`` and ``(n, d)`` float arrays (the gallery bank is optional).
    gallery_bank_keys:
        ``(n,)`` int64 keys of the gallery-bank rows when they were sampled from the indexed
        collection (``-1``: no key), so that an item never counts itself; the same name as
        :class:`BankNormalizer`'s. (The keys of the gallery items being scored are
        ``gallery_keys`` in :meth:`BankNormalizer.gallery_stats`.)
    query_bank_keys:
        ``(m,)`` int64 keys of the query-bank rows when they too were sampled from the
        collection (pseudo-queries of a cold start, docs/lifecycle.md), with the same effect.
    """

    query_bank: np.ndarray
    gallery_bank: np.ndarray | None = None
    gallery_bank_keys: np.ndarray | None = None
    query_bank_keys: np.ndarray | None = None

    def __post_init__(self) -> None:
        qb = as_matrix(self.query_bank, "query_bank")
        object.__setattr__(self, "query_bank", qb)
        if self.gallery_bank is not None:
            object.__setattr__(
                self, "gallery_bank", as_matrix(self.gallery_bank, "gallery_bank", ncols=qb.shape[1], ncols_of="query_bank")
            )
        if self.gallery_bank_keys is not None:
            keys = np.asarray(self.gallery_bank_keys, dtype=np.int64)
            if self.gallery_bank is None or keys.shape != (len(self.gallery_bank),):
                raise InputError(
                    "gallery_bank_keys must have one key per gallery_bank row; pass the point key of each "
                    "sampled row (or none when the gallery bank is not a sample of the collection)."
                )
            object.__setattr__(self, "gallery_bank_keys", keys)
        if self.query_bank_keys is not None:
            qk = np.asarray(self.query_bank_keys, dtype=np.int64)
            if qk.shape != (len(qb),):
                raise InputError(
                    "query_bank_keys must have one key per query_bank row; pass the point key of each row sampled "
                    "from the collection (or none when the query bank is not a sample of it)."
                )
            object.__setattr__(self, "query_bank_keys", qk)

    @property
    def dim(self) -> int:
        return int(self.query_bank.shape[1])

    @classmethod
    def from_arrays(cls, query_bank: Any, gallery_bank: Any = None, gallery_bank_keys: Any = None,
                    query_bank_keys: Any = None) -> "BankSet":
        """Banks from array-likes (checked and converted like every input)."""
        return cls(
            np.asarray(query_bank), None if gallery_bank is None else np.asarray(gallery_bank), gallery_bank_keys,
            query_bank_keys,
        )

    @classmethod
    def from_npy(
        cls, query_bank: str | PathLike[str], gallery_bank: str | PathLike[str] | None = None
    ) -> "BankSet":
        """Banks from ``.npy`` files (loaded with ``allow_pickle=False``)."""
        qb = _load_npy(query_bank, "query_bank")
        gb = None if gallery_bank is None else _load_npy(gallery_bank, "gallery_bank")
        return cls(qb, gb)

    def with_gallery(self, gallery: "BankSet | np.ndarray", gallery_bank_keys: Any = None) -> "BankSet":
        """This query bank with another gallery bank (e.g. one sampled from the collection)."""
        if isinstance(gallery, BankSet):
            gallery, gallery_bank_keys = gallery.gallery_bank, gallery.gallery_bank_keys
        return BankSet(self.query_bank, gallery, gallery_bank_keys, self.query_bank_keys)

    def normalizer(
        self, params: Params | Mapping[str, Any] | None = None, *, unit: bool = False, backend: str = "auto", similarity: str = "dot",
        **kw: Any,
    ) -> BankNormalizer:
        """A :class:`BankNormalizer` over these banks (rows scaled to unit norm with ``unit``,
        as a cosine collection needs; ``similarity="neg_euclid"`` for a Euclid collection)."""
        qb, gb = self.query_bank, self.gallery_bank
        if unit:
            qb = unit_rows(qb).astype(qb.dtype)
            gb = None if gb is None else unit_rows(gb).astype(gb.dtype)
        if params is not None and kw:
            raise InputError(f"pass params= or the Params fields ({', '.join(sorted(kw))}) as keywords, not both.")
        params = as_params(params, "params") if params is not None else as_params(kw, "BankSet.normalizer keywords")
        return BankNormalizer(
            qb, gb, params=params, gallery_bank_keys=self.gallery_bank_keys, query_bank_keys=self.query_bank_keys,
            backend=backend, similarity=similarity,
        )


# ===================================================================== the bank file
#: version of the bank-file layout written by :func:`save_banks`; files without one are version 1
BANK_FORMAT_VERSION = 1
_FIX = "rebuild it with save_banks() or `dbnorm-qdrant bank build`"


class BankFile(NamedTuple):
    """What a bank file holds: the banks, the stored parameters (or ``None``) and metadata."""

    banks: BankSet
    params: Params | None
    meta: dict[str, Any]


def save_banks(
    path: str | PathLike[str],
    banks: BankSet,
    *,
    params: Params | Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``banks`` (and optionally method ``params`` and JSON-able ``meta``) to a bank file.

    The file is an uncompressed ``.npz`` archive, read back with :func:`load_banks`:

    ``format_version``  0-d int64, :data:`BANK_FORMAT_VERSION`
    ``query_bank``      (m, d) float array
    ``gallery_bank``    (n, d) float array (absent when the set has none)
    ``gallery_keys``    (n,) int64 :attr:`BankSet.gallery_bank_keys` (a gallery bank sampled from a collection; optional)
    ``query_keys``      (m,) int64 :attr:`BankSet.query_bank_keys` (a query bank sampled from a collection; optional)
    ``params``          0-d string, JSON of :meth:`Params.to_dict` (optional)
    ``meta``            0-d string, JSON object (e.g. ``paired``, provenance)

    Nothing but numbers and strings is stored, so loading never unpickles. The file is
    written to a temporary name in the same folder and renamed when complete.
    Returns the path written (``path`` itself; no suffix is added).
    """
    if not isinstance(banks, BankSet):
        raise InputError(f"save_banks needs a BankSet, got {type(banks).__name__}; build one with BankSet.from_arrays.")
    if params is not None:
        params = as_params(params, "save_banks params")
    arrays: dict[str, np.ndarray] = {"format_version": np.array(BANK_FORMAT_VERSION, dtype=np.int64),
                                     "query_bank": banks.query_bank}
    if banks.gallery_bank is not None:
        arrays["gallery_bank"] = banks.gallery_bank
    if banks.gallery_bank_keys is not None:
        arrays["gallery_keys"] = banks.gallery_bank_keys
    if banks.query_bank_keys is not None:
        arrays["query_keys"] = banks.query_bank_keys
    if params is not None:
        arrays["params"] = np.array(json.dumps(params.to_dict()))
    try:
        arrays["meta"] = np.array(json.dumps(dict(meta or {})))
    except TypeError as exc:
        raise InputError(f"bank-file meta must be JSON-serialisable ({exc}); pass plain str/number/list/dict values.") from None
    path = Path(path)
    with atomic_path(path, "bank file") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def load_banks(path: str | PathLike[str]) -> BankFile:
    """Read a bank file written by :func:`save_banks` (or by the 0.1 command line).

    Returns a :class:`BankFile` ``(banks, params, meta)``; unpack it or use the fields.
    Raises :class:`InputError`, naming the file and the fix, for a missing, corrupt,
    truncated or foreign file, pickled contents, a newer format version, or banks that
    fail :class:`BankSet`'s checks.
    """
    p = Path(path)
    data = _read_archive(p)
    version = _format_version(p, data.get("format_version"))
    if version > BANK_FORMAT_VERSION:
        raise InputError(f"bank file {p} has format version {version}, newer than this dbnorm-qdrant reads "
                         f"(up to {BANK_FORMAT_VERSION}); upgrade dbnorm-qdrant, or {_FIX}.")
    if "query_bank" not in data:
        raise InputError(f"bank file {p} has no 'query_bank' array (it holds {sorted(data)}); {_FIX}.")
    meta = _json_field(p, data, "meta") or {}
    if not isinstance(meta, dict):
        raise InputError(f"bank file {p}: 'meta' is not a JSON object; {_FIX}.")
    stored = _json_field(p, data, "params")
    try:
        params = None if stored is None else as_params(stored, "stored params")
        banks = BankSet.from_arrays(data["query_bank"], data.get("gallery_bank"), data.get("gallery_keys"),
                                    data.get("query_keys"))
    except (InputError, TypeError) as exc:
        raise InputError(f"bank file {p}: {exc}".rstrip(".") + f"; {_FIX}.") from None
    return BankFile(banks, params, meta)


def _read_archive(p: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``p``; one clear error per way it can be wrong."""
    if not p.exists():
        raise InputError(f"bank file {p} does not exist; build one with save_banks() or `dbnorm-qdrant bank build`.")
    if p.is_dir():
        raise InputError(f"bank file {p} is a folder; pass the .npz file written by save_banks() or `bank build`.")
    try:
        kind = sniff(p)
    except OSError as exc:
        raise InputError(f"cannot read bank file {p} ({exc.strerror}); check its permissions.") from None
    if kind == "npy":
        raise InputError(f"{p} is a single .npy array, not a bank file; pass it as --query-bank/--gallery-bank, "
                         f"or {_FIX}.")
    if kind == "pickle":
        raise InputError(f"{p} holds pickled objects, which are never loaded; {_FIX}.")
    if kind != "npz":
        what = "it is empty" if kind == "empty" else "it is not an .npz archive"
        raise InputError(f"{p} is not a bank file ({what}); {_FIX}.")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise InputError(f"bank file {p} holds pickled objects, which are never loaded; {_FIX}.") from None
        raise InputError(f"bank file {p} is corrupt ({exc}); {_FIX}.") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise InputError(f"bank file {p} is corrupt or truncated ({type(exc).__name__}: {exc}); {_FIX}.") from None


def _format_version(p: Path, raw: np.ndarray | None) -> int:
    if raw is None:
        return 1  # files of dbnorm-qdrant 0.1 carry no version
    if raw.shape != () or not np.issubdtype(raw.dtype, np.integer):
        raise InputError(f"bank file {p}: 'format_version' is not an integer; {_FIX}.")
    return int(raw)


def _json_field(p: Path, data: Mapping[str, np.ndarray], key: str) -> Any:
    if key not in data:
        return None
    try:
        return json.loads(str(data[key].item()))
    except (ValueError, TypeError) as exc:
        raise InputError(f"bank file {p}: '{key}' is not valid JSON ({exc}); {_FIX}.") from None
