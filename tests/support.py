"""Paths and helpers shared by every test folder (importable by name: ``pythonpath = ["tests"]``).

``conftest.py`` files are not importable by name when several folders have one, so what tests
import lives here; fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the read-only ../shared folder next to the checkout (real data, official conformance outputs)
SHARED = ROOT.parent / "shared"
WORDNET = SHARED / "data" / "wordnet_gloss"
BIBLE = SHARED / "data" / "bible_kjv_web"
#: the synthetic conformance cases, copied from ../shared/conformance so they run on any clone
CONFORMANCE = Path(__file__).resolve().parent / "data" / "conformance"
#: the sample shipped in the package
PACKAGE_DATA = ROOT / "dbnorm_qdrant" / "data"


def shared_missing(path: Path = SHARED) -> str:
    """The skip reason for a test that needs ``path`` from ../shared."""
    return f"shared data not found at {path} (the full sets live in ../shared next to the checkout)"
