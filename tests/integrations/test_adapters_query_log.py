"""The query log through the framework adapters (issue 15, docs/lifecycle.md section 2), on real
langchain-core / langchain-qdrant and llama-index-core / llama-index-vector-stores-qdrant, local-mode
Qdrant, the first ``NG`` items of the shipped WordNet sample.

Every adapter sends its queries through the wrapper it is given (``db=``), so a wrapper built with
``query_log=`` and no banks serves them from its cold start and logs exactly the query vectors they
send: one per query (the dense branch of a hybrid request; the plain base retriever of a reranker
chain runs on the user's client and is not logged). A wrapper with ``log_sample_rate=0.0`` serves
the same and logs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_dbnorm_qdrant",
                    reason="the adapter is not installed: pip install -e integrations/langchain-dbnorm-qdrant")
pytest.importorskip("llama_index.retrievers.dbnorm_qdrant",
                    reason="the adapter is not installed: pip install -e integrations/llama-index-dbnorm-qdrant")

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_dbnorm_qdrant import SCORE_KEY, DBNormCompressor
from langchain_dbnorm_qdrant import DBNormRetriever as LCRetriever
from langchain_qdrant import QdrantVectorStore as LCStore
from langchain_qdrant import RetrievalMode
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import QueryBundle, TextNode
from llama_index.postprocessor.dbnorm_qdrant import DBNormPostprocessor
from llama_index.retrievers.dbnorm_qdrant import DBNormRetriever as LIRetriever
from llama_index.vector_stores.qdrant import QdrantVectorStore as LIStore
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from test_langchain import StoredEmbeddings
from test_llamaindex import StoredEmbedding
from wordnet_data import PARAMS

from dbnorm_qdrant import InputError
from dbnorm_qdrant.qdrant import AsyncDBNormClient, CollectionConfig, DBNormClient

NG = 400  # collection size: enough for the cold start (CSLS needs more than 10 points), quick to sample
K = 3  # results per query
GIVEN = 20  # the plain base retriever's documents / nodes that a reranker (compressor, postprocessor) reorders
COLD = "the cold start"  # how LifecycleStatus.serving starts while the cold start serves


# ----------------------------------------------------------------------- stores
def _cosine(client: QdrantClient, name: str) -> None:
    client.create_collection(name, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))


@pytest.fixture(scope="module")
def lc_store(wn):
    """A langchain-qdrant store (dense) over collection ``lc`` of its own client."""
    client = QdrantClient(":memory:")
    _cosine(client, "lc")
    store = LCStore(client, "lc", embedding=StoredEmbeddings(wn["vectors"]))
    store.add_texts(wn["g_text"][:NG], metadatas=[{"i": i} for i in range(NG)], ids=wn["ids"][:NG])
    return store


@pytest.fixture(scope="module")
def li_index(wn):
    """A LlamaIndex ``VectorStoreIndex`` over collection ``li`` of its own client."""
    store = LIStore(collection_name="li", client=QdrantClient(":memory:"))
    nodes = [TextNode(id_=pid, text=t, embedding=v.tolist(), metadata={"i": i})
             for i, (pid, t, v) in enumerate(zip(wn["ids"][:NG], wn["g_text"][:NG], wn["G"][:NG]))]
    return VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                            embed_model=StoredEmbedding(wn["vectors"]))


# ------------------------------------------------------------------ the adapters
class Adapter:
    """One adapter over a wrapper: ``sync(qs)`` / ``asyn(qs)`` run queries through it and give the
    ranked ``(id, score)`` lists; ``reference(db, vector)`` is what the wrapper itself gives for
    the same request (a reranker's: restricted to the plain top ``GIVEN``)."""

    def __init__(self, client: QdrantClient, collection: str, sync: Callable, asyn: Callable,
                 reranks: bool) -> None:
        self.client, self.collection, self.sync, self.asyn, self.reranks = client, collection, sync, asyn, reranks

    def reference(self, db: Any, vector: np.ndarray) -> list[tuple[Any, float]]:
        kw: dict[str, Any] = {}
        if self.reranks:
            given = [p.id for p in self.client.query_points(self.collection, vector.tolist(), limit=GIVEN).points]
            kw = {"query_filter": models.Filter(must=[models.HasIdCondition(has_id=given)]), "candidates": GIVEN}
        return [(p.id, p.score) for p in db.query_points(self.collection, vector.tolist(), limit=K, **kw).points]


def _docs(docs) -> list[tuple[Any, float]]:
    return [(d.metadata["_id"], d.metadata[SCORE_KEY]) for d in docs]


def _nodes(nodes) -> list[tuple[Any, float]]:
    return [(n.node.node_id, n.score) for n in nodes]


def _langchain(runnable) -> tuple[Callable, Callable]:
    """invoke + batch, ainvoke + abatch (without an async client: the sync wrapper in threads)."""
    def sync(qs):
        return [_docs(runnable.invoke(qs[0]))] + [_docs(d) for d in runnable.batch(qs[1:])]

    def asyn(qs):
        async def go():
            return [_docs(await runnable.ainvoke(qs[0]))] + [_docs(d) for d in await runnable.abatch(qs[1:])]
        return asyncio.run(go())
    return sync, asyn


def lc_retriever(lc_store, li_index, db) -> Adapter:
    return Adapter(lc_store.client, "lc", *_langchain(LCRetriever.from_vector_store(lc_store, db=db, k=K)),
                   reranks=False)


def lc_compressor(lc_store, li_index, db) -> Adapter:
    chain = ContextualCompressionRetriever(
        base_compressor=DBNormCompressor.from_vector_store(lc_store, db=db, top_n=K),
        base_retriever=lc_store.as_retriever(search_kwargs={"k": GIVEN}))
    return Adapter(lc_store.client, "lc", *_langchain(chain), reranks=True)


def li_retriever(lc_store, li_index, db) -> Adapter:
    r = LIRetriever(li_index, db=db, similarity_top_k=K)
    return Adapter(li_index.vector_store.client, "li", lambda qs: [_nodes(r.retrieve(q)) for q in qs],
                   lambda qs: [_nodes(asyncio.run(r.aretrieve(q))) for q in qs], reranks=False)


def li_postprocessor(lc_store, li_index, db) -> Adapter:
    """In a query engine (the bundle carries the retriever's embedding), and on its own, async (the
    bundle without an embedding: the postprocessor embeds it with the index's model)."""
    pp = DBNormPostprocessor(li_index, db=db, top_n=K)
    plain = li_index.as_retriever(similarity_top_k=GIVEN)
    engine = RetrieverQueryEngine.from_args(plain, llm=MockLLM(), node_postprocessors=[pp])
    return Adapter(li_index.vector_store.client, "li", lambda qs: [_nodes(engine.retrieve(QueryBundle(q))) for q in qs],
                   lambda qs: [_nodes(asyncio.run(pp.apostprocess_nodes(plain.retrieve(q), QueryBundle(q))))
                               for q in qs], reranks=True)


ADAPTERS = [lc_retriever, lc_compressor, li_retriever, li_postprocessor]
adapters = pytest.mark.parametrize("make", ADAPTERS, ids=lambda f: f.__name__)


def _target(make, lc_store, li_index) -> tuple[QdrantClient, str]:
    """The client and collection an adapter factory queries."""
    return (lc_store.client, "lc") if make.__name__.startswith("lc_") else (li_index.vector_store.client, "li")


# ------------------------------------------------------------------ assertions
def _unit(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def assert_logged(client, log: str, sent: list[np.ndarray]) -> None:
    """The log collection holds exactly the query vectors ``sent``, each once (compared as directions:
    a Cosine collection stores unit vectors)."""
    points, _ = client.scroll(log, limit=10 * len(sent) + 10, with_vectors=True)
    assert len(points) == len(sent)
    assert all(not p.payload for p in points)  # vectors only: no payload, no text
    got, want = _unit([p.vector for p in points]), _unit(sent)
    match = (want @ got.T).argmax(axis=1)  # each sent vector's logged point
    assert sorted(match.tolist()) == list(range(len(sent)))
    np.testing.assert_allclose(got[match], want, rtol=1e-5, atol=1e-6)


def assert_sorted(out: list[list[tuple[Any, float]]]) -> None:
    """Each query came back with ``K`` results, best score first."""
    for got in out:
        scores = [s for _, s in got]
        assert len(got) == K and scores == sorted(scores, reverse=True)


def assert_ranked(out: list[list[tuple[Any, float]]], refs: list[list[tuple[Any, float]]]) -> None:
    """Each query came back with ``K`` results in the normalised order, the reference's."""
    assert_sorted(out)
    for got, ref in zip(out, refs, strict=True):
        assert [i for i, _ in got] == [i for i, _ in ref]
        assert [s for _, s in got] == pytest.approx([s for _, s in ref], rel=1e-5, abs=1e-6)


def assert_logged_cold(db: DBNormClient, collection: str, log: str, sent: list[np.ndarray],
                       out: list[list[tuple[Any, float]]]) -> None:
    """After a flush the log holds ``sent``; the cold start served ``out``."""
    db.flush()
    assert_logged(db.client, log, sent)
    assert db.status(collection).serving.startswith(COLD)
    assert_sorted(out)


def _run(adapter: Adapter, qs: list[str]) -> list[list[tuple[Any, float]]]:
    """Three queries synchronously, two asynchronously."""
    return adapter.sync(qs[:3]) + adapter.asyn(qs[3:5])


# ------------------------------------------------------------------------ tests
@adapters
def test_every_query_the_adapter_sends_is_logged_and_the_cold_start_serves(make, lc_store, li_index, wn):
    qs = wn["q_text"][10:15]
    client, _ = _target(make, lc_store, li_index)
    db = DBNormClient(client, query_log=f"{make.__name__}_log")
    a = make(lc_store, li_index, db)
    out = _run(a, qs)
    db.flush()
    assert_logged(a.client, f"{make.__name__}_log", [wn["vectors"][q] for q in qs])
    st = db.status(a.collection)
    assert (st.logged, st.log_size, st.pending) == (5, 5, 0) and st.serving.startswith(COLD)
    # the results: the cold start's normalised ranking, as an evaluation wrapper (logging nothing) gives it
    ev = DBNormClient(a.client, query_log=f"{make.__name__}_eval", log_sample_rate=0.0)
    assert_ranked(out, [a.reference(ev, wn["vectors"][q]) for q in qs])
    assert ev.status(a.collection).serving.startswith(COLD)
    assert not a.client.collection_exists(f"{make.__name__}_eval")


@adapters
def test_nothing_is_logged_at_sample_rate_zero(make, lc_store, li_index, wn):
    qs = wn["q_text"][20:25]
    client, _ = _target(make, lc_store, li_index)
    db = DBNormClient(client, query_log=f"{make.__name__}_rate0", log_sample_rate=0.0)
    a = make(lc_store, li_index, db)
    out = _run(a, qs)
    assert db.flush() == 0 and not client.collection_exists(f"{make.__name__}_rate0")
    assert_ranked(out, [a.reference(db, wn["vectors"][q]) for q in qs])  # served cold all the same
    assert db.status(a.collection).serving.startswith(COLD)


@adapters
def test_a_collection_with_rerank_disabled_passes_through_and_is_not_logged(make, lc_store, li_index, wn):
    qs = wn["q_text"][30:35]
    client, coll = _target(make, lc_store, li_index)
    off = {coll: CollectionConfig(enabled=False)}
    db = DBNormClient(client, query_log=f"{make.__name__}_off", collections=off)
    a = make(lc_store, li_index, db)
    out = _run(a, qs)
    db.flush()
    assert not client.collection_exists(f"{make.__name__}_off")
    assert_ranked(out, [a.reference(DBNormClient(client, collections=off), wn["vectors"][q]) for q in qs])


def _fill_async(client: QdrantClient, aclient: AsyncQdrantClient, name: str) -> None:
    """Copy collection ``name`` (vectors and payloads) into the in-memory async client."""
    points, _ = client.scroll(name, limit=NG, with_vectors=True, with_payload=True)

    async def go():
        await aclient.create_collection(name, vectors_config=client.get_collection(name).config.params.vectors)
        await aclient.upsert(name, [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points])
    asyncio.run(go())


def test_langchain_async_client_logs_through_async_db(lc_store, banks, wn):
    """With an AsyncQdrantClient, ainvoke / acompress_documents go through ``async_db=`` (an
    AsyncDBNormClient, its own log); invoke through ``db=``. A logging ``db=`` with an async
    client but no ``async_db=`` is refused (a hidden second writer no one flushes)."""
    client, aclient = lc_store.client, AsyncQdrantClient(":memory:")
    _fill_async(client, aclient, "lc")
    qs = wn["q_text"][40:44]
    db = DBNormClient(client, query_log="lc_sync_log")
    adb = AsyncDBNormClient(aclient, query_log="lc_async_log")
    r = LCRetriever.from_vector_store(lc_store, db=db, async_client=aclient, async_db=adb, k=K)
    comp = DBNormCompressor(retriever=r, top_n=K)
    given = lc_store.as_retriever(search_kwargs={"k": GIVEN}).invoke(qs[3])

    async def go():
        out = [_docs(await r.ainvoke(q)) for q in qs[:3]] + [_docs(await comp.acompress_documents(given, qs[3]))]
        await adb.flush()
        points, _ = await aclient.scroll("lc_async_log", limit=100, with_vectors=True)
        return out, points, await adb.status("lc")

    out, points, st = asyncio.run(go())
    assert len(points) == 4 and st.logged == 4 and st.serving.startswith(COLD)
    np.testing.assert_allclose(_unit([p.vector for p in sorted(points, key=lambda p: p.id)]),
                               _unit([wn["vectors"][q] for q in qs]), rtol=1e-5, atol=1e-6)  # ring slots in order
    assert db.flush() == 0 and not client.collection_exists("lc_sync_log")  # nothing went through db
    # the same cold start on the same points: invoke (through db) gives what ainvoke gave, and logs there
    assert_ranked([_docs(r.invoke(q)) for q in qs[:3]], out[:3])
    db.flush()
    assert_logged(client, "lc_sync_log", [wn["vectors"][q] for q in qs[:3]])
    with pytest.raises(InputError, match="async_db=AsyncDBNormClient"):
        LCRetriever.from_vector_store(lc_store, db=db, async_client=aclient)
    with pytest.raises(InputError, match="async_db must be an AsyncDBNormClient"):
        LCRetriever.from_vector_store(lc_store, db=db, async_db=db)
    with pytest.raises(InputError, match="async_db must be an AsyncDBNormClient"):
        LCRetriever.from_vector_store(lc_store, db=db, async_db=adb, async_client=AsyncQdrantClient(":memory:"))
    # db= (banks, no log) with an async client: the async wrapper takes db's configuration
    warm = LCRetriever.from_vector_store(lc_store, db=DBNormClient(client, banks=banks, params=PARAMS),
                                         async_client=aclient, k=K)
    assert_ranked([_docs(asyncio.run(warm.ainvoke(q))) for q in qs[:2]], [_docs(warm.invoke(q)) for q in qs[:2]])


def test_langchain_hybrid_logs_the_dense_branch(wn):
    """A hybrid request (dense and sparse prefetch under a fusion) and its compressor log the dense
    vector only, once per query, and are served by the cold start."""
    pytest.importorskip("qdrant_edge", reason="the BM25 encoder needs qdrant-edge-py: pip install dbnorm-qdrant[edge]")
    from test_langchain_hybrid import BM25Sparse

    client = QdrantClient(":memory:")
    client.create_collection(
        "h", vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
        sparse_vectors_config={"words": models.SparseVectorParams(modifier=models.Modifier.IDF)})
    store = LCStore(client, "h", embedding=StoredEmbeddings(wn["vectors"]), retrieval_mode=RetrievalMode.HYBRID,
                    vector_name="dense", sparse_vector_name="words", sparse_embedding=BM25Sparse())
    store.add_texts(wn["g_text"][:NG], ids=wn["ids"][:NG])
    qs = wn["q_text"][50:54]
    db = DBNormClient(client, query_log="h_log")
    r = LCRetriever.from_vector_store(store, db=db, k=K)
    out = [_docs(r.invoke(q)) for q in qs[:2]] + [_docs(asyncio.run(r.ainvoke(qs[2])))]
    given = store.as_retriever(search_kwargs={"k": GIVEN}).invoke(qs[3])  # the plain hybrid store: not logged
    out.append(_docs(DBNormCompressor(retriever=r, top_n=K).compress_documents(given, qs[3])))
    assert_logged_cold(db, "h", "h_log", [wn["vectors"][q] for q in qs], out)


def test_llamaindex_hybrid_logs_the_dense_request(wn):
    """The store's hybrid query (a dense and a sparse request in one batch, fused by the store) through
    the retriever and the postprocessor logs the dense vector only, once per query."""
    pytest.importorskip("qdrant_edge", reason="the BM25 encoder needs qdrant-edge-py: pip install dbnorm-qdrant[edge]")
    from test_llamaindex_hybrid import sparse_doc_fn, sparse_query_fn

    store = LIStore(collection_name="lih", client=QdrantClient(":memory:"), enable_hybrid=True,
                    sparse_doc_fn=sparse_doc_fn, sparse_query_fn=sparse_query_fn,
                    sparse_config=models.SparseVectorParams(modifier=models.Modifier.IDF))
    nodes = [TextNode(id_=pid, text=t, embedding=v.tolist())
             for pid, t, v in zip(wn["ids"][:NG], wn["g_text"][:NG], wn["G"][:NG])]
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                             embed_model=StoredEmbedding(wn["vectors"]))
    qs = wn["q_text"][60:64]
    client = store.client
    db = DBNormClient(client, query_log="lih_log")
    r = LIRetriever(index, db=db, similarity_top_k=K, vector_store_query_mode="hybrid")
    out = [_nodes(r.retrieve(q)) for q in qs[:2]] + [_nodes(asyncio.run(r.aretrieve(qs[2])))]
    given = index.as_retriever(similarity_top_k=GIVEN, vector_store_query_mode="hybrid").retrieve(qs[3])
    pp = DBNormPostprocessor(index, db=db, top_n=K, vector_store_query_mode="hybrid")
    out.append(_nodes(pp.postprocess_nodes(given, QueryBundle(qs[3]))))
    assert_logged_cold(db, "lih", "lih_log", [wn["vectors"][q] for q in qs], out)
