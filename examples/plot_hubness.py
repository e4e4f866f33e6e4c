"""Draw the README's picture: k-occurrence before and after normalisation (wordnet_gloss).

    python examples/plot_hubness.py docs/hubness.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dbnorm_qdrant import normalize  # noqa: E402
from dbnorm_qdrant.eval.metrics import hubness_metrics, k_occurrence, retrieval_metrics  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet_gloss"


def main(out: str = "docs/hubness.png") -> None:
    Q, G = np.load(DATA / "Q_test.npy"), np.load(DATA / "G_test.npy")
    QB, GB = np.load(DATA / "Q_bank.npy"), np.load(DATA / "G_bank.npy")
    S = Q @ G.T
    N = normalize(S, "dualis", query_bank_sims=QB @ G.T, gallery_bank_sims=GB @ G.T)
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=130)
    bins = np.arange(0, 160, 4)
    for M, label, color in ((S, "raw cosine", "#d62728"), (N, "DualIS (dbnorm-qdrant)", "#1f77b4")):
        occ = k_occurrence(M, 10)
        h, r = hubness_metrics(occurrence=occ, k=10), retrieval_metrics(M)
        ax.hist(np.minimum(occ, bins[-1] - 1), bins=bins, alpha=0.6, color=color,
                label=f"{label}: R@1 {r['R1']:.1f}%, k-skew {h['k_skewness']:.2f}, max N10 = {occ.max()}")
    ax.set_yscale("log")
    ax.set_xlabel("N10(g): how many of 5,000 queries have item g in their top 10")
    ax.set_ylabel("gallery items")
    ax.set_title("Hubs on WordNet reverse-dictionary retrieval (all-MiniLM-L6-v2)")
    ax.legend(fontsize=7.5)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
