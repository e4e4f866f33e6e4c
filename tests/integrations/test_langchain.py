"""The LangChain retriever on real langchain-core / langchain-qdrant, local-mode Qdrant, the shipped WordNet sample."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="LangChain is not installed: pip install 'dbnorm-qdrant[langchain]'")
pytest.importorskip("langchain_qdrant", reason="langchain-qdrant is not installed: pip install 'dbnorm-qdrant[langchain]'")
pytest.importorskip("langchain_dbnorm_qdrant",
                    reason="the adapter is not installed: pip install -e integrations/langchain-dbnorm-qdrant")

from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from langchain_dbnorm_qdrant import RAW_SCORE_KEY, SCORE_KEY, DBNormRetriever  # noqa: E402
from langchain_qdrant import QdrantVectorStore  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

from dbnorm_qdrant import InputError  # noqa: E402
from dbnorm_qdrant.core.methods import Params  # noqa: E402

from wordnet_data import MIN_GAIN, N, NQ, PARAMS, core_top1, point_uuid, r_at_1  # noqa: E402


class StoredEmbeddings(Embeddings):
    """Returns the stored all-MiniLM-L6-v2 vector of a known text (a fixed unit vector for any other
    text, e.g. the probe langchain-qdrant embeds to check the dimension)."""

    def __init__(self, vectors):
        self.vectors = vectors
        self.dim = len(next(iter(vectors.values())))

    def _one(self, text):
        v = self.vectors.get(text)
        return np.eye(1, self.dim, dtype=np.float32)[0].tolist() if v is None else v.tolist()

    def embed_documents(self, texts):
        return [self._one(t) for t in texts]

    def embed_query(self, text):
        return self._one(text)


def _collection(client, name, dim=384):
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))


@pytest.fixture(scope="module")
def store(wn):
    client = QdrantClient(":memory:")
    _collection(client, "lc")
    vs = QdrantVectorStore(client, "lc", embedding=StoredEmbeddings(wn["vectors"]))
    vs.add_texts(wn["g_text"], metadatas=[{"i": i} for i in range(len(wn["g_text"]))], ids=wn["ids"], batch_size=512)
    return vs


@pytest.fixture(scope="module")
def retriever(store, banks):
    return DBNormRetriever.from_vector_store(store, banks=banks, params=PARAMS, candidates=N, k=3)


def test_r1_beats_plain_and_equals_core(store, retriever, core_ids, banks, wn):
    assert len(wn["q_text"]) >= 1000
    plain = store.as_retriever(search_kwargs={"k": 1})
    plain_ids = [plain.invoke(q)[0].metadata["_id"] for q in wn["q_text"]]
    docs = [retriever.invoke(q) for q in wn["q_text"]]
    ids = [d[0].metadata["_id"] for d in docs]
    r_plain, r_adapter, r_core = r_at_1(plain_ids, wn), r_at_1(ids, wn), r_at_1(core_ids, wn)
    print(f"\nLangChain R@1 on {NQ} queries: plain {r_plain:.3f}  adapter {r_adapter:.3f}  core {r_core:.3f}")
    assert r_adapter - r_plain >= MIN_GAIN
    assert ids == core_ids
    assert core_top1(store.client, "lc", wn["Q"], banks, n=50) == core_ids[:50]  # the core on this store
    d = docs[0][0]
    assert d.page_content == wn["g_text"][wn["ids"].index(d.metadata["_id"])]
    assert set(d.metadata) >= {"i", "_id", "_collection_name", SCORE_KEY, RAW_SCORE_KEY}
    scores = [x.metadata[SCORE_KEY] for x in docs[0]]
    assert scores == sorted(scores, reverse=True) and len(docs[0]) == 3
    # raw_score is Qdrant's cosine: the plain score of the same document
    raw = dict((x.metadata["_id"], s) for x, s in store.similarity_search_with_score(wn["q_text"][0], k=N))
    for x in docs[0]:
        assert x.metadata[RAW_SCORE_KEY] == pytest.approx(raw[x.metadata["_id"]], abs=1e-5)


def test_invoke_ainvoke_batch_and_lcel(retriever, wn):
    qs = wn["q_text"][:6]
    ids = lambda docs: [d.metadata["_id"] for d in docs]  # noqa: E731
    sync = [ids(retriever.invoke(q)) for q in qs]
    assert [ids(x) for x in retriever.batch(qs)] == sync
    assert [ids(asyncio.run(retriever.ainvoke(q))) for q in qs[:3]] == sync[:3]
    assert [ids(x) for x in asyncio.run(retriever.abatch(qs[:3]))] == sync[:3]
    chain = retriever | RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs))
    assert chain.invoke(qs[0]).split("\n")[0] == retriever.invoke(qs[0])[0].page_content
    # per-call options: k, a filter (on the user's metadata), and the method of the core
    two = retriever.invoke(qs[0], k=2)
    assert ids(two) == sync[0][:2]
    flt = models.Filter(must=[models.FieldCondition(key="metadata.i", range=models.Range(gte=1000))])
    assert all(d.metadata["i"] >= 1000 for d in retriever.invoke(qs[0], filter=flt))


def test_config_objects_and_banks_from_collection(store, banks, wn):
    nz = banks.normalizer(Params(**PARAMS), unit=True)
    a = DBNormRetriever.from_vector_store(store, normalizer=nz, candidates=N, k=1)
    b = DBNormRetriever.from_vector_store(store, banks=banks, params=Params(**PARAMS), candidates=N, k=1)
    qs = wn["q_text"][:20]
    assert [a.invoke(q)[0].metadata["_id"] for q in qs] == [b.invoke(q)[0].metadata["_id"] for q in qs]
    # gallery bank sampled from the store's own collection
    c = DBNormRetriever.from_vector_store(store, query_bank=wn["QB"], gallery_sample=500, params=PARAMS, k=2)
    assert len(c.invoke(qs[0])) == 2
    assert c.dbnorm_client.client is store.client


def test_bad_inputs(store, banks, wn):
    emb = StoredEmbeddings(wn["vectors"])
    with pytest.raises(InputError, match="Qdrant-backed"):
        DBNormRetriever.from_vector_store(InMemoryVectorStore(emb), banks=banks)
    no_emb = QdrantVectorStore(store.client, "lc", embedding=None, validate_embeddings=False,
                               validate_collection_config=False)
    with pytest.raises(InputError, match="no dense embedding"):
        DBNormRetriever.from_vector_store(no_emb, banks=banks)
    with pytest.raises(InputError, match="Embeddings is required"):
        DBNormRetriever.from_client(store.client, "lc", None, banks=banks)
    with pytest.raises(InputError, match="no banks"):
        DBNormRetriever.from_vector_store(store)
    with pytest.raises(InputError, match="does not exist"):
        DBNormRetriever.from_client(store.client, "nope", emb, banks=banks)
    with pytest.raises(InputError, match="unknown search_kwargs"):
        DBNormRetriever.from_vector_store(store, banks=banks, search_kwargs={"fetch_k": 20})
    with pytest.raises(InputError, match="client must be"):
        DBNormRetriever.from_client(object(), "lc", emb, banks=banks)
    client = QdrantClient(":memory:")
    _collection(client, "empty")
    empty = QdrantVectorStore(client, "empty", embedding=emb)
    with pytest.raises(InputError, match="empty"):
        DBNormRetriever.from_vector_store(empty, query_bank=wn["QB"], gallery_sample=100, params=PARAMS)
    # wrong dimension: the core's error comes through at query time
    _collection(client, "d8", dim=8)
    small = QdrantVectorStore(client, "d8", embedding=StoredEmbeddings({"x": np.ones(8, np.float32)}))
    small.add_texts(["x"])
    with pytest.raises(InputError, match="dimension"):
        DBNormRetriever.from_vector_store(small, banks=banks).invoke("x")


def test_wrong_argument_types_are_input_errors(store, banks):
    with pytest.raises(InputError, match="banks must be a dbnorm_qdrant.qdrant.BankSet.*BankSet.from_arrays"):
        DBNormRetriever.from_vector_store(store, banks=np.zeros((3, 4)))
    with pytest.raises(InputError, match="normalizer must be a BankNormalizer.*build one"):
        DBNormRetriever.from_vector_store(store, normalizer="dualis")
    with pytest.raises(InputError, match="params must be a Params or a dict"):
        DBNormRetriever.from_vector_store(store, banks=banks, params="dualis")
    with pytest.raises(InputError, match=r"params: unknown field\(s\) \['methd'\]"):
        DBNormRetriever.from_vector_store(store, banks=banks, params={"methd": "is"})


def test_rerank_leaves_out_a_document_an_audit_quarantined(store, retriever, wn, monkeypatch):
    """A plain QdrantVectorStore retriever still returns a quarantined point; the adapter's rerank
    drops it (the wrapper does not serve it) instead of calling it foreign, sync and async."""
    from dbnorm_qdrant.qdrant.quarantine import Quarantine

    monkeypatch.setattr(Quarantine, "check_s", 0.0)
    q = wn["q_text"][0]
    docs = store.similarity_search(q, k=5)
    marked = docs[1].metadata["_id"]
    store.client.set_payload("lc", payload={"quarantined": True}, points=[marked], key="_dbnorm")
    try:
        for out in (retriever.rerank(docs, q), asyncio.run(retriever.arerank(docs, q))):
            assert len(out) == 4 and marked not in {d.metadata["_id"] for d in out}
        foreign = docs[0].model_copy(update={"metadata": {**docs[0].metadata, "_id": point_uuid(10**6)}})
        with pytest.raises(InputError, match="not points of collection"):
            retriever.rerank([*docs, foreign], q)
    finally:
        store.client.delete_payload("lc", keys=["_dbnorm.quarantined"], points=[marked])

