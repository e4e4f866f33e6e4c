"""Quickstart: hubness normalisation on real embeddings, matrix and vector level.

Uses the WordNet reverse-dictionary set in ../shared/data (definition -> lemma list,
all-MiniLM-L6-v2 embeddings). Prints raw vs normalised recall and hubness.

    python examples/quickstart.py [--set wordnet_gloss|bible_kjv_web]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from dbnorm_qdrant import BankNormalizer, evaluate, tune

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="wordnet_gloss", choices=["wordnet_gloss", "bible_kjv_web"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    d = DATA / args.set
    Q, G = np.load(d / "Q_test.npy"), np.load(d / "G_test.npy")  # 5000 test pairs: Q[i] <-> G[i]
    QB, GB = np.load(d / "Q_bank.npy"), np.load(d / "G_bank.npy")  # 10000 bank pairs (never the test set)

    # 1. choose method and betas on a validation split of the banks
    res = tune(QB, GB, paired=True)
    print(res.reason)

    # 2. gallery statistics once (index time), then score queries (query time)
    norm = BankNormalizer(QB, GB, params=res.params)
    stats = norm.gallery_stats(G)
    idx, _ = norm.search(Q, G, stats, top_k=10)

    raw = evaluate(Q @ G.T)
    new = evaluate(norm.scores(Q, G, stats))
    print(f"\n{'':24s}{'R@1':>8s}{'R@5':>8s}{'R@10':>8s}{'k-skew':>8s}")
    for name, m in (("raw cosine", raw), (f"{res.params.method}{' + centring' if res.params.center else ''}", new)):
        print(f"{name:24s}{m['R1']:8.2f}{m['R5']:8.2f}{m['R10']:8.2f}{m['k_skewness']:8.2f}")
    print(f"\nquery 0 top-3 after normalisation: {idx[0, :3].tolist()} (correct item: 0)")


if __name__ == "__main__":
    main()
