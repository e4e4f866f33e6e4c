"""Shared fixtures: the read-only ../shared folder with real data and conformance files."""

from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest
from hypothesis import settings

# CI runs property tests with a fixed seed (reproducible); locally they explore freely.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from support import SHARED


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir() or not (SHARED / "conformance").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (the project expects ../shared next to the checkout)")
    return SHARED


def _load(shared: Path, name: str) -> dict[str, np.ndarray]:
    d = shared / "data" / name
    return {k: np.load(d / f"{k}.npy") for k in ("Q_test", "G_test", "Q_bank", "G_bank")}


@pytest.fixture(scope="session")
def wordnet(shared: Path) -> dict[str, np.ndarray]:
    return _load(shared, "wordnet_gloss")


@pytest.fixture(scope="session")
def bible(shared: Path) -> dict[str, np.ndarray]:
    return _load(shared, "bible_kjv_web")
