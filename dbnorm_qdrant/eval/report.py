"""The hubness report: a PNG (k-occurrence before and after, the top hubs) and a page that shows it.

:func:`write_report` takes what the caller measured -- the k-occurrence vector of each
retrieval (raw and normalised), their metrics, and labels for the hubs (e.g. a payload
field) -- and writes ``hubness.png`` plus ``report.md`` (or ``report.html``) into a
folder. It draws with matplotlib's Agg backend (no display needed); matplotlib is the
``plots`` extra: without it the page and ``metrics.json`` are written without the plot,
and the page says how to get it (``pip install "dbnorm-qdrant[plots]"``). It computes
nothing but the hub lists (via :func:`hubness_metrics`). The files appear all together or
not at all (see :func:`dbnorm_qdrant._io_utils.write_files`).
"""

from __future__ import annotations

import html
import io
import json
import logging
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._io_utils import check_writable, jsonable, short, write_files
from ..errors import InputError
from ..validation import check_int
from .metrics import hubness_metrics

log = logging.getLogger(__name__)

__all__ = ["COLORS", "PAGE_STYLE", "PLOTS_HINT", "Retrieval", "write_report"]

#: what the page says when matplotlib is missing
PLOTS_HINT = 'plots need matplotlib: pip install "dbnorm-qdrant[plots]"'

#: metric columns of the report table: key, header, format
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("R1", "R@1", "{:.2f}"),
    ("R5", "R@5", "{:.2f}"),
    ("R10", "R@10", "{:.2f}"),
    ("MedR", "MedR", "{:.1f}"),
    ("MeanR", "MeanR", "{:.1f}"),
    ("k_skewness", "k-skewness", "{:.3f}"),
    ("robin_hood", "Robin Hood", "{:.3f}"),
    ("antihub_rate", "antihubs", "{:.1%}"),
    ("hub_occurrence", "hub share", "{:.1%}"),
    ("max_occurrence", "max N_k", "{:d}"),
)
#: the retrievals' colours in the plots (first: raw, or what is flagged)
COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
#: the style of the HTML pages (a report's, an audit's)
PAGE_STYLE = ("<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
              "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td.l{text-align:left}</style>")


@dataclass
class Retrieval:
    """One retrieval to show: its name, k-occurrence vector and metrics.

    ``ids`` maps a position of ``occurrence`` to the item's id (default: the position)
    and ``labels`` maps an id to the text shown for it (e.g. a payload field).
    """

    name: str
    occurrence: np.ndarray
    metrics: Mapping[str, Any] = field(default_factory=dict)
    ids: Sequence[Any] | None = None


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        return spec.format(int(value) if spec == "{:d}" else value)
    except (TypeError, ValueError):
        return str(value)


def _hubs(r: Retrieval, k: int, n_top: int, labels: Mapping[Any, Any] | None) -> list[dict[str, Any]]:
    top = hubness_metrics(occurrence=r.occurrence, k=k, n_top=n_top)["top_hubs"]
    out = []
    for pos, count in top:
        pid = r.ids[pos] if r.ids is not None else pos
        label = None if labels is None else labels.get(pid, labels.get(str(pid)))
        out.append({"id": pid, "N_k": count, "label": "" if label is None else str(label)})
    return out


def _plot(runs: Sequence[Retrieval], hubs: list[list[dict[str, Any]]], k: int, title: str) -> bytes | None:
    """The PNG of the k-occurrence histograms and the top hubs; ``None`` without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        log.warning("no plot in the report: %s", PLOTS_HINT)
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n_q = int(runs[0].occurrence.sum()) // k
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), dpi=110, gridspec_kw={"width_ratios": [1.1, 1.0]})
    ax = axes[0]
    top = max(int(r.occurrence.max()) for r in runs)
    width = max(1, int(math.ceil((top + 1) / 40)))
    bins = np.arange(0, top + width + 1, width)
    for i, r in enumerate(runs):
        m = r.metrics
        sk = m.get("k_skewness")
        lab = f"{r.name}: k-skew {sk:.2f}" if isinstance(sk, float) and not math.isnan(sk) else r.name
        if m.get("R1") is not None:
            lab += f", R@1 {m['R1']:.1f}%"
        lab += f", max N{k} = {int(r.occurrence.max())}"
        ax.hist(r.occurrence, bins=bins, alpha=0.55, color=COLORS[i % len(COLORS)], label=lab)
    ax.set_yscale("log")
    ax.set_xlabel(f"N{k}(g): queries (of {n_q:,}) with item g in their top {k}")
    ax.set_ylabel("gallery items (log scale)")
    ax.set_title("k-occurrence before and after")
    ax.legend(fontsize=8)
    # the hubs of the first retrieval, and how often each is retrieved by the others
    ax = axes[1]
    first = hubs[0][:10]
    names = [f"{short(h['label'] or h['id'], 34)}" for h in first][::-1]
    ypos = np.arange(len(first))
    bar_h = 0.8 / len(runs)
    for i, r in enumerate(runs):
        pos_of = {pid: j for j, pid in enumerate(r.ids)} if r.ids is not None else None
        vals = []
        for h in first:
            j = h["id"] if pos_of is None else pos_of.get(h["id"])
            vals.append(0 if j is None or j >= len(r.occurrence) else int(r.occurrence[j]))
        ax.barh(ypos + (len(runs) - 1 - i) * bar_h - 0.4 + bar_h / 2, vals[::-1], height=bar_h,
                color=COLORS[i % len(COLORS)], alpha=0.8, label=r.name)
    ax.set_yticks(ypos)
    ax.set_yticklabels(names, fontsize=7.5)
    ax.set_xlabel(f"N{k}")
    ax.set_title(f"top hubs of {runs[0].name}")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _table_rows(runs: Sequence[Retrieval]) -> tuple[list[str], list[list[str]]]:
    cols = [c for c in _COLUMNS if any(r.metrics.get(c[0]) is not None for r in runs) or c[0] == "max_occurrence"]
    header = ["retrieval"] + [c[1] for c in cols]
    rows = []
    for r in runs:
        m = dict(r.metrics)
        m.setdefault("max_occurrence", int(r.occurrence.max()))
        rows.append([r.name] + [_fmt(m.get(key), spec) for key, _, spec in cols])
    return header, rows


def _markdown(title: str, png: str | None, runs, hubs, k: int, notes: Sequence[str], params: Mapping[str, Any] | None) -> str:
    header, rows = _table_rows(runs)
    out = [f"# {title}", ""]
    out += [f"![k-occurrence before and after]({png})" if png else f"(No plot: {PLOTS_HINT}.)", ""]
    out += ["## Metrics", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out.append("")
    out.append(f"R@K in percent; N_k = how many queries have an item in their top {k}; k-skewness = skewness of "
               "N_k over all gallery items (0 = no hubs); hub share = top-k slots taken by items with N_k >= 2k.")
    out.append("")
    for r, hs in zip(runs, hubs):
        out += [f"## Top hubs: {r.name}", "", f"| # | id | N{k} | label |", "|---|---|---|---|"]
        out += [f"| {i + 1} | {h['id']} | {h['N_k']} | {h['label'].replace('|', '/')} |" for i, h in enumerate(hs)]
        out.append("")
    if params:
        out += ["## Parameters", "", "```json", json.dumps(params, indent=2, default=str), "```", ""]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def _html(title: str, png: str | None, runs, hubs, k: int, notes: Sequence[str], params: Mapping[str, Any] | None) -> str:
    e = html.escape
    header, rows = _table_rows(runs)
    parts = [
        "<!doctype html>", "<html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
        PAGE_STYLE,
        "</head><body>", f"<h1>{e(title)}</h1>",
        f"<img src='{e(png)}' alt='k-occurrence before and after' width='100%'>" if png else f"<p>(No plot: {e(PLOTS_HINT)}.)</p>",
        "<h2>Metrics</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>",
    ]
    for r in rows:
        parts.append("<tr><td class='l'>" + e(r[0]) + "</td>" + "".join(f"<td>{e(c)}</td>" for c in r[1:]) + "</tr>")
    parts.append("</table>")
    parts.append(f"<p>R@K in percent; N<sub>k</sub> = how many queries have an item in their top {k}; "
                 "k-skewness = skewness of N<sub>k</sub> over all gallery items (0 = no hubs).</p>")
    for r, hs in zip(runs, hubs):
        parts.append(f"<h2>Top hubs: {e(r.name)}</h2><table><tr><th>#</th><th>id</th><th>N{k}</th><th>label</th></tr>")
        parts += [f"<tr><td>{i + 1}</td><td>{e(str(h['id']))}</td><td>{h['N_k']}</td><td class='l'>{e(h['label'])}</td></tr>"
                  for i, h in enumerate(hs)]
        parts.append("</table>")
    if params:
        parts.append(f"<h2>Parameters</h2><pre>{e(json.dumps(params, indent=2, default=str))}</pre>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    out_dir: str | PathLike[str],
    runs: Sequence[Retrieval],
    *,
    k: int = 10,
    labels: Mapping[Any, Any] | None = None,
    title: str = "Hubness report",
    fmt: str = "md",
    n_top: int = 10,
    notes: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    plot_runs: int | None = None,
) -> dict[str, Path | None]:
    """Write ``hubness.png``, ``report.md`` or ``report.html``, and ``metrics.json`` into ``out_dir``.

    Parameters
    ----------
    runs:
        The retrievals to compare (first: the raw one), each with its k-occurrence vector.
    k:
        The k of the k-occurrence.
    labels:
        Text per item id for the hub tables (e.g. a payload field).
    fmt:
        ``"md"`` (Markdown) or ``"html"``.
    plot_runs:
        Plot only the first ``plot_runs`` retrievals (default: all); the tables show all.

    Returns
    -------
    dict
        Paths of the files written: ``png`` (``None`` without matplotlib, the ``plots``
        extra), ``page``, ``json``. ``out_dir`` is created only when all files are ready.
    """
    if fmt not in ("md", "html"):
        raise InputError(f"report format must be 'md' or 'html', got {fmt!r}.")
    if not runs:
        raise InputError("a report needs at least one retrieval.")
    if plot_runs is not None:
        check_int(plot_runs, "plot_runs", hint="it is how many of the retrievals to plot (None: all).")
    out = check_writable(out_dir, "report folder", folder=True)
    runs = [Retrieval(r.name, np.asarray(r.occurrence, dtype=np.int64), dict(r.metrics), r.ids) for r in runs]
    hubs = [_hubs(r, k, n_top, labels) for r in runs]
    png = _plot(runs[:plot_runs], hubs[:plot_runs], k, title)
    render = _markdown if fmt == "md" else _html
    page = render(title, "hubness.png" if png is not None else None, runs, hubs, k, notes, params)
    doc = {
        "title": title,
        "k": k,
        "retrievals": {r.name: {"metrics": {m: v for m, v in r.metrics.items() if m != "top_hubs"}, "top_hubs": h}
                       for r, h in zip(runs, hubs)},
        "params": params,
    }
    files: dict[str, bytes | str] = {} if png is None else {"hubness.png": png}
    files[f"report.{fmt}"] = page
    files["metrics.json"] = json.dumps(jsonable(doc), indent=2) + "\n"
    paths = write_files(out, files, "report folder")
    return {"png": paths.get("hubness.png"), "page": paths[f"report.{fmt}"], "json": paths["metrics.json"]}
