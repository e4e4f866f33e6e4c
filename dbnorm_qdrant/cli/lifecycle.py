"""``rebuild`` / ``status``: a collection served from its query log (docs/lifecycle.md).

Both open the storage (``--path``, ``--path --engine edge``, ``--url``) and build a
:class:`~dbnorm_qdrant.qdrant.DBNormClient` with ``query_log={collection: log}``, the
wrapper an application logs its traffic with; this command serves no query, so it logs
nothing. ``rebuild`` runs :meth:`DBNormClient.rebuild` (new banks from the log, tuned,
written as a new version, switched to atomically); ``status`` prints
:meth:`DBNormClient.status` and writes nothing (a storage without a log or state is
reported cold, nothing logged).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import textwrap
from typing import Any, Iterator

from ..errors import InputError
from . import common as c
from . import options as o
from .qdrant_io import open_qdrant

_HELP = {"rebuild": "new banks from a collection's query log, as a new version switched to atomically",
         "status": "what serves a logged collection now (version or cold start, banks, log, tuning)"}
_DOCS = {
    "rebuild": "turn a collection's query log into banks: the log as the query bank, a sample of the collection as "
               "the gallery bank, method and parameters tuned without labels, written as a new version and switched "
               "to atomically (the old version serves until then)",
    "status": "what serves a logged collection now: the active version or the cold start, its banks' sizes and age, "
              "the log's size, the tuned method and the gain it measured, the versions (writes nothing)",
}


def add_parser(sub: Any) -> None:
    for name, func in (("rebuild", run_rebuild), ("status", run_status)):
        doc = _DOCS[name]
        p = o.subparser(sub, name, help=_HELP[name], description=textwrap.fill(doc[0].upper() + doc[1:] + ".", 88))
        o.add_qdrant_opts(p, using=False)  # the lifecycle serves the collection's one dense vector
        p.add_argument("--query-log", required=True, metavar="LOG",
                       help="the query log collection (the wrapper's query_log=)")
        if name == "rebuild":
            p.add_argument("--min-log", type=o.positive_int, metavar="N",
                           help="refuse with fewer logged queries (default: the wrapper's, 200; at least 100)")
            p.add_argument("--gallery-sample", type=o.positive_int, metavar="N",
                           help="points of the collection sampled as the gallery bank (default: the wrapper's, "
                                "up to 10,000)")
            p.add_argument("--seed", type=int, default=0, help="seed of the gallery sample and the tuning split "
                                                              "(default 0)")
        o.add_json_opt(p)
        o.add_output_opts(p)
        p.set_defaults(func=func)


@contextlib.contextmanager
def _logged_db(args: argparse.Namespace, *, log_required: bool = False, **options: Any) -> Iterator[Any]:
    """A DBNormClient over ``--collection`` logged to ``--query-log``: the options checked before
    the storage is opened, then the collection (``log_required``: the log too, else a missing
    log is an empty one)."""
    from ..qdrant import DBNormClient, Settings

    settings = Settings.of(query_log={args.collection: args.query_log}, **options)
    with open_qdrant(args) as q:
        q.require(args.collection)
        if log_required:
            try:
                q.require(args.query_log)
            except InputError as exc:
                raise InputError(f"--query-log: {exc} Pass the query_log name the application's DBNormClient "
                                 "logs to.") from None
        yield DBNormClient(q.client, settings=settings)


def run_rebuild(args: argparse.Namespace) -> int:
    options = {} if args.min_log is None else {"min_log": args.min_log}
    kw = {} if args.gallery_sample is None else {"gallery_sample": args.gallery_sample}
    with _logged_db(args, log_required=True, **options) as db:
        rep = db.rebuild(args.collection, progress=not args.quiet, seed=args.seed, **kw)
    if args.json:
        c.emit_json(dataclasses.asdict(rep))
        return 0
    pre = rep.precompute
    print(f"{args.collection!r}, logged to {args.query_log!r}: version {rep.version} is active")
    c.print_table([
        ["version", rep.version],
        ["previous", "-" if rep.previous is None else rep.previous],
        ["method", params_text(rep.params)],
        ["query bank", f"{rep.query_bank} logged queries"],
        ["gallery bank", f"{rep.gallery_bank} points sampled"],
        ["tuning", tuning_text(rep.tuning)],
        ["index vector", rep.index_name or ("-" if pre is None else "- (the statistics in the payload serve)")],
        ["points written", "-" if pre is None else f"{pre.written} statistics"
         + (f", {pre.index_written} index vectors" if pre.index_name else "")],
        ["retired versions", ", ".join(map(str, rep.removed)) or "-"],
        ["seconds", f"{rep.seconds:.1f}"],
    ], ["rebuild", "value"])
    return 0


def run_status(args: argparse.Namespace) -> int:
    with _logged_db(args) as db:
        st = db.status(args.collection)
    if args.json:
        c.emit_json(st.to_dict())
        return 0
    print(f"{args.collection!r}, logged to {args.query_log!r}: served by {st.serving}")
    logged = f"{st.log_size} queries held, {st.logged} logged in all"
    c.print_table([
        ["active version", "- (no rebuild yet)" if st.active_version is None else st.active_version],
        ["method", "-" if st.params is None else params_text(st.params)],
        ["query bank", st.query_bank],
        ["gallery bank", st.gallery_bank],
        ["age", "-" if st.age_s is None else age_text(st.age_s)],
        ["log", logged if st.logged or st.log_size else "nothing logged yet"],
        ["tuning", tuning_text(st.tuning) if st.tuning else "-"],
        ["index vector", st.index_name or "-"],
        ["versions", ", ".join(f"{v} {s}" for v, s in st.versions.items()) or "-"],
    ], ["status", "value"])
    return 0


def params_text(params: dict[str, Any]) -> str:
    """``"dualis + centering (beta_q=6.39, beta_g=3.2)"``: the method and the parameters it uses
    (from the spec table)."""
    from ..core.params import as_params
    from ..core.spec import SPECS

    p = as_params(params)
    spec = SPECS[p.method]
    used = {"beta_q": "lse_q" in spec.bias_fields, "beta_g": p.uses_gallery_bank, "k": bool(spec.k_meaning),
            "alpha": bool(spec.alpha_meaning)}
    shown = ", ".join(f"{k}={getattr(p, k):.3g}" for k, on in used.items() if on)
    return f"{c.method_name(p)} ({shown})" if shown else c.method_name(p)


def tuning_text(tuning: dict[str, Any]) -> str:
    """What the tuning measured: ``"k_skewness 0.844 -> 0.533 (60 held-out logged queries)"``."""
    if tuning.get("raw_value") is not None and tuning.get("value") is not None:
        held = f" ({tuning['n_validation']} held-out logged queries)" if tuning.get("n_validation") else ""
        raw, value = (c.fmt(tuning[k], "{:.3f}") for k in ("raw_value", "value"))
        return f"{tuning.get('objective')} {raw} -> {value}{held}"
    if tuning.get("source") == "import":
        return f"imported from {tuning.get('file')}"
    return str(tuning.get("reason") or "-")


def age_text(seconds: float) -> str:
    """``"42 s"``, ``"12 min"``, ``"3.5 h"``, ``"2.0 days"``."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}" if unit != "min" else f"{seconds / size:.0f} min"
    return f"{seconds:.0f} s"
