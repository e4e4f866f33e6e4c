"""The Ray precompute: the single-process precompute's statistics (to 1e-5), record format,
key and fingerprint; a worker killed mid-run is retried; a run that fails writes nothing;
bad addresses and points added during the run."""

from __future__ import annotations

import os

import numpy as np
import pytest
from qdrant_client import QdrantClient

from dbnorm_qdrant import BankNormalizer, InputError
from dbnorm_qdrant.qdrant import DBNormClient
from dbnorm_qdrant.scale import RayEngine, RayRunError, precompute_ray


def records(client, name, key="_dbnorm"):
    pts, _ = client.scroll(name, limit=10_000, with_payload=[key])
    return {p.id: (p.payload or {}).get(key) for p in pts}


def assert_same_records(a, b):
    assert a.keys() == b.keys()
    for pid, ra in a.items():
        rb = b[pid]
        assert ra is not None and rb is not None, pid
        assert ra.keys() == rb.keys() and ra["fp"] == rb["fp"]
        for f, v in ra.items():
            if isinstance(v, float):
                np.testing.assert_allclose(rb[f], v, rtol=1e-5, atol=1e-6, err_msg=f"{pid}.{f}")
            else:
                assert rb[f] == v, (pid, f)


@pytest.fixture(scope="module")
def data(sample):
    return {"G": sample["G"][:900], "QB": sample["QB"][:1200], "GB": sample["GB"][:1200]}


@pytest.mark.parametrize("method", ["dualis", "dis"])
def test_the_same_statistics_as_the_single_process_precompute(ray_cluster, driver_client, data, method,
                                                              make_collection):
    if method == "dis" and type(driver_client).__name__ == "EdgeClient":
        pytest.skip("one method is enough on Edge (the precompute is the same code; saves a minute of CI)")
    nz = BankNormalizer(data["QB"], data["GB"], method=method, k=5 if method == "dis" else None)
    local = QdrantClient(":memory:")
    a, b = make_collection(local, data["G"]), make_collection(driver_client, data["G"])
    DBNormClient(local, nz).precompute(a, progress=False)
    db = DBNormClient(driver_client, nz)
    if method == "dualis":  # the wrapper's own entry point, Ray as its engine
        rep = db.precompute(b, engine=RayEngine(chunk_size=256), progress=False)
    else:
        rep = precompute_ray(db, b, chunk_size=256, progress=False)
    assert (rep.written, rep.chunks, rep.fetch, rep.added_during_run) == (900, 4, "driver", 0)
    assert rep.peak_worker_mb > 0
    assert_same_records(records(local, a), records(driver_client, b))
    assert db.core.payload_ready((b, None, rep.fingerprint))  # the wrapper's server path reads them
    again = precompute_ray(db, b, chunk_size=256, progress=False)  # resumable: everything is current
    assert (again.written, again.skipped) == (0, 900)


def _dies(marker: str, always: bool):
    """A task hook: the worker of chunk 1 dies (os._exit) on its first attempt, or always."""
    def hook(index: int) -> None:
        if index == 1 and (always or not os.path.exists(marker)):
            open(marker, "w").close()
            os._exit(1)
    return hook


def test_a_worker_killed_mid_run_is_retried_with_the_same_result(ray_cluster, data, tmp_path, make_collection):
    nz = BankNormalizer(data["QB"], data["GB"], method="dualis")
    c = QdrantClient(":memory:")
    a, b = make_collection(c, data["G"]), make_collection(c, data["G"])
    DBNormClient(c, nz).precompute(a, progress=False)
    rep = precompute_ray(DBNormClient(c, nz), b, chunk_size=300, max_retries=2, progress=False,
                         _hook=_dies(str(tmp_path / "died"), always=False))
    assert (tmp_path / "died").exists() and rep.written == 900
    assert_same_records(records(c, a), records(c, b))


def test_retries_exhausted_raise_and_leave_the_payload_as_it_was(ray_cluster, data, tmp_path, make_collection):
    old = BankNormalizer(data["QB"], data["GB"], method="is")  # the statistics a collection serves now
    new = BankNormalizer(data["QB"], data["GB"], method="dualis")
    c = QdrantClient(":memory:")
    name = make_collection(c, data["G"])
    DBNormClient(c, old).precompute(name, progress=False)
    before = records(c, name)
    db = DBNormClient(c, new)
    with pytest.raises(RayRunError, match=r"chunk 1 .*nothing was written.*max_retries"):
        precompute_ray(db, name, chunk_size=300, max_retries=1, progress=False, index=True,
                       _hook=_dies(str(tmp_path / "died"), always=True))
    assert records(c, name) == before  # every point still serves the old statistics
    assert not db.core.payload_ready((name, None, new.fingerprint))
    # no empty index vector left behind for mode="auto" to search (its name is added after the statistics)
    assert not isinstance(c.get_collection(name).config.params.vectors, dict)
    assert len(DBNormClient(c, new).query_points(name, data["G"][0].tolist(), limit=5).points) == 5


def test_an_unreachable_ray_address_is_a_clear_error(ray_cluster, data, make_collection):
    c = QdrantClient(":memory:")
    name = make_collection(c, data["G"][:10])
    db = DBNormClient(c, BankNormalizer(data["QB"], data["GB"], method="dualis"))
    with pytest.raises(InputError, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:9'.*ray start --head"):
        precompute_ray(db, name, address="127.0.0.1:9", progress=False)
    with pytest.raises(InputError, match="not host:port"):
        precompute_ray(db, name, address="ray://", progress=False)
    assert records(c, name) == {i: None for i in range(10)}


class _GrowsDuringScroll:
    """A client whose collection gains points (ids below the scroll's position) after the first page."""

    def __init__(self, client, name, G):
        self.client, self.name, self.G, self.done = client, name, G, False

    def __getattr__(self, attr):
        return getattr(self.client, attr)

    def scroll(self, **kw):
        out = self.client.scroll(**kw)
        if not self.done:
            self.done = True
            self.client.upload_collection(self.name, vectors=self.G, ids=[1, 3, 5], wait=True)
        return out


def test_points_added_during_the_run_are_reported_and_left_without_statistics(ray_cluster, data, make_collection):
    nz = BankNormalizer(data["QB"], data["GB"], method="dualis")
    c = QdrantClient(":memory:")
    name = make_collection(c, data["G"][:600], ids=range(0, 1200, 2))  # even ids: the new odd ones sort first
    rep = precompute_ray(DBNormClient(_GrowsDuringScroll(c, name, data["G"][600:603]), nz), name, chunk_size=200,
                         progress=False)
    assert (rep.written, rep.added_during_run) == (600, 3)
    recs = records(c, name)
    assert [pid for pid, r in recs.items() if r is None] == [1, 3, 5]
    rerun = precompute_ray(DBNormClient(c, nz), name, chunk_size=200, progress=False)  # computes only them
    assert (rerun.written, rerun.skipped) == (3, 600)


def test_bad_arguments_are_refused_before_ray_runs(data, make_collection):
    c = QdrantClient(":memory:")
    name = make_collection(c, data["G"][:10])
    db = DBNormClient(c, BankNormalizer(data["QB"], data["GB"], method="dualis"))
    with pytest.raises(InputError, match="fetch='workers' needs a Qdrant server"):
        precompute_ray(db, name, fetch="workers")
    with pytest.raises(InputError, match="max_retries"):
        precompute_ray(db, name, max_retries=-1)


def test_without_ray_the_error_names_the_extra(monkeypatch):
    import sys

    from dbnorm_qdrant.scale import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'dbnorm-qdrant\[ray\]'"):
        require_ray()


def test_an_engine_that_is_not_one_is_refused_naming_ray_engine(data, make_collection):
    client = QdrantClient(":memory:")
    db = DBNormClient(client, BankNormalizer(data["QB"], data["GB"]))
    with pytest.raises(InputError, match="RayEngine"):
        db.precompute(make_collection(client, data["G"]), engine="ray")
