"""Every CPU backend agrees with the dense NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from dbnorm_qdrant.errors import InputError
from dbnorm_qdrant.kernels import Backend, Request, available_backends, get_backend
from dbnorm_qdrant.kernels import _tiles, numba_cpu, reference

REQ = Request(betas=(20.0, 3.0, 0.5), topk=7, mean=True, row_topk=3)


def _unit(rng, n, d, dtype):
    X = rng.standard_normal((n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(dtype)


def _compare(a, b, atol):
    np.testing.assert_allclose(a.lse, b.lse, atol=atol, rtol=0)
    np.testing.assert_allclose(a.topk_mean, b.topk_mean, atol=atol, rtol=0)
    np.testing.assert_allclose(a.mean, b.mean, atol=atol, rtol=0)
    assert np.array_equal(a.row_topk, b.row_topk)


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("m,n", [(37, 1100), (1500, 513), (1, 1)])
def test_numba_vectors_match_reference(dtype, atol, m, n):
    rng = np.random.default_rng(m * n)
    B, G = _unit(rng, m, 24, dtype), _unit(rng, n, 24, dtype)
    req = Request(betas=REQ.betas, topk=min(7, m), mean=True, row_topk=min(3, n))
    ref = reference.reduce_vectors(B, G, req)
    got = numba_cpu.reduce_vectors(B, G, req)
    if dtype == np.float32:  # float32 products can reorder near-ties of the row top-k
        np.testing.assert_allclose(got.lse, ref.lse, atol=atol)
        np.testing.assert_allclose(got.topk_mean, ref.topk_mean, atol=atol)
        np.testing.assert_allclose(got.mean, ref.mean, atol=atol)
        assert np.mean(got.row_topk == ref.row_topk) > 0.999
    else:
        _compare(got, ref, atol)


def test_numba_sims_match_reference_on_real_data(sample):
    S = sample["QB"] @ sample["G"].T
    _compare(numba_cpu.reduce_sims(S.astype(np.float64), REQ), reference.reduce_sims(S, REQ), 1e-10)


def test_self_exclusion_changes_only_the_excluded_items():
    rng = np.random.default_rng(1)
    G = _unit(rng, 600, 16, np.float64)
    B = G[:200].copy()  # the bank is a sample of the gallery itself
    bank_keys = np.arange(200)
    gallery_keys = np.arange(600)
    req = Request(betas=(10.0,), topk=3, mean=True, row_topk=1)
    plain = reference.reduce_vectors(B, G, req)
    for mod in (reference, numba_cpu):
        ex = mod.reduce_vectors(B, G, req, bank_keys, gallery_keys)
        # items in the bank lose their self-similarity of 1: lower statistics
        assert np.all(ex.lse[0, :200] < plain.lse[0, :200])
        np.testing.assert_allclose(ex.lse[0, 200:], plain.lse[0, 200:], atol=1e-12)
        # each bank row's own top-1 was itself; excluded, it must be another item
        assert np.all(plain.row_topk[:, 0] == np.arange(200))
        assert np.all(ex.row_topk[:, 0] != np.arange(200))
        expected_mean = (G[:200] @ G[:200].T - np.eye(200)).sum(0) / 199
        np.testing.assert_allclose(ex.mean[:200], expected_mean, atol=1e-12)
    _compare(
        numba_cpu.reduce_vectors(B, G, req, bank_keys, gallery_keys),
        reference.reduce_vectors(B, G, req, bank_keys, gallery_keys),
        1e-10,
    )


def test_bounded_blocks(monkeypatch):
    """The streaming backend never asks for a block larger than chunk x tile."""
    seen = []
    orig = _tiles.run_tiles

    def spy(m, n, req, make_state, fill, *a, **kw):
        def fill2(i0, i1, j0, j1, buf):
            blk = fill(i0, i1, j0, j1, buf)
            seen.append(blk.shape)
            return blk

        return orig(m, n, req, make_state, fill2, *a, **kw)

    monkeypatch.setattr(_tiles, "run_tiles", spy)
    rng = np.random.default_rng(2)
    numba_cpu.reduce_vectors(_unit(rng, 3000, 8, np.float32), _unit(rng, 2000, 8, np.float32), Request(betas=(5.0,)))
    assert seen and max(r for r, _ in seen) <= _tiles.CHUNK and max(c for _, c in seen) <= _tiles.TILE


def test_large_betas_do_not_overflow():
    rng = np.random.default_rng(3)
    B, G = _unit(rng, 50, 8, np.float64) * 100, _unit(rng, 40, 8, np.float64) * 100  # logit scale
    req = Request(betas=(50.0,))
    got = numba_cpu.reduce_vectors(B, G, req).lse
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, reference.reduce_vectors(B, G, req).lse, rtol=1e-12)


def test_backend_registry():
    assert "numpy" in available_backends() and "numba" in available_backends()
    assert get_backend("auto").name in ("numba", "torch")
    with pytest.raises(InputError, match="unknown backend"):
        get_backend("cuda-magic")


@pytest.mark.parametrize("name", available_backends())
def test_every_backend_implements_the_protocol(name):
    be = get_backend(name)
    assert isinstance(be, Backend) and be.name == name
    rng = np.random.default_rng(4)
    B, G = _unit(rng, 30, 8, np.float64), _unit(rng, 20, 8, np.float64)
    req = Request(betas=(5.0,), topk=3, mean=True, row_topk=2)
    _compare(be.reduce_vectors(B, G, req), reference.reduce_vectors(B, G, req), 1e-10)
    _compare(be.reduce_sims(B @ G.T, req), reference.reduce_sims(B @ G.T, req), 1e-10)
