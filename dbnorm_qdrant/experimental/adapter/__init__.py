"""NeighborRetr-style adapter on frozen embeddings (experimental; needs the ``torch`` extra).

A small residual adapter ``x -> normalize(x + W2 act(W1 x + b1) + b2)`` with ``W2, b2``
zero-initialised (the identity at start), trained on aligned (query, gallery) pairs with
the losses of NeighborRetr (Lin et al., CVPR 2025), transposed from its token-level video
model to one vector per item:

- **centrality-weighted InfoNCE**: the query->gallery InfoNCE of each pair weighted by
  ``exp(centrality_scale * c(q))``, ``c(q)`` the mean similarity of the query to the
  memory bank (of gallery vectors);
- **neighbour adjusting**: for each query, its ``num_neighbors`` nearest in-batch gallery
  items are soft positives, weighted by ``softmax(temperature * (norm_sim - norm_cen))``
  where ``norm_cen`` is the min-max normalised *memory-bank centrality* of each gallery
  item (its mean similarity to a FIFO memory bank of recent queries): similar and not
  central = a good neighbour;
- **uniform retrieval**: cross-entropy of ``softmax(temperature * sim)`` against the
  Sinkhorn plan of the batch (uniform marginals, ``sinkhorn_iters`` iterations, rows
  rescaled to sum to 1) mixed with the identity: ``mix * P + (1 - mix) * I``;
- **KL** ``KL(softmax(logit_scale * frozen) || softmax(logit_scale * adapted))`` keeping
  the adapted similarities close to the frozen ones.

Defaults follow the official code (centrality scale 0.3, 20 neighbours, temperature 3,
target mix 0.7, 50 Sinkhorn iterations; loss weights 1). Differences from it: single
vectors instead of token sets (no local/global levels: the KL anchors the adapted
similarities to the frozen ones instead of global to local), the Sinkhorn plan's rows
are rescaled to sum to 1 before mixing (the official plan has total mass 1/(m+n) per
row, so its mix is almost all identity), and the memory bank holds vectors, not tokens.

Modules: ``model`` (config, residual block, :class:`Adapter`, save/load), ``losses``,
``train`` (:func:`train_adapter`), ``writer`` (:func:`write_adapted_vectors`), ``cli``
(the ``train-adapter`` options).

By default only the query side is adapted (the collection is untouched);
``both_sides=True`` trains a gallery adapter too, and :func:`write_adapted_vectors`
writes adapted gallery vectors into a new named vector or a new collection.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .cli import add_cli
from .config import AdapterConfig

__all__ = ["AdapterConfig", "Adapter", "train_adapter", "training_loss", "load_adapter", "write_adapted_vectors",
           "add_cli"]

#: names imported on first use, so that the command line (``add_cli``) and the config load without torch
_LAZY = {"Adapter": ".model", "load_adapter": ".model", "train_adapter": ".train", "training_loss": ".train",
         "write_adapted_vectors": ".writer", "torch": "._torch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
