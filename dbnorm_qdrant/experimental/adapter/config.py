"""The adapter's architecture and training hyperparameters (no torch needed to read or check them)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ...errors import InputError
from ...validation import check_int, check_number

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
            setattr(self, name, check_int(getattr(self, name), name))
        check_int(self.seed, "seed", low=0)
        self.centrality_scale = check_number(self.centrality_scale, "centrality_scale")
        for name in ("lr", "logit_scale", "temperature"):
            setattr(self, name, check_number(getattr(self, name), name, low=0.0, low_open=True))
        for name in ("weight_decay", "uniform_weight", "neighbor_weight", "kl_weight"):
            setattr(self, name, check_number(getattr(self, name), name, low=0.0,
                                             hint="it weighs a loss term (0 turns it off)."))
        self.target_mix = check_number(self.target_mix, "target_mix", low=0.0, high=1.0,
                                       hint="it is the share of the target distribution in the mix.")
        if self.activation not in ("gelu", "relu"):
            raise InputError(f"activation must be 'gelu' or 'relu', got {self.activation!r}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {self.device!r}.")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AdapterConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown adapter config keys: {sorted(unknown)}; the keys are {', '.join(sorted(known))}.")
        return cls(**d)
