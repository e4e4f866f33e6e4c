"""Rerank Qdrant searches with DualIS: the README's thirty-line example, runnable.

Runs on the sample shipped with the package (``dbnorm_qdrant.datasets.load_sample``).

    python examples/qdrant_quickstart.py
"""

from qdrant_client import QdrantClient, models

from dbnorm_qdrant import BankNormalizer
from dbnorm_qdrant.datasets import load_sample
from dbnorm_qdrant.qdrant import DBNormClient

s = load_sample()  # real WordNet embeddings: query i's answer is gallery item i
Q, G = s.queries[:300], s.gallery
QB, GB = s.query_bank, s.gallery_bank  # past queries, other items (never the test pairs)

# 1. an ordinary collection in embedded Qdrant (or QdrantClient(url=...) for a server)
client = QdrantClient(":memory:")
client.create_collection("glosses", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
client.upload_collection("glosses", vectors=G, ids=range(len(G)), payload=[{"text": t} for t in s.gallery_texts])

# 2. wrap the client: every search now fetches N candidates and reranks them with DualIS
db = DBNormClient(client, BankNormalizer(QB, GB, method="dualis", beta_q=20, beta_g=3))

hits_raw = hits_new = 0
for i, q in enumerate(Q):  # query i's correct answer is point i
    raw = client.query_points("glosses", query=q, limit=1).points
    new = db.query_points("glosses", query=q, limit=1, with_payload=True).points  # same signature and types
    hits_raw += raw[0].id == i
    hits_new += new[0].id == i
print(f"R@1 plain Qdrant: {hits_raw / len(Q):.1%}   with DualIS: {hits_new / len(Q):.1%}")
print(f"query {i}: {s.query_texts[i]!r} -> {new[0].payload['text']!r} (score {new[0].score:.3f}; "
      f"answer: {s.gallery_texts[i]!r})")
