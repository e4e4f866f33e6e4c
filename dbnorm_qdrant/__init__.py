"""dbnorm-qdrant: hubness normalisation (DBNorm, QB-Norm, CSLS, NNN) for embedding retrieval.

Matrix level::

    from dbnorm_qdrant import normalize
    S_norm = normalize(S, "dualis", query_bank_sims=S_qb, gallery_bank_sims=S_gb)

Vector level::

    from dbnorm_qdrant import BankNormalizer
    norm = BankNormalizer(query_bank, gallery_bank, method="dualis")
    stats = norm.gallery_stats(gallery)          # once, at index time
    scores, ids = norm.search(queries, gallery, stats, top_k=10)  # like FAISS

The Qdrant reranking layer lives in :mod:`dbnorm_qdrant.qdrant`.
"""

from __future__ import annotations

import logging

from .errors import InputError
from .core.methods import METHODS, Params, normalize
from .eval.metrics import evaluate, hubness_metrics, retrieval_metrics
from .core.normalizer import BankNormalizer
from .core.stats import GalleryStats
from .core.tuning import TuneResult, tune

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "BankNormalizer",
    "GalleryStats",
    "InputError",
    "Params",
    "TuneResult",
    "evaluate",
    "hubness_metrics",
    "normalize",
    "retrieval_metrics",
    "tune",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
