"""Day one without a query bank: cold start, query log, rebuild, reopen (docs/lifecycle.md).

Runs on the sample shipped with the package (``dbnorm_qdrant.datasets.load_sample``), in an
embedded Qdrant folder that is reopened at the end, as a restarted service would.

    python examples/query_log.py [--queries 300] [--logged 1000]
"""

import argparse
import tempfile

from qdrant_client import QdrantClient, models

from dbnorm_qdrant.datasets import load_sample
from dbnorm_qdrant.qdrant import DBNormClient

ap = argparse.ArgumentParser()
ap.add_argument("--queries", type=int, default=300, help="test queries evaluated")
ap.add_argument("--logged", type=int, default=1000, help="past queries logged before the rebuild")
args = ap.parse_args()

s = load_sample()  # real WordNet embeddings: test query i's answer is gallery item i
Q, G, past = s.queries[: args.queries], s.gallery, s.query_bank[: args.logged]
folder = tempfile.mkdtemp()
client = QdrantClient(path=folder)
client.create_collection("glosses", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
client.upload_collection("glosses", vectors=G, ids=range(len(G)))

live = DBNormClient(client, query_log="glosses_log")                       # logs what it serves
evaluate = DBNormClient(client, query_log="glosses_log", log_sample_rate=0)  # same banks, logs nothing


def r1(db, **kw):
    res = db.query_batch_points("glosses", [models.QueryRequest(query=q.tolist(), limit=10) for q in Q], **kw)
    return 100 * sum(r.points[0].id == i for i, r in enumerate(res)) / len(Q), [[p.id for p in r.points] for r in res]


raw, _ = r1(evaluate, rerank=False)
cold, _ = r1(evaluate)  # day one: CSLS over the collection's own items, no query bank
for i in range(0, len(past), 100):  # traffic: every query served is logged (vectors only)
    live.query_batch_points("glosses", [models.QueryRequest(query=q.tolist(), limit=5) for q in past[i : i + 100]])
report = live.rebuild("glosses", progress=False)  # log -> banks, tuned without labels, atomic switch
rebuilt, top = r1(DBNormClient(client, query_log="glosses_log", log_sample_rate=0))  # reads the new version
status = live.status("glosses")
print(f"R@1 plain Qdrant: {raw:.1f}%   cold start: {cold:.1f}%   after {len(past)} logged queries: {rebuilt:.1f}%")
print(f"serving {status.serving}: {status.params['method']}{' + centering' if status.params['center'] else ''}, "
      f"banks {status.query_bank} + {status.gallery_bank}, {status.tuning['reason']}")
live.close()

reopened = DBNormClient(QdrantClient(path=folder), query_log="glosses_log", log_sample_rate=0)  # a restart
again, top2 = r1(reopened)
print(f"after reopening the folder: R@1 {again:.1f}%, same top-10 lists: {top2 == top}")
