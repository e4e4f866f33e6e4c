"""The adapter's hyperparameters are checked without torch: every bad value is an InputError naming it."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant import InputError
from dbnorm_qdrant.experimental.adapter.config import AdapterConfig


@pytest.mark.parametrize("name, value", [("lr", "x"), ("lr", None), ("lr", 0.0), ("kl_weight", float("nan")),
                                         ("neighbor_weight", -1.0), ("uniform_weight", "a"), ("target_mix", 1.5),
                                         ("epochs", 2.5), ("memory_size", 0), ("centrality_scale", float("inf"))])
def test_config_refuses_bad_numbers_naming_the_field(name, value):
    with pytest.raises(InputError, match=rf"{name} must be"):
        AdapterConfig(**{name: value})


def test_config_accepts_zero_weights_and_keeps_defaults():
    cfg = AdapterConfig(kl_weight=0, neighbor_weight=0.0, weight_decay=1e-4, lr=np.float32(1e-3))
    assert cfg.kl_weight == 0.0 and cfg.lr == pytest.approx(1e-3, rel=1e-6)
    assert AdapterConfig() == AdapterConfig.from_dict({})
