"""The real sample shipped with the package, for examples, the demo and quick experiments.

:func:`load_sample` reads ``dbnorm_qdrant/data/demo_wordnet.*``: a WordNet 3.0
reverse-dictionary task (a definition is the query, its synset's lemma list the gallery
item), embedded with all-MiniLM-L6-v2 (384-d, unit rows, stored as float16)::

    from dbnorm_qdrant.datasets import load_sample

    s = load_sample()
    s.queries.shape, s.gallery.shape          # (1500, 384), (1500, 384): query i <-> item i
    s.query_bank.shape, s.gallery_bank.shape  # (2500, 384) each: other pairs, never the test ones
    s.query_texts[0], s.gallery_texts[0]      # the definition and the lemma list behind row 0

No file outside the package is read, so it works on any install (no ``../shared``).
``scripts/make_demo_sample.py`` rebuilds it from the full set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["Sample", "load_sample", "SAMPLE_NAME"]

#: base name of the shipped files in ``dbnorm_qdrant/data`` (``.npz``, ``.json``, ``_texts.json``)
SAMPLE_NAME = "demo_wordnet"


@dataclass(frozen=True)
class Sample:
    """A retrieval task with banks: test pairs, bank pairs, their texts and provenance.

    Attributes
    ----------
    queries, gallery:
        ``(n, d)`` float32 test queries and gallery items; the ground truth is the identity
        (query ``i`` matches gallery item ``i``, see :attr:`ground_truth`).
    query_bank, gallery_bank:
        ``(m, d)`` float32 bank pairs (query modality, gallery modality), disjoint from the
        test pairs; ``query_bank[i]`` matches ``gallery_bank[i]`` (``paired=True`` tuning).
    query_texts, gallery_texts:
        The texts behind :attr:`queries` and :attr:`gallery` (``None`` when the shipped
        files lack them).
    meta:
        Provenance, licence, model and split (``demo_wordnet.json``).
    """

    queries: np.ndarray
    gallery: np.ndarray
    query_bank: np.ndarray
    gallery_bank: np.ndarray
    query_texts: tuple[str, ...] | None = None
    gallery_texts: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ground_truth(self) -> np.ndarray:
        """``gt[i]``: the gallery row that answers query ``i`` (here ``i`` itself)."""
        return np.arange(len(self.queries))

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return int(self.queries.shape[1])

    def __repr__(self) -> str:
        return (
            f"Sample({self.meta.get('name', SAMPLE_NAME)!r}: {len(self.queries)} queries, "
            f"{len(self.gallery)} gallery items, "
            f"{len(self.query_bank)} + {len(self.gallery_bank)} bank rows, "
            f"d={self.dim})"
        )


def load_sample() -> Sample:
    """Load the shipped WordNet sample (1,500 test pairs, 2,500 bank pairs, 384-d).

    Returns
    -------
    Sample
        Fresh float32 arrays (safe to modify) with the texts and the provenance.

    Raises
    ------
    FileNotFoundError
        When the package was installed without its data files; the message says to
        reinstall (or rebuild them with ``scripts/make_demo_sample.py``).
    """
    data = resources.files("dbnorm_qdrant") / "data"
    try:
        with resources.as_file(data / f"{SAMPLE_NAME}.npz") as path, np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
        meta = json.loads((data / f"{SAMPLE_NAME}.json").read_text(encoding="utf-8"))
        texts = json.loads((data / f"{SAMPLE_NAME}_texts.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"the shipped sample is missing from the installed package ({exc.filename}); reinstall "
            "dbnorm-qdrant (or rebuild it with scripts/make_demo_sample.py)."
        ) from None

    def text(key: str) -> tuple[str, ...] | None:
        return tuple(texts[key]) if key in texts else None

    return Sample(
        queries=arrays["Q_test"],
        gallery=arrays["G_test"],
        query_bank=arrays["Q_bank"],
        gallery_bank=arrays["G_bank"],
        query_texts=text("query_texts"),
        gallery_texts=text("gallery_texts"),
        meta=meta,
    )
