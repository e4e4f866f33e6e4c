"""Rerank Qdrant searches with DualIS: the README's 30-line example, runnable.

    python examples/qdrant_quickstart.py     # reads ../shared/data/wordnet_gloss
"""

from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models

from dbnorm_qdrant import BankNormalizer
from dbnorm_qdrant.qdrant import DBNormClient

data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wordnet_gloss"
Q, G = np.load(data / "Q_test.npy")[:1000], np.load(data / "G_test.npy")[:2000]
QB, GB = np.load(data / "Q_bank.npy"), np.load(data / "G_bank.npy")  # past queries, other items

# 1. an ordinary collection in embedded Qdrant (or QdrantClient(url=...) for a server)
client = QdrantClient(":memory:")
client.create_collection("glosses", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
client.upload_collection("glosses", vectors=G, ids=range(len(G)), payload=[{"row": i} for i in range(len(G))])

# 2. wrap the client: every search now fetches N candidates and reranks them with DualIS
db = DBNormClient(client, BankNormalizer(QB, GB, method="dualis", beta_q=20, beta_g=3))

hits_raw = hits_new = 0
for i, q in enumerate(Q):  # query i's correct answer is point i
    raw = client.query_points("glosses", query=q, limit=1).points
    new = db.query_points("glosses", query=q, limit=1).points  # same signature, same return type
    hits_raw += raw[0].id == i
    hits_new += new[0].id == i
print(f"R@1 plain Qdrant: {hits_raw / len(Q):.1%}   with DualIS: {hits_new / len(Q):.1%}")
print(f"last query: score {new[0].score:.4f} (normalised), raw cosine {new[0].raw_score:.4f}")
