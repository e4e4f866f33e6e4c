"""The options shared by several commands, each defined once, and the parser class.

One name, one meaning across commands and the Python API:

``--top-k N``        results per query (the API's ``top_k`` / Qdrant's ``limit``)
``--k N``            the method's own neighbourhood size (:attr:`Params.k`)
``--alpha A``        the weight of the method's bias term (:attr:`Params.alpha`)
``--candidates N``   raw candidates fetched from Qdrant and reranked per query
``--batch-size N``   queries per batch
``--queries FILE``   query vectors (``.npy``); ``--gallery FILE`` gallery vectors
``--out PATH``       what the command writes (a file or a folder; created only on success)
``--format F``       the format of what ``--out`` receives
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from ..core.spec import METHODS, SPECS

PROG = "dbnorm-qdrant"
#: the k of the k-occurrence behind every hubness figure the CLI prints
HUB_K = 10
FORMATTER = argparse.RawDescriptionHelpFormatter

__all__ = ["PROG", "HUB_K", "FORMATTER", "Parser", "positive_int", "add_output_opts", "add_qdrant_opts", "add_engine_opt",
           "add_compute_opts", "add_bank_opts", "add_method_opts", "add_batch_opts", "add_candidates_opt", "add_mode_opt", "add_top_k_opt",
           "add_json_opt"]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``dbnorm-qdrant: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message}; see `{self.prog} --help`.\n")
        sys.exit(2)


def positive_int(text: str) -> int:
    """An ``int >= 1`` (argparse ``type=``)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {v}")
    return v


def add_output_opts(p: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``--debug`` (accepted before or after the command)."""
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars and no informational logging")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, and tracebacks on errors")


def add_qdrant_opts(p: argparse.ArgumentParser, *, required: bool = True, using: bool = True) -> None:
    """``--collection``, where Qdrant is (``--path`` / ``--url`` ...), ``--engine``; ``using``: also ``--using``."""
    g = p.add_argument_group("Qdrant")
    g.add_argument("--collection", required=required, metavar="NAME", help="the collection (the gallery)")
    g.add_argument("--path", metavar="DIR", help="the folder of an existing embedded (local-mode) Qdrant")
    g.add_argument("--url", metavar="URL", help="a Qdrant server (default: $QDRANT_URL)")
    g.add_argument("--api-key", metavar="KEY", help="API key of the server (default: $QDRANT_API_KEY)")
    g.add_argument("--timeout", type=positive_int, default=10, metavar="S", help="server timeout in seconds (default 10)")
    if using:
        g.add_argument("--using", metavar="VECTOR", help="the named vector to use, if the collection has several")
    add_engine_opt(g)


def add_engine_opt(p: Any) -> None:
    """``--engine local|edge``: how a ``--path`` folder is opened (qdrant-client's local mode,
    or Qdrant Edge, Qdrant's own engine in process: one shard per collection)."""
    p.add_argument("--engine", choices=("local", "edge"), default="local",
                   help="with --path: local = qdrant-client's embedded mode (default); edge = Qdrant's engine in "
                        'process (Qdrant Edge; pip install "dbnorm-qdrant[edge]")')


def add_compute_opts(p: argparse.ArgumentParser) -> None:
    """``--compute local|ray``, ``--ray-address``, ``--workers``: where the heavy work runs
    (``--engine`` already names how a ``--path`` folder is opened; docs/scale.md)."""
    g = p.add_argument_group("compute")
    g.add_argument("--compute", choices=("local", "ray"), default="local",
                   help="local = this process (default); ray = Ray tasks / Ray Data actors "
                        "(pip install 'dbnorm-qdrant[ray]'; docs/scale.md)")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="with --compute ray: a Ray cluster (ray://head:10001, head:6379, auto); default: a local Ray")
    g.add_argument("--workers", type=positive_int, metavar="N",
                   help="with --compute ray: tasks or actors at once (default: the cluster's CPUs)")


def add_bank_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("banks")
    g.add_argument("--banks", metavar="FILE.npz", help=f"a bank file from `{PROG} bank build` (or save_banks)")
    g.add_argument("--query-bank", metavar="QB.npy", help="query-bank vectors (not the test queries)")
    g.add_argument("--gallery-bank", metavar="GB.npy", help="gallery-bank vectors (needed by dualis/dualdis)")


def _meanings(attr: str) -> str:
    """``"dis, dualdis: ...; csls, nnn: ..."``: what a parameter means per method, from the spec table."""
    by_meaning: dict[str, list[str]] = {}
    for name, spec in SPECS.items():
        if getattr(spec, attr, ""):
            by_meaning.setdefault(getattr(spec, attr), []).append(name)
    return "; ".join(f"{', '.join(names)}: {meaning}" for meaning, names in by_meaning.items())


def add_method_opts(p: argparse.ArgumentParser, default_doc: str = "auto") -> None:
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=("auto",) + tuple(METHODS), default=None,
                   help=f"normalisation method (default: {default_doc}); auto tunes method and parameters on the banks")
    g.add_argument("--beta-q", type=float, help="query-bank inverse temperature (default 20)")
    g.add_argument("--beta-g", type=float, help="gallery-bank inverse temperature (default 3)")
    g.add_argument("--k", type=positive_int, metavar="K",
                   help=f"the method's neighbourhood size, not a result count ({_meanings('k_meaning')})")
    g.add_argument("--alpha", type=float, help=f"the method's bias weight ({_meanings('alpha_meaning')})")
    g.add_argument("--center", action="store_true", help="center both sides on the bank means")
    pg = g.add_mutually_exclusive_group()
    pg.add_argument("--paired", dest="paired", action="store_true", default=None,
                    help="the banks are aligned pairs (row i of each matches): supervised tuning")
    pg.add_argument("--unpaired", dest="paired", action="store_false",
                    help="the banks are not aligned: unsupervised tuning (minimises hubness)")
    g.add_argument("--seed", type=int, default=0, help="seed of the tuning split and of sampling (default 0)")


def add_batch_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N", help="queries per batch (default 256)")


def add_candidates_opt(p: argparse.ArgumentParser, default: int | None = None) -> None:
    doc = f"(default {default})" if default else "(default: the client's, max(4 x top-k, 100))"
    p.add_argument("--candidates", type=positive_int, default=default, metavar="N",
                   help=f"raw candidates fetched from Qdrant and reranked per query {doc}")


def add_mode_opt(p: argparse.ArgumentParser) -> None:
    """``--mode``: the path of a reranked query through a collection (DBNormClient's ``mode``)."""
    p.add_argument("--mode", choices=("auto", "client", "server", "index"), default="auto",
                   help="with --collection: how queries are normalised: auto (default), client (rerank here), "
                        "server (formula in Qdrant), index (the index vector of `stats precompute --index`)")


def add_top_k_opt(p: argparse.ArgumentParser, default: int, doc: str = "") -> None:
    p.add_argument("--top-k", type=positive_int, default=default, metavar="N",
                   help=f"results per query (default {default}){doc}")


def add_json_opt(p: argparse.ArgumentParser, doc: str = "print one JSON object on stdout") -> None:
    p.add_argument("--json", action="store_true", help=doc)


def subparser(sub: Any, name: str, **kw: Any) -> argparse.ArgumentParser:
    """``sub.add_parser`` with the shared formatter; the caller adds options and ``func``."""
    kw.setdefault("formatter_class", FORMATTER)
    return sub.add_parser(name, **kw)
