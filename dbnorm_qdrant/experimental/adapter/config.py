"""The adapter's architecture and training hyperparameters (no torch needed to read or check them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ...errors import InputError

__all__ = ["AdapterConfig"]


@dataclass
class AdapterConfig:
    """Adapter architecture and training hyperparameters (all settable; JSON-friendly)."""

    hidden: int = 256
    activation: str = "gelu"  # gelu | relu
    both_sides: bool = False
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    logit_scale: float = 20.0  # InfoNCE / KL inverse temperature on cosines
    centrality_scale: float = 0.3
    num_neighbors: int = 20
    temperature: float = 3.0
    target_mix: float = 0.7
    sinkhorn_iters: int = 50
    memory_size: int = 2048
    uniform_weight: float = 1.0
    neighbor_weight: float = 1.0
    kl_weight: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto (cuda when present) | cpu | cuda

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "batch_size", "num_neighbors", "sinkhorn_iters", "memory_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be an integer >= 1, got {v!r}.")
        for name in ("lr", "logit_scale", "temperature"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v <= 0:
                raise InputError(f"{name} must be positive, got {v!r}.")
        if not 0.0 <= float(self.target_mix) <= 1.0:
            raise InputError(f"target_mix must be in [0, 1], got {self.target_mix!r}.")
        if self.activation not in ("gelu", "relu"):
            raise InputError(f"activation must be 'gelu' or 'relu', got {self.activation!r}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {self.device!r}.")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AdapterConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown adapter config keys: {sorted(unknown)}")
        return cls(**d)
