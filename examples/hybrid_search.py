"""Hybrid search (dense + BM25, fused by Qdrant's RRF) with the dense branch normalised;
groups and MMR on the same collection.

Runs on the sample shipped with the package, in embedded Qdrant, offline (the BM25 encoder
comes with the ``edge`` extra: ``pip install "dbnorm-qdrant[edge]"``).

    python examples/hybrid_search.py [--queries 300]
"""

import argparse

from qdrant_client import QdrantClient, models

from dbnorm_qdrant import BankNormalizer
from dbnorm_qdrant.datasets import load_sample
from dbnorm_qdrant.edge import BM25Encoder
from dbnorm_qdrant.qdrant import DBNormClient

ap = argparse.ArgumentParser()
ap.add_argument("--queries", type=int, default=300)
n = ap.parse_args().queries

s = load_sample()  # real WordNet embeddings and texts: query i's answer is gallery item i
enc = BM25Encoder.fit(s.gallery_texts)  # BM25, its average length fitted to these short texts

client = QdrantClient(":memory:")
client.create_collection(
    "glosses", vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
    sparse_vectors_config={"words": models.SparseVectorParams(modifier=models.Modifier.IDF)})
words = enc.embed_documents(s.gallery_texts)
client.upsert("glosses", [
    models.PointStruct(id=i, vector={"dense": s.gallery[i].tolist(), "words": words[i]},
                       payload={"text": s.gallery_texts[i], "letter": s.gallery_texts[i][0].lower()})
    for i in range(len(s.gallery))])

db = DBNormClient(client, BankNormalizer(s.query_bank, s.gallery_bank, method="dualis"))


def hybrid(i: int) -> dict:
    """The request a RAG stack sends: a dense and a sparse branch, fused by RRF."""
    return dict(prefetch=[models.Prefetch(query=s.queries[i].tolist(), using="dense", limit=100),
                          models.Prefetch(query=enc.embed_query(s.query_texts[i]), using="words", limit=100)],
                query=models.FusionQuery(fusion=models.Fusion.RRF), limit=10)


plain = sum(client.query_points("glosses", **hybrid(i)).points[0].id == i for i in range(n))
normed = sum(db.query_points("glosses", **hybrid(i)).points[0].id == i for i in range(n))
print(f"hybrid RRF R@1 plain {100 * plain / n:.1f}, normalised dense branch {100 * normed / n:.1f} ({n} queries)")
print("path:", db.explain("glosses", **hybrid(0))["path"], "(precompute(..., index=True) makes it one engine query)")

q = s.queries[0].tolist()
groups = db.query_points_groups("glosses", "letter", query=q, using="dense", limit=3, group_size=2)
print("groups by first letter:", [(g.id, [h.payload["text"][:20] for h in g.hits]) for g in groups.groups])
mmr = db.query_points("glosses", models.NearestQuery(nearest=q, mmr=models.Mmr(diversity=0.5)), using="dense",
                      limit=5, with_payload=True)
print("MMR (diversity 0.5):", [p.payload["text"][:25] for p in mmr.points])
