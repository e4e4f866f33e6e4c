"""The LangChain adapters in langchain-qdrant's hybrid and sparse retrieval modes, and the
document compressor, on real langchain-core / langchain-qdrant (/ langchain-classic for the
``ContextualCompressionRetriever``), local-mode Qdrant, the shipped WordNet sample with a BM25
sparse branch (``dbnorm_qdrant.edge.BM25Encoder`` standing in for FastEmbed)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("langchain_core", reason="LangChain is not installed: pip install 'dbnorm-qdrant[langchain]'")
pytest.importorskip("langchain_qdrant", reason="langchain-qdrant is not installed: pip install 'dbnorm-qdrant[langchain]'")
pytest.importorskip("langchain_dbnorm_qdrant",
                    reason="the adapter is not installed: pip install -e integrations/langchain-dbnorm-qdrant")
pytest.importorskip("qdrant_edge", reason="the BM25 encoder needs qdrant-edge-py: pip install 'dbnorm-qdrant[edge]'")

from langchain_core.documents import Document  # noqa: E402
from langchain_dbnorm_qdrant import RAW_SCORE_KEY, SCORE_KEY, DBNormCompressor, DBNormRetriever  # noqa: E402
from langchain_qdrant import QdrantVectorStore, RetrievalMode, SparseEmbeddings, SparseVector  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion  # noqa: E402
from test_langchain import StoredEmbeddings  # noqa: E402
from wordnet_data import K_H, N, NQ_H, PARAMS, core_top1, r_at_1  # noqa: E402

from dbnorm_qdrant import InputError  # noqa: E402
from dbnorm_qdrant.edge import BM25Encoder  # noqa: E402
from dbnorm_qdrant.qdrant import DBNormClient  # noqa: E402


class BM25Sparse(SparseEmbeddings):
    """langchain-qdrant's sparse-embedding interface over the offline BM25 encoder (FastEmbed's
    models cannot be downloaded here)."""

    def __init__(self) -> None:
        self.enc = BM25Encoder()

    def embed_documents(self, texts):
        return [SparseVector(indices=v.indices, values=v.values) for v in self.enc.embed_documents(texts)]

    def embed_query(self, text):
        v = self.enc.embed_query(text)
        return SparseVector(indices=v.indices, values=v.values)


@pytest.fixture(scope="module")
def stores(wn):
    """One collection (dense vector ``dense``, sparse ``words`` with Qdrant's IDF modifier), seen by a
    store in each retrieval mode."""
    client = QdrantClient(":memory:")
    client.create_collection(
        "h", vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
        sparse_vectors_config={"words": models.SparseVectorParams(modifier=models.Modifier.IDF)})
    emb, sparse = StoredEmbeddings(wn["vectors"]), BM25Sparse()
    out = {mode: QdrantVectorStore(client, "h", embedding=emb, retrieval_mode=mode, vector_name="dense",
                                   sparse_vector_name="words", sparse_embedding=sparse)
           for mode in RetrievalMode}
    out[RetrievalMode.HYBRID].add_texts(wn["g_text"], metadatas=[{"i": i} for i in range(len(wn["g_text"]))],
                                        ids=wn["ids"], batch_size=512)
    return out


@pytest.fixture(scope="module")
def db(stores, banks):
    return DBNormClient(stores[RetrievalMode.HYBRID].client, banks=banks, params=PARAMS, candidates=N)


def _ids(docs):
    return [d.metadata["_id"] for d in docs]


def _reference(db, wn, query, k, flt=None, fuse=reciprocal_rank_fusion):
    """The fusion (qdrant-client's own formulas) of DBNormClient's dense ranking and the plain
    sparse ranking, each of ``k``: what the hybrid request must give (``{id: fused score}``)."""
    dense = db.query_points("h", query=wn["vectors"][query].tolist(), using="dense", limit=k, query_filter=flt,
                            candidates=N).points
    v = BM25Encoder().embed_query(query)
    sparse = db.client.query_points("h", query=v, using="words", limit=k, query_filter=flt).points
    return {p.id: p.score for p in fuse([dense, sparse], limit=k)}


def test_hybrid_keeps_the_request_and_normalises_its_dense_branch(stores, banks, db, wn):
    store = stores[RetrievalMode.HYBRID]
    retriever = DBNormRetriever.from_vector_store(store, banks=banks, params=PARAMS, candidates=N, k=K_H)
    assert retriever.retrieval_mode == "hybrid" and retriever.sparse_vector_name == "words"
    qs = wn["q_text"][:NQ_H]
    plain = [store.similarity_search(q, k=K_H) for q in qs]
    docs = [retriever.invoke(q) for q in qs]
    truth = {"ids": wn["ids"][:NQ_H]}
    r_plain, r_norm = r_at_1([d[0].metadata["_id"] for d in plain], truth), r_at_1([d[0].metadata["_id"] for d in docs],
                                                                                   truth)
    print(f"\nLangChain hybrid (RRF, k={K_H}) R@1 on {NQ_H} queries: plain {r_plain:.3f}  normalised {r_norm:.3f}")
    assert r_norm >= r_plain
    assert sum(_ids(a) != _ids(b) for a, b in zip(plain, docs)) >= NQ_H // 10  # the dense branch did change
    # the request is the store's (a prefetch of k per branch, RRF) over DBNormClient's dense ranking
    for q, got in list(zip(qs, docs))[:10]:
        assert {d.metadata["_id"]: d.metadata[SCORE_KEY] for d in got} == pytest.approx(_reference(db, wn, q, K_H),
                                                                                        rel=1e-6)
        assert got[0].page_content == wn["g_text"][got[0].metadata["i"]] and got[0].metadata[RAW_SCORE_KEY] is None
    # per-call options reach the request: k, a filter on the user's metadata, another fusion
    flt = models.Filter(must=[models.FieldCondition(key="metadata.i", range=models.Range(gte=700))])
    got = retriever.invoke(qs[0], k=3, filter=flt)
    assert _ids(got) == list(_reference(db, wn, qs[0], 3, flt)) and all(d.metadata["i"] >= 700 for d in got)
    dbsf = retriever.invoke(qs[1], hybrid_fusion=models.FusionQuery(fusion=models.Fusion.DBSF))
    want = _reference(db, wn, qs[1], K_H, fuse=distribution_based_score_fusion)
    assert {d.metadata["_id"]: d.metadata[SCORE_KEY] for d in dbsf} == pytest.approx(want, rel=1e-6)
    # async (no async client: the sync path off the event loop) and batch give the same
    assert [_ids(d) for d in asyncio.run(retriever.abatch(qs[:3]))] == [_ids(d) for d in docs[:3]]


def test_sparse_mode_runs_as_is_and_dense_mode_is_the_core(stores, banks, wn):
    qs = wn["q_text"][:10]
    sparse_store = stores[RetrievalMode.SPARSE]
    sparse = DBNormRetriever.from_vector_store(sparse_store, banks=banks, params=PARAMS, k=5)
    for q in qs:
        want = sparse_store.similarity_search_with_score(q, k=5)
        got = sparse.invoke(q)
        assert _ids(got) == [d.metadata["_id"] for d, _ in want]
        assert [d.metadata[SCORE_KEY] for d in got] == pytest.approx([s for _, s in want], rel=1e-6)
    dense = DBNormRetriever.from_vector_store(stores[RetrievalMode.DENSE], banks=banks, params=PARAMS, candidates=N,
                                              k=1)
    ids = [dense.invoke(q)[0].metadata["_id"] for q in wn["q_text"][:30]]
    assert ids == core_top1(sparse_store.client, "h", wn["Q"], banks, using="dense", n=30)


def test_compressor_in_a_contextual_compression_retriever(stores, banks, db, wn):
    ccr = pytest.importorskip("langchain_classic.retrievers",
                              reason="ContextualCompressionRetriever lives in langchain-classic: pip install "
                                     "langchain-classic").ContextualCompressionRetriever
    qs = wn["q_text"][:20]
    # dense: the user's plain retriever of N, reordered = the core's ranking of the same N candidates
    dense_store = stores[RetrievalMode.DENSE]
    chain = ccr(base_compressor=DBNormCompressor.from_vector_store(dense_store, banks=banks, params=PARAMS, top_n=2),
                base_retriever=dense_store.as_retriever(search_kwargs={"k": N}))
    out = [chain.invoke(q) for q in qs]
    assert all(len(d) == 2 for d in out)
    assert [d[0].metadata["_id"] for d in out] == core_top1(dense_store.client, "h", wn["Q"], banks, using="dense",
                                                            n=len(qs))
    assert [_ids(d) for d in asyncio.run(chain.abatch(qs[:3]))] == [_ids(d) for d in out[:3]]
    # hybrid: the store's request restricted to the given documents, all of them ranked
    store = stores[RetrievalMode.HYBRID]
    comp = DBNormCompressor.from_vector_store(store, banks=banks, params=PARAMS)
    base = store.as_retriever(search_kwargs={"k": 20})
    for q in qs[:10]:
        given = base.invoke(q)
        before = [(d.page_content, dict(d.metadata)) for d in given]
        got = comp.compress_documents(given, q)
        assert [(d.page_content, d.metadata) for d in given] == before  # the caller's documents are unchanged
        by_id = {d.metadata["_id"]: d for d in given}
        assert sorted(_ids(got)) == sorted(by_id) and all(
            d.page_content == by_id[d.metadata["_id"]].page_content
            and d.metadata == {**by_id[d.metadata["_id"]].metadata, SCORE_KEY: d.metadata[SCORE_KEY], RAW_SCORE_KEY: None}
            for d in got)
        want = _reference(db, wn, q, len(given), models.Filter(must=[models.HasIdCondition(has_id=list(by_id))]))
        assert {d.metadata["_id"]: d.metadata[SCORE_KEY] for d in got} == pytest.approx(want, rel=1e-6)
        assert [d.metadata[SCORE_KEY] for d in got] == sorted((d.metadata[SCORE_KEY] for d in got), reverse=True)


def test_async_client_runs_the_same_requests(banks, wn):
    """With an AsyncQdrantClient, ainvoke / acompress_documents send the same hybrid requests on it
    (two in-memory clients holding the same 300 points)."""
    from qdrant_client import AsyncQdrantClient

    n, sync, aclient = 300, QdrantClient(":memory:"), AsyncQdrantClient(":memory:")
    create = dict(collection_name="h", vectors_config={"dense": models.VectorParams(
        size=384, distance=models.Distance.COSINE)}, sparse_vectors_config={"words": models.SparseVectorParams(
            modifier=models.Modifier.IDF)})
    points = [models.PointStruct(id=wn["ids"][i], vector={"dense": wn["G"][i].tolist(), "words": v},
                                 payload={"page_content": wn["g_text"][i], "metadata": {"i": i}})
              for i, v in enumerate(BM25Encoder().embed_documents(wn["g_text"][:n]))]
    sync.create_collection(**create)
    sync.upsert("h", points)

    async def fill():
        await aclient.create_collection(**create)
        await aclient.upsert("h", points)

    asyncio.run(fill())
    retriever = DBNormRetriever.from_client(
        sync, "h", StoredEmbeddings(wn["vectors"]), retrieval_mode="hybrid", sparse_embeddings=BM25Sparse(),
        vector_name="dense", sparse_vector_name="words", banks=banks, params=PARAMS, candidates=N, k=5,
        async_client=aclient)
    comp = DBNormCompressor(retriever=retriever)
    for q in wn["q_text"][:3]:
        got = retriever.invoke(q)
        assert [(d.metadata["_id"], d.metadata[SCORE_KEY]) for d in asyncio.run(retriever.ainvoke(q))] == \
            [(d.metadata["_id"], d.metadata[SCORE_KEY]) for d in got]
        given = got[::-1]
        assert _ids(asyncio.run(comp.acompress_documents(given, q))) == _ids(comp.compress_documents(given, q))


def test_bad_inputs(stores, banks, wn):
    store = stores[RetrievalMode.HYBRID]
    emb = StoredEmbeddings(wn["vectors"])
    with pytest.raises(InputError, match="needs the sparse branch"):
        DBNormRetriever.from_client(store.client, "h", emb, banks=banks, retrieval_mode="hybrid", vector_name="dense")
    with pytest.raises(InputError, match="retrieval_mode must be one of"):
        DBNormRetriever.from_client(store.client, "h", emb, banks=banks, retrieval_mode="mmr")
    with pytest.raises(InputError, match="sparse-only"):
        DBNormCompressor.from_vector_store(stores[RetrievalMode.SPARSE], banks=banks)
    with pytest.raises(InputError, match="top_n must be"):
        DBNormCompressor.from_vector_store(store, banks=banks, top_n=0)
    with pytest.raises(InputError, match="retriever must be a DBNormRetriever"):
        DBNormCompressor(retriever=store.as_retriever())
    comp = DBNormCompressor.from_vector_store(store, banks=banks, params=PARAMS)
    q = wn["q_text"][0]
    docs = store.similarity_search(q, k=5)
    with pytest.raises(InputError, match="not from collection 'h'"):
        comp.compress_documents([Document(page_content="x")], q)
    with pytest.raises(InputError, match="not from collection 'h'"):
        comp.compress_documents([Document(page_content="x", metadata={"_id": 1, "_collection_name": "other"})], q)
    with pytest.raises(InputError, match="not a Qdrant point id"):
        comp.compress_documents([Document(page_content="x", metadata={"_id": "doc-7"})], q)
    stranger = Document(page_content="x", metadata={"_id": "00000000-0000-0000-0000-000000000001"})
    with pytest.raises(InputError, match="not points of collection 'h'"):
        comp.compress_documents(docs + [stranger], q)
    assert comp.compress_documents([], q) == []
