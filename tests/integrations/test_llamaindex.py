"""The LlamaIndex retriever and node postprocessor on real llama-index-core /
llama-index-vector-stores-qdrant, local-mode Qdrant, the shipped WordNet sample."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core", reason="LlamaIndex is not installed: pip install 'dbnorm-qdrant[llamaindex]'")
pytest.importorskip("llama_index.vector_stores.qdrant",
                    reason="llama-index-vector-stores-qdrant is not installed: pip install 'dbnorm-qdrant[llamaindex]'")
pytest.importorskip("llama_index.retrievers.dbnorm_qdrant",
                    reason="the adapter is not installed: pip install -e integrations/llama-index-dbnorm-qdrant")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters  # noqa: E402
from llama_index.postprocessor.dbnorm_qdrant import RAW_SCORE_KEY, SCORE_KEY, DBNormPostprocessor  # noqa: E402
from llama_index.retrievers.dbnorm_qdrant import DBNormRetriever  # noqa: E402
from llama_index.vector_stores.qdrant import QdrantVectorStore  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402
from wordnet_data import MIN_GAIN, N, NQ, NQ_PP, PARAMS, core_top1, r_at_1  # noqa: E402

from dbnorm_qdrant import InputError  # noqa: E402
from dbnorm_qdrant.core.methods import Params  # noqa: E402


class StoredEmbedding(BaseEmbedding):
    """Returns the stored all-MiniLM-L6-v2 vector of a known text."""

    _vectors: dict = PrivateAttr()

    def __init__(self, vectors, **kw):
        super().__init__(model_name="stored", **kw)
        self._vectors = vectors

    def _get_query_embedding(self, query):
        return self._vectors[query].tolist()

    async def _aget_query_embedding(self, query):
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text):
        return self._vectors[text].tolist()


@pytest.fixture(scope="module")
def index(wn):
    store = QdrantVectorStore(collection_name="li", client=QdrantClient(":memory:"))
    nodes = [TextNode(id_=pid, text=t, embedding=v.tolist(), metadata={"i": i})
             for i, (pid, t, v) in enumerate(zip(wn["ids"], wn["g_text"], wn["G"]))]
    embed = StoredEmbedding(wn["vectors"])
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed)
    # without hybrid search the store creates one unnamed vector (the core's using=None)
    assert not isinstance(store.client.get_collection("li").config.params.vectors, dict)
    return index


def test_retriever_r1_beats_plain_and_equals_core(index, banks, core_ids, wn):
    plain = index.as_retriever(similarity_top_k=3)
    plain_res = [plain.retrieve(q) for q in wn["q_text"]]
    retriever = DBNormRetriever(index, banks=banks, params=PARAMS, candidates=N, similarity_top_k=3)
    res = [retriever.retrieve(q) for q in wn["q_text"]]
    ids = [r[0].node.node_id for r in res]
    r_plain = r_at_1([r[0].node.node_id for r in plain_res], wn)
    r_adapter, r_core = r_at_1(ids, wn), r_at_1(core_ids, wn)
    print(f"\nLlamaIndex retriever R@1 on {NQ} queries: plain {r_plain:.3f}  adapter {r_adapter:.3f}  core {r_core:.3f}")
    assert NQ >= 1000 and r_adapter - r_plain >= MIN_GAIN
    assert ids == core_ids
    assert core_top1(index.vector_store.client, "li", wn["Q"], banks, n=50) == core_ids[:50]  # the core on this store
    top = res[0]
    assert [n.score for n in top] == sorted((n.score for n in top), reverse=True) and len(top) == 3
    n0 = top[0].node
    assert n0.text == wn["g_text"][n0.metadata["i"]] and n0.metadata[SCORE_KEY] == top[0].score
    assert SCORE_KEY in n0.excluded_llm_metadata_keys and RAW_SCORE_KEY in n0.excluded_embed_metadata_keys
    raw = {n.node.node_id: n.score for n in plain.retrieve(wn["q_text"][0])}
    assert n0.metadata[RAW_SCORE_KEY] == pytest.approx(raw[n0.node_id], abs=1e-5)


def test_postprocessor_r1_beats_plain_and_equals_core(index, banks, core_ids, wn):
    """Reranks the plain retriever's N nodes (fewer queries: LlamaIndex parses N nodes per query)."""
    qs, truth = wn["q_text"][:NQ_PP], {"ids": wn["ids"][:NQ_PP]}
    plain = index.as_retriever(similarity_top_k=N)
    pp = DBNormPostprocessor(index, banks=banks, params=PARAMS, top_n=2)
    plain_ids, ids = [], []
    for q in qs:
        bundle = QueryBundle(q)
        nodes = plain.retrieve(bundle)  # sets bundle.embedding, as in a query engine
        plain_ids.append(nodes[0].node.node_id)
        before = [(n.node.metadata.copy(), list(n.node.excluded_llm_metadata_keys), n.score) for n in nodes]
        out = pp.postprocess_nodes(nodes, bundle)
        assert len(out) == 2
        # the caller's nodes are left as they were: the scores go on copies
        assert [(n.node.metadata, n.node.excluded_llm_metadata_keys, n.score) for n in nodes] == before
        assert SCORE_KEY in out[0].node.metadata and out[0].node.metadata[RAW_SCORE_KEY] is not None
        ids.append(out[0].node.node_id)
    r_plain, r_pp = r_at_1(plain_ids, truth), r_at_1(ids, truth)
    print(f"\nLlamaIndex postprocessor R@1 on {NQ_PP} queries (N={N} nodes each): plain {r_plain:.3f}  "
          f"postprocessor {r_pp:.3f}  core {r_at_1(core_ids[:NQ_PP], truth):.3f}")
    assert r_pp - r_plain >= MIN_GAIN and ids == core_ids[:NQ_PP]


def test_query_engine_sync_async_and_config(index, banks, wn):
    qs = wn["q_text"][:4]
    nz = banks.normalizer(Params(**PARAMS), unit=True)
    r1 = DBNormRetriever(index, normalizer=nz, candidates=N, similarity_top_k=2)
    r2 = DBNormRetriever(index, banks=banks, params=Params(**PARAMS), candidates=N, similarity_top_k=2)
    ids = lambda res: [n.node.node_id for n in res]  # noqa: E731
    sync = [ids(r1.retrieve(q)) for q in qs]
    assert sync == [ids(r2.retrieve(q)) for q in qs]
    assert [ids(asyncio.run(r1.aretrieve(q))) for q in qs] == sync
    # the postprocessor in a query engine: sync (embedding on the QueryBundle) and async (embedded again)
    pp = DBNormPostprocessor(index, normalizer=nz, top_n=2)
    engine = RetrieverQueryEngine.from_args(index.as_retriever(similarity_top_k=N), llm=MockLLM(),
                                            node_postprocessors=[pp])
    assert [ids(engine.retrieve(QueryBundle(q))) for q in qs] == sync
    # async: the bundle comes without its embedding; the postprocessor embeds with the index's model
    nodes = [index.as_retriever(similarity_top_k=N).retrieve(q) for q in qs]
    assert [ids(asyncio.run(pp.apostprocess_nodes(n, QueryBundle(q)))) for n, q in zip(nodes, qs)] == sync
    # filters reach the candidates; banks built from the store's own collection
    flt = MetadataFilters(filters=[MetadataFilter(key="i", value=1000, operator=">=")])
    r3 = DBNormRetriever(index, query_bank=wn["QB"], gallery_sample=500, params=PARAMS, filters=flt)
    assert all(n.node.metadata["i"] >= 1000 for n in r3.retrieve(qs[0]))


def test_bad_inputs(index, banks, wn):
    emb = index._embed_model
    with pytest.raises(InputError, match="Qdrant-backed"):
        DBNormRetriever(VectorStoreIndex([], embed_model=emb), banks=banks)
    with pytest.raises(InputError, match="Qdrant-backed"):
        DBNormPostprocessor(VectorStoreIndex([], embed_model=emb), banks=banks)
    with pytest.raises(InputError, match="no banks"):
        DBNormRetriever(index)
    # the store alone: no embed model to embed a query that comes without its embedding
    pp = DBNormPostprocessor(index.vector_store, banks=banks, params=PARAMS)
    nodes = index.as_retriever(similarity_top_k=5).retrieve(wn["q_text"][0])
    with pytest.raises(InputError, match="no embedding"):
        pp.postprocess_nodes(nodes, query_str=wn["q_text"][0])
    with pytest.raises(InputError, match="no embedding"):
        DBNormRetriever(index.vector_store, banks=banks).retrieve(wn["q_text"][0])
    vec = emb.get_query_embedding(wn["q_text"][0])
    alien = [NodeWithScore(node=TextNode(id_="not-a-point-id", text="x"), score=1.0)]
    with pytest.raises(InputError, match="not a Qdrant point id"):
        pp.postprocess_nodes(alien, QueryBundle("x", embedding=vec))
    stranger = [NodeWithScore(node=TextNode(text="x"), score=1.0)]  # a fresh UUID: not in the collection
    with pytest.raises(InputError, match="not points of collection"):
        pp.postprocess_nodes(nodes + stranger, QueryBundle("x", embedding=vec))
    # empty: the collection does not exist yet / exists without points
    client = QdrantClient(":memory:")
    with pytest.raises(InputError, match="store is empty"):
        DBNormRetriever(QdrantVectorStore(collection_name="none", client=client), banks=banks, embed_model=emb)
    client.create_collection("empty", vectors_config={"text-dense": models.VectorParams(
        size=384, distance=models.Distance.COSINE)})
    with pytest.raises(InputError, match="empty"):
        DBNormPostprocessor(QdrantVectorStore(collection_name="empty", client=client), query_bank=wn["QB"],
                            gallery_sample=100, params=PARAMS)


def test_wrong_argument_types_are_input_errors(index, banks):
    for cls in (DBNormRetriever, DBNormPostprocessor):
        with pytest.raises(InputError, match="banks must be a dbnorm_qdrant.qdrant.BankSet.*BankSet.from_arrays"):
            cls(index, banks=[[0.0]])
        with pytest.raises(InputError, match="normalizer must be a BankNormalizer.*build one"):
            cls(index, normalizer="dualis")
        with pytest.raises(InputError, match="params must be a Params or a dict"):
            cls(index, banks=banks, params=3)
        with pytest.raises(InputError, match=r"params: unknown field\(s\) \['methd'\]"):
            cls(index, banks=banks, params={"methd": "is"})


def test_postprocessor_leaves_out_a_node_an_audit_quarantined(index, banks, wn, monkeypatch):
    """The plain retriever still returns a quarantined point; the postprocessor drops it instead
    of calling it foreign."""
    from dbnorm_qdrant.qdrant.quarantine import Quarantine

    monkeypatch.setattr(Quarantine, "check_s", 0.0)
    client = index.vector_store.client
    bundle = QueryBundle(wn["q_text"][0])
    nodes = index.as_retriever(similarity_top_k=5).retrieve(bundle)
    marked = nodes[1].node.node_id
    client.set_payload("li", payload={"quarantined": True}, points=[marked], key="_dbnorm")
    try:
        out = DBNormPostprocessor(index, banks=banks, params=PARAMS).postprocess_nodes(nodes, bundle)
        assert len(out) == 4 and marked not in {n.node.node_id for n in out}
    finally:
        client.delete_payload("li", keys=["_dbnorm.quarantined"], points=[marked])
