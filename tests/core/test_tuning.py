"""Tuning: validation carved from the banks, never worse than raw, covers centering."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant import BankNormalizer, InputError, tune
from dbnorm_qdrant.eval.metrics import retrieval_metrics
from dbnorm_qdrant.core.centering import unit_rows


def test_supervised_tuning_improves_test_recall(wordnet):
    QB, GB = wordnet["QB"][:6000], wordnet["GB"][:6000]
    res = tune(QB, GB, paired=True, val_size=1500, methods=["is", "dualis"], center=[False])
    assert res.objective == "R1" and res.params.method in ("is", "dualis")
    assert res.value > res.raw_value
    Q, G = wordnet["Q"][:2500], wordnet["G"][:2500]
    raw = retrieval_metrics(Q @ G.T)["R1"]
    tuned = retrieval_metrics(BankNormalizer(QB, GB, params=res.params).scores(Q, G))["R1"]
    assert tuned > raw + 1.0
    assert len(res.table) > 10 and "supervised" in res.reason


def test_deterministic_with_a_seed(sample):
    QB, GB = sample["QB"], sample["GB"]
    a = tune(QB, GB, paired=True, methods=["is"], center=[False], seed=3)
    b = tune(QB, GB, paired=True, methods=["is"], center=[False], seed=3)
    assert a.params == b.params and a.value == b.value


def test_returns_raw_when_nothing_beats_it(sample):
    """Queries identical to their gallery items: raw R@1 is 100, so tuning must keep raw."""
    X = sample["GB"][:1500]
    res = tune(X, X.copy(), paired=True, methods=["is", "csls"], center=[False])
    assert res.params.method == "none"
    assert "no configuration beat the raw scores" in res.reason


def test_unsupervised_lowers_hubness(wordnet):
    res = tune(wordnet["QB"][:4000], wordnet["GB"][4000:8000], methods=["is"], center=[False])
    assert res.objective == "k_skewness" and res.params.method == "is"
    assert res.value < 0.5 * res.raw_value


def test_narrow_band_picks_centering(wordnet):
    u = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    u /= np.linalg.norm(u)
    squeeze = lambda X: unit_rows(X + 3.0 * u).astype(np.float32)  # noqa: E731
    QB, GB = squeeze(wordnet["QB"][:5000]), squeeze(wordnet["GB"][:5000])
    res = tune(QB, GB, paired=True, val_size=1000, methods=["is", "dualis"])
    assert res.params.center is True
    Q, G = squeeze(wordnet["Q"][:2000]), squeeze(wordnet["G"][:2000])
    raw = retrieval_metrics(Q @ G.T)["R1"]
    assert retrieval_metrics(BankNormalizer(QB, GB, params=res.params).scores(Q, G))["R1"] > raw + 1.0


def test_auto_method_in_the_normalizer(sample):
    bn = BankNormalizer(sample["QB"], sample["GB"], method="auto", paired=True)
    assert bn.tuning is not None and bn.params == bn.tuning.params


def test_bad_input(sample):
    QB = sample["QB"][:100]
    with pytest.raises(InputError, match="aligned pairs"):
        tune(QB, sample["GB"][:90], paired=True)
    with pytest.raises(InputError, match="needs a gallery bank"):
        tune(QB)
    with pytest.raises(InputError, match="val_size"):
        tune(QB, QB, paired=True, val_size=100)
    with pytest.raises(InputError, match="unknown method"):
        tune(QB, QB, paired=True, methods=["magic"])


def test_small_banks_and_uniform_are_refused_clearly(sample):
    with pytest.raises(InputError, match="at least 100 rows"):
        tune(sample["QB"][:60], sample["GB"][:60], paired=True)
    with pytest.raises(InputError, match="does not cover 'uniform'"):
        tune(sample["QB"][:500], sample["GB"][:500], paired=True, methods=["uniform"])
