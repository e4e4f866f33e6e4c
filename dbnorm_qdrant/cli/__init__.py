"""The ``dbnorm-qdrant`` command line.

Commands (one module each)
--------------------------
``demo`` (:mod:`.demo`)
    The main job on a real sample shipped in the package (WordNet reverse dictionary,
    all-MiniLM-L6-v2): loads it into embedded Qdrant, tunes, reranks every test query
    through :class:`~dbnorm_qdrant.qdrant.DBNormClient`, prints raw vs normalised recall
    and hubness, and writes the hubness report.
``evaluate`` (:mod:`.evaluate`)
    Metrics before and after from vectors (``.npy``), or through a Qdrant collection.
``bank build`` (:mod:`.bank`)
    A bank file (:func:`dbnorm_qdrant.banks.save_banks`) from ``.npy`` files or by
    sampling collections.
``stats precompute`` / ``stats status`` / ``stats refresh`` (:mod:`.stats`)
    Statistics in a collection's payload: write them (resumable), check coverage and
    staleness, refresh the activation flags of ``dis``/``dualdis``.
``rerank`` (:mod:`.rerank`)
    Batch offline reranking of a query set to JSONL or Parquet, through Qdrant or
    against a plain gallery matrix.
``report`` (:mod:`.report`)
    The hubness report (PNG + Markdown/HTML) of a collection or a pair of matrices.
``rebuild`` / ``status`` (:mod:`.lifecycle`)
    A collection served from its query log (``DBNormClient(query_log=...)``): new banks
    from the log, tuned and switched to as a new version; what serves it now.
``audit`` (:mod:`.audit`)
    The hub audit of a collection (planted or natural hubs): the flagged points with their
    signals, a JSON form, a page with plots (``--out``); ``--quarantine`` / ``--unquarantine``.
``train-adapter`` (:mod:`.train_adapter`)
    The experimental NeighborRetr-style adapter (torch).

Shared options are defined once in :mod:`.options`, shared loading and printing in
:mod:`.common`, the Qdrant side in :mod:`.qdrant_io`.

Conventions
-----------
Results go to stdout; diagnostics (logging) and progress bars go to stderr. Bad input
(an :class:`~dbnorm_qdrant.errors.InputError`, or a usage error) prints one line,
``dbnorm-qdrant: error: <problem>; <fix>``, and exits with code 2; ``--debug`` shows the
traceback instead. Nothing is created or changed on disk when a command fails: inputs
are validated first, ``--out`` is written to a temporary file and renamed on success,
and what opening an embedded Qdrant (``--path``) created is removed. Exit codes: 0 ok,
2 bad input, 130 interrupted, 1 a bug (with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Sequence

from .. import __version__
from ..errors import InputError
from . import audit, bank, demo, evaluate, lifecycle, rerank, report, stats, train_adapter
from .options import PROG, Parser, add_output_opts

__all__ = ["main", "build_parser", "PROG"]

#: the command modules, in the order ``--help`` lists them; each has ``add_parser(subparsers)``
COMMANDS = (demo, evaluate, bank, stats, rerank, report, lifecycle, audit, train_adapter)


def build_parser() -> argparse.ArgumentParser:
    """The ``dbnorm-qdrant`` parser: global options, then one subparser per command module."""
    ap = Parser(prog=PROG, description="Hubness normalisation (DBNorm, QB-Norm, CSLS, NNN) for embedding retrieval "
                "and Qdrant.", formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog=f"Run `{PROG} demo` to see it work on a real sample.")
    ap.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_output_opts(ap)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return ap


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if args.debug else "[dbnorm] %(message)s"))
    root = logging.getLogger("dbnorm_qdrant")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if not args.debug:
        import warnings

        warnings.filterwarnings("ignore", module="qdrant_client")


#: the API's words for a parameter, in messages raised below the CLI -> the flag a CLI user types
_API_PHRASES = (("drop using= (or pass using=None)", "drop --using"),
                ("pass params={'k': ...} with k <=", "pass --k K with K <="),
                ("lower min_log=)", "lower --min-log)"), ("min_log", "--min-log"), ("budget must", "--budget must"))
_FLAGS = {"using": "--using", "k": "--k", "top_k": "--top-k", "query_bank": "--query-bank",
          "gallery_bank": "--gallery-bank"}
_API_NAME = re.compile(r"\b(pass|choose|drop) (" + "|".join(_FLAGS) + r")(=| <=)")


def cli_words(msg: str) -> str:
    """An error message with the API's parameter names (``using=``, ``choose k <= 9``)
    turned into the command line's flags (``--using``, ``choose --k <= 9``)."""
    for api, flag in _API_PHRASES:
        msg = msg.replace(api, flag)
    return _API_NAME.sub(lambda m: f"{m[1]} {_FLAGS[m[2]]}{'' if m[3] == '=' else ' <='}", msg)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dbnorm-qdrant`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    args.quiet = getattr(args, "quiet", False)
    args.debug = getattr(args, "debug", False)
    _setup_logging(args)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        if args.debug:
            raise
        msg = cli_words(" ".join(str(exc).split()))
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
