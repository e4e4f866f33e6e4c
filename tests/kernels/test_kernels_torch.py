"""The torch backend against the dense NumPy reference (CPU always, CUDA when present)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dbnorm_qdrant.kernels import reference as R  # noqa: E402
from dbnorm_qdrant.kernels import torch_backend as T  # noqa: E402
from dbnorm_qdrant.errors import InputError  # noqa: E402
from dbnorm_qdrant.kernels.base import Backend, Request  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, NO_CUDA])]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny blocks on a shared, oversubscribed CPU: OpenMP spin-waiting dominates otherwise
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


FULL = Request(betas=(5.0, 20.0), topk=7, mean=True, row_topk=5)
ATOL = {np.float64: 1e-10, np.float32: 1e-5}


def _unit(rng, n, d, dtype):
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(dtype)


def _masked(S, bank_keys, gallery_keys):
    S = np.asarray(S, dtype=np.float64)
    if bank_keys is None:
        return S
    bk, gk = np.asarray(bank_keys), np.asarray(gallery_keys)
    return np.where((bk[:, None] == gk[None, :]) & (bk[:, None] >= 0), -np.inf, S)


def _assert_close(got, ref, req, atol, Sx, exact_rows=True):
    assert got.lse.shape == (len(req.betas), Sx.shape[1])
    assert got.lse.dtype == np.float64
    np.testing.assert_allclose(got.lse, ref.lse, rtol=0, atol=atol)
    if req.topk:
        assert got.topk_mean.dtype == np.float64
        np.testing.assert_allclose(got.topk_mean, ref.topk_mean, rtol=0, atol=atol)
    else:
        assert got.topk_mean is None
    if req.mean:
        np.testing.assert_allclose(got.mean, ref.mean, rtol=0, atol=atol)
    else:
        assert got.mean is None
    if req.row_topk:
        assert got.row_topk.dtype == np.int64 and got.row_topk.shape == (Sx.shape[0], req.row_topk)
        rv = np.take_along_axis(Sx, ref.row_topk, axis=1)
        # slots past a row's non-excluded columns hold -1
        np.testing.assert_array_equal(got.row_topk[np.isneginf(rv)], -1)
        fin = np.isfinite(rv)
        if exact_rows:
            np.testing.assert_array_equal(got.row_topk[fin], ref.row_topk[fin])
        else:  # reduced precision may swap near-ties: compare the selected similarities
            gv = np.take_along_axis(Sx, got.row_topk, axis=1)
            np.testing.assert_allclose(gv[fin], rv[fin], rtol=0, atol=atol)
    else:
        assert got.row_topk is None


def _keys(rng, m, n, nkeys):
    bk = rng.integers(-1, nkeys, m)
    gk = rng.integers(-1, nkeys, n)
    return bk, gk


SHAPES = [(1, 1, 3), (37, 5, 4), (1037, 777, 33), (300, 2100, 16)]
BLOCKS = [dict(), dict(tile=100, chunk=97), dict(tile=7, chunk=1000), dict(tile=3000, chunk=13)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_random_vs_reference(device, dtype, shape):
    m, n, d = shape
    rng = np.random.default_rng(m * 7 + n)
    B, G = _unit(rng, m, d, dtype), _unit(rng, n, d, dtype)
    S = B.astype(np.float64) @ G.astype(np.float64).T
    k = min(FULL.topk, m)
    kr = min(FULL.row_topk, n)
    req = Request(betas=FULL.betas, topk=k, mean=True, row_topk=kr)
    bk, gk = _keys(rng, m, n, max(2, min(m, n) // 3))
    for keys in [(None, None), (bk, gk)]:
        ref = R.reduce_vectors(B, G, req, *keys)
        Sx = _masked(S, *keys)
        for blocks in BLOCKS:
            got = T.reduce_vectors(B, G, req, *keys, device=device, **blocks)
            _assert_close(got, ref, req, ATOL[dtype], Sx, exact_rows=dtype == np.float64)
        got = T.reduce_sims(S.astype(dtype), req, *keys, device=device, tile=100, chunk=97)
        _assert_close(got, ref, req, ATOL[dtype], Sx, exact_rows=dtype == np.float64)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exclusions_change_result(device, dtype, monkeypatch):
    rng = np.random.default_rng(3)
    m, n, d = 700, 450, 24
    B, G = _unit(rng, m, d, dtype), _unit(rng, n, d, dtype)
    # plant near-duplicates so that excluding the "self" pair matters for every statistic
    G[: n // 2] = (B[: n // 2] + 0.05 * _unit(rng, n // 2, d, dtype)).astype(dtype)
    bk = np.arange(m) % 500
    gk = np.arange(n)
    gk[::7] = -1
    S = B.astype(np.float64) @ G.astype(np.float64).T
    Sx = _masked(S, bk, gk)
    ref_plain = R.reduce_vectors(B, G, FULL)
    ref_excl = R.reduce_vectors(B, G, FULL, bk, gk)
    got_plain = T.reduce_vectors(B, G, FULL, device=device, tile=128, chunk=200)
    got_excl = T.reduce_vectors(B, G, FULL, bk, gk, device=device, tile=128, chunk=200)
    _assert_close(got_plain, ref_plain, FULL, ATOL[dtype], S, exact_rows=dtype == np.float64)
    _assert_close(got_excl, ref_excl, FULL, ATOL[dtype], Sx, exact_rows=dtype == np.float64)
    tol = 100 * ATOL[dtype]
    assert np.abs(got_plain.lse - got_excl.lse).max() > tol
    assert np.abs(got_plain.topk_mean - got_excl.topk_mean).max() > tol
    assert np.abs(got_plain.mean - got_excl.mean).max() > tol
    assert (got_plain.row_topk != got_excl.row_topk).any()
    # the dense per-block key comparison (used for very many pairs) agrees
    monkeypatch.setattr(T, "_MAX_PAIRS", 0)
    got_dense = T.reduce_vectors(B, G, FULL, bk, gk, device=device, tile=128, chunk=200)
    _assert_close(got_dense, ref_excl, FULL, ATOL[dtype], Sx, exact_rows=dtype == np.float64)
    got_dense = T.reduce_sims(S.astype(dtype), FULL, bk, gk, device=device, tile=100, chunk=333)
    _assert_close(got_dense, ref_excl, FULL, ATOL[dtype], Sx, exact_rows=dtype == np.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_fully_excluded_column_and_row_ties(device):
    # integer-valued similarities: many exact ties; a column with every pair excluded
    rng = np.random.default_rng(5)
    m, n = 230, 170
    S = rng.integers(0, 4, (m, n)).astype(np.float64) / 4
    bk = np.zeros(m, dtype=np.int64)
    gk = np.full(n, -1)
    gk[11] = 0  # column 11 is excluded for every bank row
    req = Request(betas=(3.0,), topk=4, mean=True, row_topk=6)
    got = T.reduce_sims(S, req, bk, gk, device=device, tile=50, chunk=64)
    ref = R.reduce_sims(S, req, bk, gk)
    Sx = _masked(S, bk, gk)
    assert np.isneginf(got.lse[0, 11]) and np.isneginf(got.topk_mean[11]) and got.mean[11] == 0.0
    keep = np.arange(n) != 11
    np.testing.assert_allclose(got.lse[:, keep], ref.lse[:, keep], rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.topk_mean[keep], ref.topk_mean[keep], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.mean, ref.mean, rtol=0, atol=1e-12)
    # ties go to the lower column index: exactly a stable descending sort of each row
    expect = np.argsort(-Sx, axis=1, kind="stable")[:, : req.row_topk]
    np.testing.assert_array_equal(got.row_topk, expect)
    got32 = T.reduce_sims(S.astype(np.float32), req, bk, gk, device=device, tile=7, chunk=1000)
    np.testing.assert_array_equal(got32.row_topk, expect)


@pytest.mark.parametrize("device", DEVICES)
def test_request_variants_and_inputs(device):
    rng = np.random.default_rng(9)
    B, G = _unit(rng, 120, 8, np.float64), _unit(rng, 90, 8, np.float64)
    S = B @ G.T
    empty = T.reduce_vectors(B, G, Request(), device=device)
    assert empty.lse.shape == (0, 90) and empty.topk_mean is None and empty.mean is None and empty.row_topk is None
    for req in [Request(betas=(50.0,)), Request(topk=3), Request(mean=True), Request(row_topk=2)]:
        _assert_close(T.reduce_vectors(B, G, req, device=device), R.reduce_vectors(B, G, req), req, 1e-10, S)
    # torch tensors and read-only arrays are accepted; the given matrix is not modified
    ro = S.copy()
    ro.flags.writeable = False
    bk, gk = np.arange(120) % 90, np.arange(90)
    got = T.reduce_sims(ro, FULL, bk, gk, device=device, tile=32, chunk=50)
    np.testing.assert_array_equal(ro, S)
    _assert_close(got, R.reduce_sims(S, FULL, bk, gk), FULL, 1e-10, _masked(S, bk, gk))
    got = T.reduce_vectors(torch.from_numpy(B), torch.from_numpy(G), FULL, device=device)
    _assert_close(got, R.reduce_vectors(B, G, FULL), FULL, 1e-10, S)
    with pytest.raises(InputError, match="same width"):
        T.reduce_vectors(B, G[:, :4], FULL, device=device)
    with pytest.raises(InputError, match="bank_keys"):
        T.reduce_vectors(B, G, FULL, bk[:5], gk, device=device)


def test_module_surface(monkeypatch):
    assert T.backend.name == "torch" and isinstance(T.backend, Backend)
    assert T.cuda_available() is HAS_CUDA
    monkeypatch.setenv("DBNORM_TORCH_DEVICE", "cpu")
    assert T._resolve_device(None).type == "cpu"
    monkeypatch.delenv("DBNORM_TORCH_DEVICE")
    assert T._resolve_device(None).type == ("cuda" if HAS_CUDA else "cpu")
    from dbnorm_qdrant.kernels import get_backend

    assert get_backend("torch") is T.backend


@pytest.fixture(scope="module")
def real(sample):
    """Real embeddings (the shipped sample): a query bank and gallery items."""
    return sample["QB"][:1500], sample["G"][:1200]


@pytest.mark.parametrize("device", DEVICES)
def test_real_data(real, device):
    B, G = real
    m, n = B.shape[0], G.shape[0]
    req = Request(betas=(10.0, 50.0), topk=10, mean=True, row_topk=10)
    bk = np.arange(m) % n
    gk = np.arange(n)
    gk[::5] = -1
    S = B.astype(np.float64) @ G.astype(np.float64).T
    for keys in [(None, None), (bk, gk)]:
        ref = R.reduce_sims(S, req, *keys)
        Sx = _masked(S, *keys)
        got = T.reduce_vectors(B, G, req, *keys, device=device)
        _assert_close(got, ref, req, 1e-5, Sx, exact_rows=False)
        got = T.reduce_vectors(B, G, req, *keys, device=device, tile=333, chunk=500)
        _assert_close(got, ref, req, 1e-5, Sx, exact_rows=False)
        got = T.reduce_sims(S, req, *keys, device=device, tile=333, chunk=500)
        _assert_close(got, ref, req, 1e-10, Sx)
        got64 = T.reduce_vectors(B.astype(np.float64), G.astype(np.float64), req, *keys, device=device)
        _assert_close(got64, ref, req, 1e-10, Sx)


@pytest.mark.gpu
@NO_CUDA
def test_cuda_matches_cpu(real):
    B, G = real
    req = Request(betas=(20.0,), topk=10, mean=True, row_topk=10)
    bk, gk = np.arange(B.shape[0]) % G.shape[0], np.arange(G.shape[0])
    for dtype, atol in [(np.float64, 1e-10), (np.float32, 1e-5)]:
        Bc, Gc = B.astype(dtype), G.astype(dtype)
        cpu = T.reduce_vectors(Bc, Gc, req, bk, gk, device="cpu")
        gpu = T.reduce_vectors(Bc, Gc, req, bk, gk, device="cuda")
        S = _masked(Bc.astype(np.float64) @ Gc.astype(np.float64).T, bk, gk)
        _assert_close(gpu, cpu, req, atol, S, exact_rows=dtype == np.float64)
        # CUDA tensors as input stay on the device
        tg = T.reduce_vectors(torch.from_numpy(Bc).cuda(), torch.from_numpy(Gc).cuda(), req, bk, gk)
        _assert_close(tg, cpu, req, atol, S, exact_rows=dtype == np.float64)
