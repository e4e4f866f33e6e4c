"""Fixtures of the framework-adapter tests (data and helpers: wordnet_data.py), on the shipped sample."""

from __future__ import annotations

import json

import pytest
from wordnet_data import NB, NQ, core_top1, point_uuid

from support import PACKAGE_DATA


@pytest.fixture(scope="session")
def wn(sample):
    texts = json.loads((PACKAGE_DATA / "demo_wordnet_texts.json").read_text())
    G, Q = sample["G"], sample["Q"][:NQ]
    g_text, q_text = texts["gallery_texts"][: len(G)], texts["query_texts"][:NQ]
    vectors = {t: v for t, v in zip(g_text, G)}
    vectors.update({t: v for t, v in zip(q_text, Q)})
    return {
        "G": G, "Q": Q, "QB": sample["QB"][:NB], "GB": sample["GB"][:NB], "g_text": g_text, "q_text": q_text,
        "vectors": vectors, "ids": [point_uuid(i) for i in range(len(G))],
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
