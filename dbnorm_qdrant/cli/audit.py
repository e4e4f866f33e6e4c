"""``audit``: the hub audit of a collection (docs/audit.md), its quarantine, and the page.

The command runs :meth:`DBNormClient.audit <dbnorm_qdrant.qdrant.DBNormClient.audit>` on
``--collection`` with the banks of ``--banks`` (or ``--query-bank``/``--gallery-bank``),
or those a logged collection is served with (``--query-log``; docs/lifecycle.md), and
prints the flagged points (most suspicious first) with their signals and a payload
summary; ``--json`` prints :meth:`AuditReport.to_dict` instead. ``--out DIR`` writes
``audit.json`` (every point's signals), ``audit.png`` (the score distribution with the
flagged points and the budget's threshold; k-occurrence before vs after normalisation:
matplotlib, the ``plots`` extra) and ``audit.html`` (the table, the settings and the
plot, self-contained), all together or nothing. ``--quarantine`` marks the flagged
points under the reserved payload key; ``--unquarantine [ID ...]`` removes the mark
(of the ids given, else of every point) and runs no audit.

Every input is checked before the storage is opened: the budget, ``--out``'s folder,
matplotlib for ``--out``, the banks, and a (un)quarantine on a read-only ``--path``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import json
import logging
import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._io_utils import check_writable, jsonable, short, write_files
from ..errors import InputError
from . import common as c
from . import options as o
from .qdrant_io import open_qdrant

log = logging.getLogger("dbnorm_qdrant.cli")

#: payload keys shown per flagged point, and the characters of each value
PAYLOAD_KEYS, PAYLOAD_CHARS = 3, 40
#: the files ``--out`` receives
FILES = ("audit.json", "audit.png", "audit.html")

_DOC = ("rank a collection's points by how many query-bank queries retrieve them in their top k (a robust "
        "z-score of the k-occurrence) and flag the ceil(budget x points) most suspicious: planted hubs and "
        "natural ones. Prints the flagged points with their signals and payload; --out DIR writes audit.json, "
        "audit.png and audit.html; --quarantine marks the flagged points under the reserved payload key (the "
        "wrappers then leave them out of results) and --unquarantine removes the mark")


def add_parser(sub: Any) -> None:
    p = o.subparser(sub, "audit", help="flag the hubs of a collection (planted or natural); optional quarantine",
                    description=textwrap.fill(_DOC[0].upper() + _DOC[1:] + ".", 88))
    p.add_argument("--budget", type=float, default=0.005, metavar="B",
                   help="the share of the collection to flag, strictly between 0 and 1 (default 0.005: 0.5%%)")
    o.add_top_k_opt(p, o.HUB_K, " of every bank query: the k of the k-occurrence (the method's own "
                    "neighbourhood size is --k)")
    p.add_argument("--out", metavar="DIR", help="write audit.json, audit.png (the plots extra) and audit.html there")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--quarantine", action="store_true",
                     help="mark the flagged points under the reserved payload key (the user's payload is untouched)")
    act.add_argument("--unquarantine", nargs="*", metavar="ID",
                     help="remove the quarantine mark of these point ids (none given: of every point); no audit")
    p.add_argument("--page-size", type=o.positive_int, default=512, metavar="N", help="points per page (default 512)")
    p.add_argument("--payload-key", default="_dbnorm", help="the reserved payload key (default _dbnorm)")
    p.add_argument("--query-log", metavar="LOG", help="instead of banks: the query log of a collection served from "
                   f"it (its version after `{o.PROG} rebuild`, else the cold start)")
    o.add_qdrant_opts(p)
    o.add_bank_opts(p)
    o.add_method_opts(p, "the bank file's, else auto")
    o.add_json_opt(p)
    o.add_output_opts(p)
    p.set_defaults(func=run)


# ------------------------------------------------------------------------ inputs
def _check_inputs(args: argparse.Namespace) -> Any:
    """Everything that can be refused before the storage is opened; returns the bank
    triple of :func:`common.banks` (``None`` first with ``--query-log``)."""
    from ..core.audit import check_budget

    writes = "--quarantine" if args.quarantine else "--unquarantine" if args.unquarantine is not None else None
    if writes and args.path and os.path.isdir(args.path) and not os.access(args.path, os.W_OK):
        raise InputError(f"{writes} writes to the storage, but --path {args.path} is read-only; nothing was changed. "
                         f"Run it on writable storage{' (or the audit without --quarantine)' * bool(args.quarantine)}.")
    if args.unquarantine is not None:
        if args.out:
            raise InputError("--out writes an audit's files; --unquarantine runs no audit: drop one of them.")
        return None, None, False
    check_budget(args.budget)  # its message names --budget on the command line (cli_words)
    c.check_method(args)
    if args.out:
        check_writable(args.out, "--out", folder=True)
        _matplotlib()
    bank_set, stored, paired = c.banks(args, required=False)
    if bank_set is not None and args.query_log:
        raise InputError("give either banks (--banks / --query-bank) or --query-log, not both: a logged collection "
                         "is audited with the banks it is served with.")
    if bank_set is None and not args.query_log:
        raise InputError(f"the audit ranks points against a query bank and none was given: build a bank file first "
                         f"(`{o.PROG} bank build --query-bank QB.npy --collection NAME ... --out banks.npz`) and pass "
                         f"--banks banks.npz (or --query-bank QB.npy), or pass --query-log LOG for a collection "
                         f"served from its query log (after `{o.PROG} rebuild`).")
    return bank_set, stored, paired


def _matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or an InputError naming the ``plots`` extra."""
    from ..eval.report import PLOTS_HINT

    try:
        import matplotlib
    except ImportError:
        raise InputError(f"--out writes audit.png, but {PLOTS_HINT}; or drop --out.") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def point_id(text: str) -> int | str:
    """A point id from the command line: an unsigned integer or a UUID."""
    if text.isdigit():
        return int(text)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InputError(f"--unquarantine: {text!r} is not a point id; Qdrant ids are unsigned integers or "
                         "UUIDs.") from None


@contextlib.contextmanager
def _audit_db(args: argparse.Namespace, bank_set: Any, stored: Any, paired: bool) -> Iterator[Any]:
    """A DBNormClient over ``--collection``: with the banks, or logged to ``--query-log``."""
    from ..qdrant import DBNormClient, Settings

    with open_qdrant(args) as q:
        q.require(args.collection)
        if bank_set is None:
            settings = Settings.of(payload_key=args.payload_key,
                                   **({} if args.query_log is None else {"query_log": {args.collection: args.query_log}}))
            db = DBNormClient(q.client, settings=settings)
            if args.query_log and db.status(args.collection).active_version is None:
                log.warning("query log %r: no rebuild yet, so the audit ranks against the cold start's banks (a "
                            "sample of the collection); run `%s rebuild` first for banks from the log",
                            args.query_log, o.PROG)
            yield db
            return
        dist, size = q.vector(args.collection, args.using)
        c.check_dim(bank_set, size, args.collection)
        params, _ = c.params(args, bank_set, stored, paired)
        yield DBNormClient(q.client, bank_set.normalizer(params, unit=dist == "Cosine"), payload_key=args.payload_key)


def run(args: argparse.Namespace) -> int:
    bank_set, stored, paired = _check_inputs(args)
    with _audit_db(args, bank_set, stored, paired) as db:
        if args.unquarantine is not None:
            ids = [point_id(t) for t in args.unquarantine] or None
            n = db.unquarantine(args.collection, ids)
            if args.json:
                c.emit_json({"collection": args.collection, "unquarantined": n})
            else:
                print(f"{args.collection}: removed the quarantine mark of {n} point{'s' * (n != 1)}")
            return 0
        rep = db.audit(args.collection, args.budget, k=args.top_k, using=args.using, page_size=args.page_size,
                       progress=not args.quiet, quarantine=args.quarantine)
    paths = write_page(args.out, rep) if args.out else {}
    if args.json:
        c.emit_json({**rep.to_dict(), **({"files": {k: str(v) for k, v in paths.items()}} if paths else {})})
        return 0
    print_flagged(rep)
    print(summary(rep))
    if rep.quarantined:
        print(f"  quarantined points are left out of the wrappers' results; `{o.PROG} audit --collection "
              f"{args.collection} --unquarantine` reverses it")
    if paths:
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


# ------------------------------------------------------------------------ output
def payload_text(payload: dict[str, Any] | None) -> str:
    """The first :data:`PAYLOAD_KEYS` payload fields, each value cut to :data:`PAYLOAD_CHARS`."""
    items = list((payload or {}).items())
    if not items:
        return "-"
    text = "; ".join(f"{k}={short(v, PAYLOAD_CHARS)}" for k, v in items[:PAYLOAD_KEYS])
    return text + (f"; +{len(items) - PAYLOAD_KEYS} more" if len(items) > PAYLOAD_KEYS else "")


def _kocc_text(row: dict[str, Any]) -> str:
    return f"{row['kocc']} -> {c.fmt(row['kocc_normalized'], '{:d}')}"


def table_rows(rep: Any) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the flagged points' table (the terminal's and the page's)."""
    header = ["rank", "id", "score", f"N{rep.k} raw -> normalised", "bias z", "spread", "payload"]
    rows = [[str(r["rank"]), str(r["id"]), f"{r['score']:.2f}", _kocc_text(r), f"{r['bias_z']:.2f}",
             c.fmt(r["spread"]), payload_text(r["payload"])] for r in rep.rows]
    return header, rows


def print_flagged(rep: Any) -> None:
    header, rows = table_rows(rep)
    c.print_table(rows, header, left=(0, len(header) - 1))


def summary(rep: Any) -> str:
    """One line: points, budget, flagged, seconds, statistics reused, quarantined."""
    return (f"{rep.collection}: {rep.n_points} points, budget {rep.budget:.2%} -> {len(rep.flagged)} flagged "
            f"(top {rep.k} of {rep.bank_size} bank queries, {rep.method}) in {rep.seconds:.1f}s; stored statistics "
            f"reused for {rep.reused_stats} points; {rep.quarantined} quarantined")


def plot(rep: Any) -> bytes:
    """``audit.png``: the score distribution with the flagged points and the budget's threshold,
    and every point's k-occurrence before vs after normalisation (flagged in red)."""
    from ..eval.report import COLORS

    plt = _matplotlib()
    flagged = np.zeros(len(rep.ids), dtype=bool)
    pos = {pid: i for i, pid in enumerate(rep.ids)}
    flagged[[pos[f] for f in rep.flagged]] = True
    hot, cold = COLORS[0], COLORS[1]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), dpi=110)
    ax = axes[0]
    ax.hist(rep.score, bins=60, color=cold, alpha=0.7, label=f"{rep.n_points:,} points")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)  # a bar of one point stays visible
    for i, x in enumerate(rep.score[flagged]):
        ax.axvline(x, color=hot, alpha=0.6, lw=1, ymax=0.12, label=f"flagged ({len(rep.flagged)})" if i == 0 else None)
    if rep.flagged:
        ax.axvline(float(rep.score[flagged].min()), color="k", ls="--", lw=1,
                   label=f"threshold of budget {rep.budget:.2%}")
    ax.set_xlabel(f"score: robust z of log(1 + N{rep.k})")
    ax.set_ylabel("points (log scale)")
    ax.set_title("audit score")
    ax.legend(fontsize=8)
    ax = axes[1]
    after = rep.kocc_normalized if rep.kocc_normalized is not None else rep.kocc
    for mask, color, lab in ((~flagged, cold, "other points"), (flagged, hot, "flagged")):
        ax.scatter(rep.kocc[mask], after[mask], s=8 if color == cold else 24, color=color, alpha=0.5, label=lab)
    top = max(1, int(rep.kocc.max()), int(after.max()))
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls=":", label="unchanged")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel(f"N{rep.k}: bank queries with the point in their top {rep.k}, raw")
    ax.set_ylabel(f"N{rep.k} under {rep.method}")
    ax.set_title("k-occurrence before and after normalisation")
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Hub audit of {rep.collection!r}", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def page(rep: Any, png: bytes) -> str:
    """``audit.html``: the settings, the plot (embedded) and the flagged points, self-contained."""
    from ..eval.report import PAGE_STYLE

    e = html.escape
    title = f"Hub audit of {rep.collection!r}"
    header, rows = table_rows(rep)
    settings = {k: v for k, v in rep.to_dict().items() if k not in ("flagged", "rows")}
    parts = ["<!doctype html>", "<html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>", PAGE_STYLE,
             "</head><body>", f"<h1>{e(title)}</h1>", f"<p>{e(summary(rep))}</p>",
             f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}' alt='{e(title)}' width='100%'>",
             "<h2>Flagged points</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{e(x)}</td>" for x in r[:-1]) + f"<td class='l'>{e(r[-1])}</td></tr>" for r in rows]
    parts.append("</table>")
    parts.append(f"<p>score = robust z (median / MAD) of log(1 + N<sub>{rep.k}</sub>), N<sub>{rep.k}</sub> = how "
                 f"many of the {rep.bank_size} bank queries have the point in their top {rep.k}; bias z = robust z "
                 "of the point's bank bias; spread = how spread out the queries that retrieve it are (0..1). "
                 "See docs/audit.md.</p>")
    parts.append(f"<h2>Settings</h2><pre>{e(json.dumps(jsonable(settings), indent=2))}</pre></body></html>")
    return "\n".join(parts)


def write_page(out: str | Path, rep: Any) -> dict[str, Path]:
    """Write :data:`FILES` into ``out``, all together or nothing; returns their paths."""
    png = plot(rep)
    files = {"audit.json": json.dumps(jsonable(rep.to_dict(points=True)), indent=2) + "\n", "audit.png": png,
             "audit.html": page(rep, png)}
    return write_files(out, files, "--out")
