"""Conformance with the official QB-Norm and DBNorm code.

The synthetic cases are copied into tests/data/conformance (they run on any clone); the
real-set top-10 lists and metrics are read from ../shared/conformance (skipped without it).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dbnorm_qdrant import normalize
from dbnorm_qdrant.kernels import available_backends
from dbnorm_qdrant.eval.metrics import hubness_metrics, k_occurrence, retrieval_metrics, topk_indices
from support import CONFORMANCE

# output key -> (method, k, which beta key holds beta_q)
OUTPUTS = {
    "out_IS": ("is", 1, "beta"),
    "out_DIS_k1": ("dis", 1, "beta"),
    "out_DIS_k3": ("dis", 3, "beta"),
    "out_DualIS": ("dualis", 1, "beta_q"),
    "out_DualDIS_k1": ("dualdis", 1, "beta_q"),
    "out_DualDIS_k2": ("dualdis", 2, "beta_q"),
}
FILES = [
    "synthetic_seed0_scale1.npz",
    "synthetic_seed0_scale100.npz",
    "synthetic_seed1_scale1.npz",
    "synthetic_seed1_scale100.npz",
]
BACKENDS = [b for b in available_backends()]


@pytest.fixture(scope="module")
def cases():
    meta = {c["file"]: c for c in json.loads((CONFORMANCE / "synthetic_cases.json").read_text())}
    return {f: (meta[f], dict(np.load(CONFORMANCE / f))) for f in FILES}


def _call(case, key, backend, faithful):
    meta, d = case
    method, k, bkey = OUTPUTS[key]
    return normalize(
        d["S"],
        method,
        query_bank_sims=d["S_query_bank"],
        gallery_bank_sims=d["S_gallery_bank"],
        beta_q=meta[bkey],
        beta_g=meta["beta_g"],
        k=k,
        faithful=faithful,
        backend=backend,
    )


def _order(x):
    return np.argsort(-x, axis=1, kind="stable")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key", list(OUTPUTS))
@pytest.mark.parametrize("fname", FILES)
def test_faithful_matches_official_values(cases, fname, key, backend):
    out = _call(cases[fname], key, backend, faithful=True)
    ref = cases[fname][1][key]
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize("key", ["out_IS", "out_DIS_k1", "out_DIS_k3", "out_DualIS"])
@pytest.mark.parametrize("fname", FILES)
def test_log_domain_ranks_like_official(cases, fname, key):
    out = _call(cases[fname], key, "numba", faithful=False)
    ref = cases[fname][1][key]
    assert np.array_equal(_order(out), _order(ref))


@pytest.mark.parametrize("key", ["out_DualDIS_k1", "out_DualDIS_k2"])
@pytest.mark.parametrize("fname", FILES)
def test_log_domain_dualdis_is_the_clean_form(cases, fname, key):
    """Rows with both gates open rank like the official code; the others use the clean form."""
    meta, d = cases[fname]
    out = _call(cases[fname], key, "numba", faithful=False)
    ref = d[key]
    dualis = _call(cases[fname], "out_DualIS", "numba", faithful=False)
    same = np.all(_order(out) == _order(ref), axis=1)
    both_open = np.all(_order(out) == _order(dualis), axis=1)
    # rows identical to DualIS (both gates open) agree with the official ranking
    assert same[both_open].all()
    # and the official quirk (closed gates multiply raw scores) does change some rows
    assert not same.all()
    # a row with both gates closed keeps the raw order in the clean form
    raw_rows = np.all(_order(out) == _order(d["S"]), axis=1)
    assert raw_rows.any()


def test_inputs_not_modified(cases):
    meta, d = cases["synthetic_seed0_scale1.npz"]
    copies = {k: d[k].copy() for k in ("S", "S_query_bank", "S_gallery_bank")}
    for key in OUTPUTS:
        _call(cases["synthetic_seed0_scale1.npz"], key, "numba", faithful=True)
        _call(cases["synthetic_seed0_scale1.npz"], key, "numba", faithful=False)
    for k, v in copies.items():
        assert np.array_equal(d[k], v)


REAL = {"cosine": "none", "IS": "is", "DIS_k1": "dis", "DualIS": "dualis", "DualDIS_k1": "dualdis"}


@pytest.fixture(scope="module", params=["wordnet_gloss", "bible_kjv_web"])
def real(request, shared):
    name = request.param
    d = shared / "data" / name
    Q, G = np.load(d / "Q_test.npy").astype(np.float64), np.load(d / "G_test.npy").astype(np.float64)
    QB, GB = np.load(d / "Q_bank.npy").astype(np.float64), np.load(d / "G_bank.npy").astype(np.float64)
    meta = json.loads((shared / "conformance" / f"{name}_official_metrics.json").read_text())
    top = dict(np.load(shared / "conformance" / f"{name}_official_top10.npz"))
    return name, Q @ G.T, QB @ G.T, GB @ G.T, meta, top


@pytest.mark.parametrize("official", list(REAL))
def test_real_sets_reproduce_official_top10_and_metrics(real, official):
    name, S, SQ, SG, meta, top = real
    kw = dict(query_bank_sims=SQ, gallery_bank_sims=SG, beta_q=meta["beta_q"], beta_g=meta["beta_g"], k=meta["k"])
    out = normalize(S, REAL[official], faithful=True, **kw)
    assert np.array_equal(topk_indices(out, 10), top[f"top10_{official}"])
    m = retrieval_metrics(out)
    ref = meta["metrics"][official]
    for key in ("R1", "R5", "R10", "MedR", "MeanR"):
        assert round(m[key], 1) == pytest.approx(ref[key], abs=1e-9), key
    h = hubness_metrics(out, k=10)
    assert h["k_skewness_retrieved"] == pytest.approx(ref["skewness_k10_official"], rel=1e-9)
    if official != "DualDIS_k1":  # log-domain ranks like faithful (dualdis: clean form differs by design)
        log = normalize(S, REAL[official], **kw)
        assert np.array_equal(topk_indices(log, 10), top[f"top10_{official}"])


def test_official_occurrence_counts_agree(real):
    name, S, SQ, SG, meta, top = real
    occ = k_occurrence(topk=top["top10_IS"], n_gallery=S.shape[1])
    ours = k_occurrence(normalize(S, "is", query_bank_sims=SQ, beta_q=meta["beta_q"]), 10)
    assert np.array_equal(occ, ours)
