"""The LlamaIndex retriever and node postprocessor on a hybrid ``QdrantVectorStore``
(``enable_hybrid=True``, BM25 ``sparse_doc_fn`` / ``sparse_query_fn`` over
``dbnorm_qdrant.edge.BM25Encoder``), real llama-index-core / llama-index-vector-stores-qdrant,
local-mode Qdrant, the shipped WordNet sample.

The store runs hybrid search itself: a dense and a sparse request in one ``query_batch_points``,
fused on the client by its ``hybrid_fusion_fn`` (``relative_score_fusion``); the adapters must
give exactly that fusion over DBNormClient's dense ranking and the plain sparse one."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("llama_index.core", reason="LlamaIndex is not installed: pip install 'dbnorm-qdrant[llamaindex]'")
pytest.importorskip("llama_index.vector_stores.qdrant",
                    reason="llama-index-vector-stores-qdrant is not installed: pip install 'dbnorm-qdrant[llamaindex]'")
pytest.importorskip("llama_index.retrievers.dbnorm_qdrant",
                    reason="the adapter is not installed: pip install -e integrations/llama-index-dbnorm-qdrant")
pytest.importorskip("qdrant_edge", reason="the BM25 encoder needs qdrant-edge-py: pip install 'dbnorm-qdrant[edge]'")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from llama_index.postprocessor.dbnorm_qdrant import SCORE_KEY, DBNormPostprocessor  # noqa: E402
from llama_index.retrievers.dbnorm_qdrant import DBNormRetriever  # noqa: E402
from llama_index.vector_stores.qdrant import QdrantVectorStore  # noqa: E402
from llama_index.vector_stores.qdrant.utils import relative_score_fusion  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402
from test_llamaindex import StoredEmbedding  # noqa: E402
from wordnet_data import K_H, N, NQ_H, PARAMS, r_at_1  # noqa: E402

from dbnorm_qdrant import InputError  # noqa: E402
from dbnorm_qdrant.edge import BM25Encoder  # noqa: E402
from dbnorm_qdrant.qdrant import DBNormClient  # noqa: E402

_BM25 = BM25Encoder()


def sparse_doc_fn(texts):
    """The store's sparse_doc_fn: (indices, values) lists of each text's BM25 vector."""
    vs = _BM25.embed_documents(texts)
    return [v.indices for v in vs], [v.values for v in vs]


def sparse_query_fn(texts):
    vs = [_BM25.embed_query(t) for t in texts]
    return [v.indices for v in vs], [v.values for v in vs]


@pytest.fixture(scope="module")
def index(wn):
    store = QdrantVectorStore(collection_name="lih", client=QdrantClient(":memory:"), enable_hybrid=True,
                              sparse_doc_fn=sparse_doc_fn, sparse_query_fn=sparse_query_fn,
                              sparse_config=models.SparseVectorParams(modifier=models.Modifier.IDF))
    nodes = [TextNode(id_=pid, text=t, embedding=v.tolist(), metadata={"i": i}, excluded_embed_metadata_keys=["i"])
             for i, (pid, t, v) in enumerate(zip(wn["ids"], wn["g_text"], wn["G"]))]
    return VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                            embed_model=StoredEmbedding(wn["vectors"]))


def _reference(db, store, query, vector, k, flt=None, alpha=0.5):
    """The store's fusion of DBNormClient's dense ranking and the plain sparse ranking (each of ``k``):
    ``{node id: fused score}``."""
    dense = db.query_points(store.collection_name, query=vector, using=store.dense_vector_name, limit=k,
                            query_filter=flt, candidates=N).points
    idx, val = sparse_query_fn([query])
    sparse = db.client.query_points(store.collection_name, query=models.SparseVector(indices=idx[0], values=val[0]),
                                    using=store.sparse_vector_name, limit=k, query_filter=flt, with_payload=True).points
    fused = relative_score_fusion(store.parse_to_query_result(dense), store.parse_to_query_result(sparse),
                                  alpha=alpha, top_k=k)
    return dict(zip(fused.ids, fused.similarities))


def _ids(res):
    return [n.node.node_id for n in res]


def test_hybrid_retriever_normalises_the_dense_branch(index, banks, wn):
    store = index.vector_store
    qs = wn["q_text"][:NQ_H]
    plain = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=K_H)
    retriever = DBNormRetriever(index, banks=banks, params=PARAMS, candidates=N, similarity_top_k=K_H,
                                vector_store_query_mode="hybrid")
    plain_res = [plain.retrieve(q) for q in qs]
    res = [retriever.retrieve(q) for q in qs]
    truth = {"ids": wn["ids"][:NQ_H]}
    r_plain, r_norm = r_at_1([r[0].node.node_id for r in plain_res], truth), r_at_1([r[0].node.node_id for r in res],
                                                                                    truth)
    print(f"\nLlamaIndex hybrid (relative-score fusion, k={K_H}) R@1 on {NQ_H} queries: plain {r_plain:.3f}  "
          f"normalised {r_norm:.3f}")
    assert r_norm >= r_plain
    assert sum(_ids(a) != _ids(b) for a, b in zip(plain_res, res)) >= NQ_H // 10
    db = DBNormClient(store.client, banks=banks, params=PARAMS)
    for q, got in list(zip(qs, res))[:10]:
        want = _reference(db, store, q, wn["vectors"][q].tolist(), K_H)
        assert {n.node.node_id: n.score for n in got} == pytest.approx(want, rel=1e-6)
        assert got[0].node.metadata[SCORE_KEY] == got[0].score
    assert store._client is db.client  # the user's store still queries its own client
    # alpha, sparse_top_k and filters reach the store's query; async gives the same
    flt = models.Filter(must=[models.FieldCondition(key="i", range=models.Range(gte=700))])
    r2 = DBNormRetriever(index, banks=banks, params=PARAMS, candidates=N, similarity_top_k=5,
                         vector_store_query_mode="hybrid", alpha=0.8, qdrant_filters=flt)
    got = r2.retrieve(qs[0])
    assert {n.node.node_id: n.score for n in got} == pytest.approx(
        _reference(db, store, qs[0], wn["vectors"][qs[0]].tolist(), 5, flt, alpha=0.8), rel=1e-6)
    assert [_ids(asyncio.run(retriever.aretrieve(q))) for q in qs[:3]] == [_ids(r) for r in res[:3]]
    # the sparse mode is the store's sparse query, as it is
    sparse = DBNormRetriever(index, banks=banks, params=PARAMS, similarity_top_k=5, vector_store_query_mode="sparse")
    want = index.as_retriever(vector_store_query_mode="sparse", similarity_top_k=5).retrieve(qs[1])
    assert [(n.node.node_id, n.score) for n in sparse.retrieve(qs[1])] == [(n.node.node_id, n.score) for n in want]


def test_hybrid_postprocessor_reranks_the_given_nodes(index, banks, wn):
    store = index.vector_store
    db = DBNormClient(store.client, banks=banks, params=PARAMS)
    base = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=20)
    pp = DBNormPostprocessor(index, banks=banks, params=PARAMS, vector_store_query_mode="hybrid")
    for q in wn["q_text"][:10]:
        bundle = QueryBundle(q)
        nodes = base.retrieve(bundle)
        out = pp.postprocess_nodes(nodes, bundle)
        assert sorted(_ids(out)) == sorted(_ids(nodes))
        flt = models.Filter(must=[models.HasIdCondition(has_id=_ids(nodes))])
        want = _reference(db, store, q, bundle.embedding, len(nodes), flt)
        assert {n.node.node_id: n.score for n in out} == pytest.approx(want, rel=1e-6)
    top = DBNormPostprocessor(index, banks=banks, params=PARAMS, vector_store_query_mode="hybrid", top_n=2)
    assert _ids(top.postprocess_nodes(nodes, bundle)) == _ids(out)[:2]


def test_bad_inputs(index, banks, wn):
    plain = VectorStoreIndex([], storage_context=StorageContext.from_defaults(vector_store=QdrantVectorStore(
        collection_name="plain", client=index.vector_store.client)), embed_model=index._embed_model)
    plain.insert_nodes([TextNode(text="x", embedding=wn["G"][0].tolist())])
    with pytest.raises(InputError, match="enable_hybrid=True"):
        DBNormRetriever(plain, banks=banks, vector_store_query_mode="hybrid")
    with pytest.raises(InputError, match="vector_store_query_mode must be one of"):
        DBNormRetriever(index, banks=banks, vector_store_query_mode="mmr")
    with pytest.raises(InputError, match="vector_store_query_mode must be one of"):
        DBNormPostprocessor(index, banks=banks, vector_store_query_mode="sparse")
    pp = DBNormPostprocessor(index, banks=banks, params=PARAMS, vector_store_query_mode="hybrid")
    nodes = index.as_retriever(similarity_top_k=3).retrieve(wn["q_text"][0])
    with pytest.raises(InputError, match="needs the query text"):
        pp.postprocess_nodes(nodes, QueryBundle(query_str=None, embedding=nodes[0].node.embedding or [0.1] * 384))
    stranger = NodeWithScore(node=TextNode(text="y"), score=1.0)  # a fresh UUID: not in the collection
    with pytest.raises(InputError, match="not points of collection"):
        pp.postprocess_nodes(nodes + [stranger], QueryBundle(wn["q_text"][0]))
