"""Quickstart: hubness normalisation on real embeddings, at the vector level.

Runs on the sample shipped with the package (WordNet definitions -> lemma lists,
all-MiniLM-L6-v2 embeddings; see ``dbnorm_qdrant.datasets``), so it needs nothing but
``pip install dbnorm-qdrant``. Prints raw vs normalised recall and hubness.

    python examples/quickstart.py
"""

from __future__ import annotations

from dbnorm_qdrant import BankNormalizer, evaluate, tune
from dbnorm_qdrant.datasets import load_sample


def main() -> None:
    s = load_sample()
    Q, G = s.queries, s.gallery  # 1,500 test pairs: Q[i] <-> G[i]
    QB, GB = s.query_bank, s.gallery_bank  # 2,500 bank pairs (never the test set)

    # 1. choose method and betas on a validation split carved from the banks
    res = tune(QB, GB, paired=True)
    print(res.reason)

    # 2. gallery statistics once (index time), then score queries (query time)
    norm = BankNormalizer(QB, GB, params=res.params)
    stats = norm.gallery_stats(G)
    scores, ids = norm.search(Q, G, stats, top_k=10)  # best first

    S = Q @ G.T  # raw cosine
    raw = evaluate(S)
    new = evaluate(norm.scores(Q, G, stats))
    print(f"\n{'':24s}{'R@1':>8s}{'R@5':>8s}{'R@10':>8s}{'k-skew':>8s}")
    label = res.params.method + (" + centering" if res.params.center else "")
    for name, m in (("raw cosine", raw), (label, new)):
        print(f"{name:24s}{m['R1']:8.2f}{m['R5']:8.2f}{m['R10']:8.2f}{m['k_skewness']:8.2f}")
    raw_top1 = S.argmax(axis=1)
    i = next(i for i in range(len(Q)) if ids[i, 0] == i != raw_top1[i])  # the first query it fixed
    print(f"\nquery {i}: {s.query_texts[i]!r}")
    print(f"  raw top-1:        {s.gallery_texts[raw_top1[i]]!r}")
    print(f"  normalised top-3: {[s.gallery_texts[j] for j in ids[i, :3]]} (score {scores[i, 0]:.3f})")


if __name__ == "__main__":
    main()
