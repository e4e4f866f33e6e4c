"""Fixtures of the command-line tests: small slices of the shipped sample, and embedded Qdrant.

The vectors come from ``dbnorm_qdrant/data/demo_wordnet.npz`` (shipped with the package),
so these tests run on any clone, without ``../shared``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_run import N_B, N_G
from support import PACKAGE_DATA


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> dict[str, Path]:
    """``.npy`` slices of the shipped sample (Q, G: 300 test pairs; QB, GB: 500 bank pairs) and the texts."""
    d = tmp_path_factory.mktemp("vectors")
    out = {}
    with np.load(PACKAGE_DATA / "demo_wordnet.npz", allow_pickle=False) as z:
        for name, src, n in (("Q", "Q_test", N_G), ("G", "G_test", N_G), ("QB", "Q_bank", N_B), ("GB", "G_bank", N_B)):
            out[name] = d / f"{name}.npy"
            np.save(out[name], z[src][:n].astype(np.float32))
    texts = json.loads((PACKAGE_DATA / "demo_wordnet_texts.json").read_text(encoding="utf-8"))["gallery_texts"][:N_G]
    out["texts"] = d / "texts.json"
    out["texts"].write_text(json.dumps(texts))
    return out


@pytest.fixture(scope="session")
def qpath(files, tmp_path_factory) -> Path:
    """Embedded Qdrant in a folder with collection 'g' (the gallery, payload 'text'), 'q' (40 queries)
    and 'nv' (named vectors 'a' and 'b')."""
    from qdrant_client import QdrantClient, models

    path = tmp_path_factory.mktemp("qdrant")
    c = QdrantClient(path=str(path))
    texts = json.loads(files["texts"].read_text())
    G, Q = np.load(files["G"]), np.load(files["Q"])
    for name, arr, payload in (("g", G, [{"text": t, "keep": i} for i, t in enumerate(texts)]), ("q", Q[:40], None)):
        c.create_collection(name, vectors_config=models.VectorParams(size=arr.shape[1], distance=models.Distance.COSINE))
        c.upload_collection(name, vectors=arr, ids=list(range(len(arr))), payload=payload, wait=True)
    vp = models.VectorParams(size=G.shape[1], distance=models.Distance.COSINE)
    c.create_collection("nv", vectors_config={"a": vp, "b": vp})
    c.upsert("nv", points=[models.PointStruct(id=i, vector={"a": G[i].tolist(), "b": G[i].tolist()}) for i in range(10)])
    c.close()
    return path
