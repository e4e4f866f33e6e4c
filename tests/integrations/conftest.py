"""Fixtures of the framework-adapter tests (data and helpers: wordnet_data.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from wordnet_data import NB, NG, NQ, WORDNET, core_top1, point_uuid


@pytest.fixture(scope="session")
def wn():
    if not WORDNET.exists():
        pytest.skip(f"shared data missing: {WORDNET}")
    ld = lambda n: np.load(WORDNET / f"{n}.npy", allow_pickle=False)  # noqa: E731
    pairs = [json.loads(line) for line in (WORDNET / "pairs_test.jsonl").read_text().splitlines()]
    G, Q = ld("G_test")[:NG], ld("Q_test")[:NQ]
    g_text = [p["g"] for p in pairs[:NG]]
    q_text = [p["q"] for p in pairs[:NQ]]
    vectors = {t: v for t, v in zip(g_text, G)}
    vectors.update({t: v for t, v in zip(q_text, Q)})
    return {
        "G": G, "Q": Q, "QB": ld("Q_bank")[:NB], "GB": ld("G_bank")[:NB], "g_text": g_text, "q_text": q_text,
        "vectors": vectors, "ids": [point_uuid(i) for i in range(NG)],
    }


@pytest.fixture(scope="session")
def banks(wn):
    from dbnorm_qdrant.qdrant import BankSet

    return BankSet(wn["QB"], wn["GB"])


@pytest.fixture(scope="session")
def core_ids(wn, banks):
    """The core layer's top-1 ids on a plain collection with the adapters' ids and vectors (each
    adapter test checks that the core gives the same on its own store, on a subset)."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    client.create_collection("plain", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    client.upload_collection("plain", vectors=wn["G"], ids=wn["ids"], wait=True)
    return core_top1(client, "plain", wn["Q"], banks)
