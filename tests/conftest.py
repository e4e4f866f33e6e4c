"""Shared fixtures of every test folder (the ONE place for them).

Data fixtures return ``{"Q", "G", "QB", "GB"}``: float32 test queries, test gallery (query
``i`` matches item ``i``), query bank and gallery bank.

- ``sample``: the sample shipped in the package (``dbnorm_qdrant/data/demo_wordnet.npz``),
  always available; use it when a test needs "some real embeddings".
- ``wordnet`` / ``bible``: the full sets in ../shared; they skip with a reason when
  ../shared is missing. Use them for the official figures on the full sets.
- ``shared``: the ../shared folder itself (skips when missing).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from support import BIBLE, PACKAGE_DATA, SHARED, WORDNET, shared_missing

# CI runs property tests with a fixed seed (reproducible); locally they explore freely.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

#: the fixture keys and the file names they come from
_KEYS = {"Q": "Q_test", "G": "G_test", "QB": "Q_bank", "GB": "G_bank"}


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir() or not (SHARED / "conformance").is_dir():
        pytest.skip(shared_missing())
    return SHARED


def _load_set(path: Path) -> dict[str, np.ndarray]:
    if not all((path / f"{name}.npy").is_file() for name in _KEYS.values()):
        pytest.skip(shared_missing(path))
    return {k: np.load(path / f"{name}.npy").astype(np.float32, copy=False) for k, name in _KEYS.items()}


@pytest.fixture(scope="session")
def wordnet() -> dict[str, np.ndarray]:
    """The full WordNet gloss set from ../shared (skips without it)."""
    return _load_set(WORDNET)


@pytest.fixture(scope="session")
def bible() -> dict[str, np.ndarray]:
    """The full Bible KJV/WEB set from ../shared (skips without it)."""
    return _load_set(BIBLE)


@pytest.fixture(scope="session")
def sample() -> dict[str, np.ndarray]:
    """The shipped WordNet sample (1,500 test pairs, 2,500 bank pairs; float16 on disk, float32 here)."""
    with np.load(PACKAGE_DATA / "demo_wordnet.npz", allow_pickle=False) as z:
        return {k: z[name].astype(np.float32) for k, name in _KEYS.items()}
