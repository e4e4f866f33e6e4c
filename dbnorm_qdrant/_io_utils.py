"""File helpers shared by the bank file, the report and the command line.

- :func:`load_npy`: a ``.npy`` array, never unpickled, with one :class:`InputError` per
  usual mistake (missing file, folder, text file, pickled objects, ``.npz`` archive).
- :func:`sniff`: what kind of file a path holds, from its first bytes.
- :func:`check_writable`: refuse an output path that cannot be written *before* any work.
- :func:`atomic_path` / :func:`write_files`: write to a temporary file in the target
  folder, then rename; on failure nothing is left behind (not even the folders made for it).
- :func:`jsonable` and :func:`short`: JSON-safe values and one-line labels.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .errors import InputError

__all__ = ["load_npy", "sniff", "check_writable", "missing_dirs", "atomic_path", "write_files", "jsonable", "short"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"  # pickle protocol >= 2 starts with PROTO


def sniff(path: Path) -> str:
    """``"npy"``, ``"npz"``, ``"pickle"``, ``"empty"`` or ``"other"``, from the first bytes of ``path``."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "empty"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if head.startswith(_PICKLE_MAGIC):
        return "pickle"
    return "other"


def _existing_file(path: str | PathLike[str], what: str, fix: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what}: file {p} does not exist; {fix}.")
    if p.is_dir():
        raise InputError(f"{what}: {p} is a folder; {fix}.")
    return p


def load_npy(path: str | PathLike[str], what: str, *, mmap: bool = False) -> np.ndarray:
    """The array in a ``.npy`` file, loaded with ``allow_pickle=False``.

    ``what`` names the input in the messages (e.g. ``"--queries"`` or ``"query_bank"``).
    Raises :class:`InputError` for a missing file, a folder, an ``.npz`` archive, a file
    of pickled objects (never loaded) and anything that is not a ``.npy`` file.
    """
    fix = "save the array with numpy.save(path, array)"
    p = _existing_file(path, what, "pass a .npy file")
    try:
        kind = sniff(p)
    except OSError as exc:
        raise InputError(f"{what}: cannot read {p} ({exc.strerror}); check its permissions.") from None
    if kind == "npz":
        raise InputError(f"{what}: {p} is an .npz archive; pass a single .npy array (bank files go to --banks).")
    if kind == "pickle":
        raise InputError(f"{what}: {p} holds pickled objects, which are never loaded; {fix}.")
    if kind != "npy":
        raise InputError(f"{what}: {p} is not a .npy file ({'empty' if kind == 'empty' else 'no .npy header'}); {fix}.")
    try:
        return np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(f"{what}: {p} holds pickled objects (an object array), which are never loaded; "
                             f"{fix} on a numeric array.") from None
        raise InputError(f"{what}: {p} is not a readable .npy file ({exc}); {fix}.") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{what}: {p} is truncated or unreadable ({exc}); {fix}.") from None


# ------------------------------------------------------------------------ writing
def missing_dirs(path: Path) -> list[Path]:
    """The folders of ``path`` (itself included) that do not exist, innermost first."""
    missing = []
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def _nearest_existing(path: Path) -> Path:
    missing = missing_dirs(path)
    return missing[-1].parent if missing else Path(path).absolute()


def check_writable(path: str | PathLike[str], what: str, *, folder: bool = False) -> Path:
    """Refuse an output ``path`` that cannot be written, before any work is done.

    ``folder=True``: ``path`` is a folder to write files into (it may exist); otherwise a
    file (an existing folder there is refused). Nothing is created. Returns ``Path(path)``.
    """
    p = Path(path)
    fix = "choose a path in a folder you can write to"
    if p.exists():
        if folder and not p.is_dir():
            raise InputError(f"{what}: {p} is a file, not a folder; {fix}.")
        if not folder and p.is_dir():
            raise InputError(f"{what}: {p} is a folder; pass a file name.")
    if p.exists():
        base = p if p.is_dir() else p.parent  # a folder is written into; a file is replaced from its folder
    else:
        base = _nearest_existing(p.parent)
    if not base.is_dir():
        raise InputError(f"{what}: cannot write {p}: {base} is a file, not a folder; {fix}.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{what}: cannot write {p}: no write permission in {base}; {fix}.")
    return p


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, outermost first."""
    created = list(reversed(missing_dirs(folder)))
    for d in created:
        d.mkdir()
    return created


def _remove_dirs(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):
            d.rmdir()


def _write_error(path: Path, what: str, exc: OSError) -> InputError:
    reason = exc.strerror or type(exc).__name__
    return InputError(f"{what}: cannot write {path} ({reason}); choose a path in a folder you can write to.")


def _default_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process umask (``0o644`` under 022)."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return 0o666 & ~mask


def _temp_file(folder: Path, name: str) -> tuple[int, Path]:
    """``tempfile.mkstemp`` in ``folder``, with the mode of a plainly created file (mkstemp
    makes it 0600, and the rename would keep that)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, _default_mode())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | PathLike[str], what: str = "output") -> Iterator[Path]:
    """A temporary path in ``path``'s folder, renamed to ``path`` when the block succeeds.

    The folders missing above ``path`` are created first. When the block raises, the
    temporary file and the folders created for it are removed, so a failed write leaves
    nothing behind; an :class:`OSError` becomes an :class:`InputError` naming ``path``.
    """
    path = Path(path)
    created: list[Path] = []
    tmp: Path | None = None
    try:
        created = _make_parents(path.parent)
        fd, tmp = _temp_file(path.parent, path.name)
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        _cleanup(tmp, created)
        raise _write_error(path, what, exc) from None
    except BaseException:
        _cleanup(tmp, created)
        raise


def _cleanup(tmp: Path | None, created: list[Path]) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            tmp.unlink()
    _remove_dirs(created)


def write_files(folder: str | PathLike[str], files: Mapping[str, bytes | str], what: str = "output") -> dict[str, Path]:
    """Write ``{name: content}`` into ``folder`` (created if missing), all or nothing.

    Every file goes to a temporary name first; the renames happen only once all are
    written. Returns ``{name: path}``.
    """
    folder = Path(folder)
    created: list[Path] = []
    tmps: dict[str, Path] = {}
    try:
        created = _make_parents(folder)
        for name, content in files.items():
            fd, tmps[name] = _temp_file(folder, name)
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        out = {}
        for name, tmp in tmps.items():
            os.replace(tmp, folder / name)
            out[name] = folder / name
        return out
    except BaseException as exc:
        for tmp in tmps.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        _remove_dirs(created)
        if isinstance(exc, OSError):
            raise _write_error(folder, what, exc) from None
        raise


# ------------------------------------------------------------------------- values
def jsonable(x: Any) -> Any:
    """``x`` with numpy scalars and arrays as Python values, NaN/inf as ``None``, unknown objects as ``str``."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(x, str) or x is None:
        return x
    return str(x)


def short(text: Any, n: int = 48) -> str:
    """``text`` on one line, cut to ``n`` characters with an ellipsis."""
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "\u2026"
