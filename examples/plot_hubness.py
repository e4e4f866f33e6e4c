"""Draw the README's picture: k-occurrence before and after normalisation (needs the ``plots`` extra).

By default it uses the sample shipped with the package; ``--data DIR`` reads a folder with
``Q_test.npy``, ``G_test.npy``, ``Q_bank.npy`` and ``G_bank.npy`` instead (the README's
``docs/hubness.png`` was drawn that way from the project's full 5,000-pair WordNet set).

    python examples/plot_hubness.py [hubness.png] [--data DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dbnorm_qdrant import normalize  # noqa: E402
from dbnorm_qdrant.datasets import load_sample  # noqa: E402
from dbnorm_qdrant.eval.metrics import hubness_metrics, k_occurrence, retrieval_metrics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="hubness.png", help="the PNG to write")
    ap.add_argument("--data", type=Path, help="a folder of Q_test/G_test/Q_bank/G_bank .npy files")
    args = ap.parse_args()
    if args.data is None:
        s = load_sample()
        Q, G, QB, GB = s.queries, s.gallery, s.query_bank, s.gallery_bank
    else:
        names = ("Q_test", "G_test", "Q_bank", "G_bank")
        missing = [n for n in names if not (args.data / f"{n}.npy").is_file()]
        if missing:
            ap.error(f"--data {args.data}: no {', '.join(m + '.npy' for m in missing)} there; "
                     "point it at a folder holding all four, or leave it out to use the shipped sample")
        Q, G, QB, GB = (np.load(args.data / f"{n}.npy", allow_pickle=False) for n in names)

    S = Q @ G.T  # query i's answer is gallery item i
    N = normalize(S, "dualis", query_bank_sims=QB @ G.T, gallery_bank_sims=GB @ G.T)
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=130)
    bins = np.arange(0, 160, 4)
    for M, label, color in ((S, "raw cosine", "#d62728"), (N, "DualIS (dbnorm-qdrant)", "#1f77b4")):
        occ = k_occurrence(M, 10)
        h, r = hubness_metrics(occurrence=occ, k=10), retrieval_metrics(M)
        text = f"{label}: R@1 {r['R1']:.1f}%, k-skew {h['k_skewness']:.2f}, max N10 = {occ.max()}"
        print(text)
        ax.hist(np.minimum(occ, bins[-1] - 1), bins=bins, alpha=0.6, color=color, label=text)
    ax.set_yscale("log")
    ax.set_xlabel(f"N10(g): how many of {len(Q):,} queries have item g in their top 10")
    ax.set_ylabel("gallery items")
    ax.set_title("Hubs on WordNet reverse-dictionary retrieval (all-MiniLM-L6-v2)")
    ax.legend(fontsize=7.5)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
