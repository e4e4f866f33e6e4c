"""``audit``: the hub audit of a collection from the command line (docs/audit.md).

The storages hold 600 of the shipped sample's gallery items plus 4 planted hubs
(``mixed_hubs``: centroid, cluster and optimised ones, made from 500 test queries) as
collection 'docs', with a user payload of four fields; the bank file holds the sample's
banks with dualis parameters. Tests that write work on a copy of the folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import cli, ok, one_line_error, tree

#: gallery items and planted hubs (local mode writes point by point: a slice keeps the tests fast)
N_ITEMS, N_HUBS = 600, 4


@pytest.fixture(scope="module")
def poisoned(sample) -> tuple[np.ndarray, set[int]]:
    """The gallery plus the planted hubs (the last ids)."""
    from dbnorm_qdrant.eval.attacks import mixed_hubs

    G = sample["G"][:N_ITEMS]
    X = np.vstack([G, mixed_hubs(N_HUBS, sample["Q"][:500], G, seed=0)]).astype(np.float32)
    return X, set(range(len(G), len(X)))


@pytest.fixture(scope="module")
def bank_file(sample, tmp_path_factory) -> Path:
    from dbnorm_qdrant.banks import BankSet, save_banks

    path = tmp_path_factory.mktemp("banks") / "banks.npz"
    return save_banks(path, BankSet.from_arrays(sample["QB"], sample["GB"]),
                      params={"method": "dualis", "beta_q": 20.0, "beta_g": 3.0})


def _payload(i: int) -> dict:
    return {"text": f"document number {i}, a long text that the table cuts short", "i": i, "src": "sample",
            "extra": True}


def _build(path: Path, client_cls, X: np.ndarray) -> Path:
    """``path``: collection 'docs' (X, payload :func:`_payload`) and an empty collection 'empty'."""
    from qdrant_client import models

    c = client_cls(path)
    vp = models.VectorParams(size=X.shape[1], distance=models.Distance.COSINE)
    for name in ("docs", "empty"):
        c.create_collection(name, vectors_config=vp)
    c.upload_collection("docs", vectors=X, ids=list(range(len(X))), payload=[_payload(i) for i in range(len(X))],
                        wait=True)
    c.close()
    return path


@pytest.fixture(scope="module")
def local(poisoned, tmp_path_factory) -> Path:
    from qdrant_client import QdrantClient

    return _build(tmp_path_factory.mktemp("audit") / "qdrant", lambda p: QdrantClient(path=str(p)), poisoned[0])


def _copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "qdrant"))


def _args(path: Path, bank_file: Path, *extra) -> list:
    return ["audit", "--collection", "docs", "--path", path, "--banks", bank_file, "-q", *extra]


def _payloads(path: Path, n: int, edge: bool = False) -> dict:
    if edge:
        from dbnorm_qdrant.edge import EdgeClient as make
    else:
        from qdrant_client import QdrantClient

        make = lambda p: QdrantClient(path=str(p))
    c = make(path)
    try:
        return {r.id: r.payload for r in c.retrieve("docs", list(range(n)), with_payload=True)}
    finally:
        c.close()


def test_the_table_lists_the_planted_hubs_with_their_signals_and_payload(local, bank_file, poisoned):
    X, planted = poisoned
    r = ok(cli(*_args(local, bank_file)))
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["rank", "id", "score", "N10"], r.stdout
    rows = [re.split(r"\s{2,}", ln.strip()) for ln in lines[2:2 + N_HUBS]]
    assert [int(row[0]) for row in rows] == list(range(1, N_HUBS + 1))
    assert {int(row[1]) for row in rows} == planted
    scores = [float(row[2]) for row in rows]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 3.0
    raw, normalized = zip(*(map(int, row[3].split(" -> ")) for row in rows))
    assert sum(normalized) < 0.1 * sum(raw)  # dualis takes the hubs out of the bank queries' lists
    pid = int(rows[0][1])
    text = _payload(pid)["text"]
    assert rows[0][-1] == f"text={text[:39]}\u2026; i={pid}; src=sample; +1 more"
    assert lines[2 + N_HUBS] == lines[-1]  # then the summary line
    assert re.fullmatch(rf"docs: {len(X)} points, budget 0\.50% -> {N_HUBS} flagged \(top 10 of 2500 bank "
                        r"queries, dualis\) in [0-9.]+s; stored statistics reused for 0 points; 0 quarantined",
                        lines[-1]), lines[-1]


def test_json_and_the_page(local, bank_file, poisoned, tmp_path):
    pytest.importorskip("matplotlib", reason="the page's plot needs the plots extra")
    X, planted = poisoned
    out = tmp_path / "page"
    before = tree(local)
    doc = json.loads(ok(cli(*_args(local, bank_file, "--json", "--out", out, "--budget", 0.01))).stdout)
    assert doc["n_points"] == len(X) and doc["budget"] == 0.01 and doc["k"] == 10 and doc["method"] == "dualis"
    assert len(doc["flagged"]) == len(doc["rows"]) == 7 and planted <= set(doc["flagged"])  # ceil(0.01 x 604)
    assert doc["quarantined"] == 0 and doc["bank_size"] == 2500
    assert doc["files"] == {name: str(out / name) for name in ("audit.json", "audit.png", "audit.html")}
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "audit.png"]  # no temporary left
    full = json.loads((out / "audit.json").read_text())
    assert full["flagged"] == doc["flagged"] and len(full["points"]["ids"]) == len(X)
    assert all(len(full["points"][k]) == len(X) for k in ("score", "kocc", "kocc_normalized", "bias_z"))
    assert sum(full["points"]["kocc"]) == 10 * 2500
    assert (out / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "audit.html").read_text()
    assert "data:image/png;base64," in page and "<h2>Flagged points</h2>" in page
    assert all(f"<td>{pid}</td>" in page for pid in doc["flagged"])
    assert tree(local) == before  # an audit without --quarantine writes nothing to the storage


def test_quarantine_marks_the_reserved_key_only_and_unquarantine_reverses_it(local, bank_file, poisoned, tmp_path):
    X, planted = poisoned
    path = _copy(local, tmp_path)
    r = ok(cli(*_args(path, bank_file, "--quarantine")))
    assert r.stdout.splitlines()[-2].endswith(f"; {N_HUBS} quarantined") and "--unquarantine" in r.stdout
    marked = _payloads(path, len(X))
    for pid, pl in marked.items():
        assert {k: v for k, v in pl.items() if k != "_dbnorm"} == _payload(pid)  # the user's payload is untouched
        assert (pl.get("_dbnorm", {}).get("quarantined") is True) == (pid in planted)
    one = max(planted)
    assert json.loads(ok(cli(*_args(path, bank_file, "--unquarantine", one, "--json"))).stdout) == {
        "collection": "docs", "unquarantined": 1}
    assert "quarantined" not in _payloads(path, len(X))[one]["_dbnorm"]
    r = ok(cli("audit", "--collection", "docs", "--path", path, "--unquarantine"))  # no banks needed
    assert r.stdout.strip() == f"docs: removed the quarantine mark of {N_HUBS - 1} points"
    final = _payloads(path, len(X))
    assert all(not {"quarantined", "audit"} & set(pl.get("_dbnorm", {})) for pl in final.values())
    assert all({k: v for k, v in pl.items() if k != "_dbnorm"} == _payload(pid) for pid, pl in final.items())


def test_the_edge_engine(bank_file, poisoned, tmp_path):
    pytest.importorskip("qdrant_edge", reason="--engine edge needs the edge extra")
    from dbnorm_qdrant.edge import EdgeClient

    X, planted = poisoned
    path = _build(tmp_path / "edge", EdgeClient, X)
    doc = json.loads(ok(cli(*_args(path, bank_file, "--engine", "edge", "--quarantine", "--json"))).stdout)
    assert set(doc["flagged"]) == planted and doc["quarantined"] == N_HUBS
    assert doc["rows"][0]["payload"] == _payload(doc["flagged"][0])
    assert {pid for pid, pl in _payloads(path, len(X), edge=True).items()
            if pl.get("_dbnorm", {}).get("quarantined")} == planted
    assert json.loads(ok(cli(*_args(path, bank_file, "--engine", "edge", "--unquarantine", "--json"))).stdout)[
        "unquarantined"] == N_HUBS


def test_a_logged_collection_is_audited_with_the_banks_it_is_served_with(local, poisoned):
    X, planted = poisoned
    before = tree(local)
    r = ok(cli("audit", "--collection", "docs", "--path", local, "--query-log", "docs_log", "--budget", 0.01, "--json"))
    doc = json.loads(r.stdout)
    assert "no rebuild yet" in r.stderr and "dbnorm-qdrant rebuild" in r.stderr  # the cold start serves it
    assert doc["method"] == "csls" and doc["n_points"] == len(X) and planted <= set(doc["flagged"])
    assert tree(local) == before  # neither the log nor a state collection is created


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("budget", ["0", "1", "-0.01", "1.5", "nan"])
def test_a_budget_outside_zero_one_is_refused_before_the_storage_is_opened(budget, bank_file, tmp_path):
    missing = tmp_path / "nowhere"  # opening it would be another error
    why = "finite number" if budget == "nan" else "strictly between 0 and 1"
    one_line_error(cli(*_args(missing, bank_file, "--budget", budget)), "--budget must", why)
    assert not missing.exists()


def test_an_audit_without_banks_says_what_to_build_first(local):
    before = tree(local)
    one_line_error(cli("audit", "--collection", "docs", "--path", local), "dbnorm-qdrant bank build", "--banks",
                   "--query-log", "dbnorm-qdrant rebuild")
    assert tree(local) == before


def test_an_empty_collection_is_refused(local, bank_file):
    one_line_error(cli("audit", "--collection", "empty", "--path", local, "--banks", bank_file, "-q"),
                   "'empty' is empty", "upsert points first")


def test_quarantine_on_read_only_storage_is_refused_and_changes_nothing(local, bank_file, poisoned, tmp_path,
                                                                        monkeypatch):
    path = _copy(local, tmp_path)
    before, payloads = tree(path), _payloads(path, len(poisoned[0]))
    access = os.access  # root may write anywhere: the folder's mode is told by a stand-in
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **kw: False if Path(p) == path and mode & os.W_OK
                        else access(p, mode, *a, **kw))
    one_line_error(cli(*_args(path, bank_file, "--quarantine")), "--quarantine", "read-only", "nothing was changed")
    one_line_error(cli(*_args(path, bank_file, "--unquarantine")), "--unquarantine", "read-only", "nothing was")
    monkeypatch.undo()
    assert tree(path) == before and _payloads(path, len(poisoned[0])) == payloads


def test_out_problems_are_refused_before_the_scan(local, bank_file, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(cli(*_args(local, bank_file, "--out", blocker)), "--out", "is a file, not a folder")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the plots extra is not installed
    one_line_error(cli(*_args(local, bank_file, "--out", tmp_path / "page")), "--out", 'dbnorm-qdrant[plots]')
    assert not (tmp_path / "page").exists()


def test_other_refusals(local, bank_file):
    one_line_error(cli(*_args(local, bank_file, "--unquarantine", "not-an-id")), "'not-an-id' is not a point id")
    one_line_error(cli(*_args(local, bank_file, "--unquarantine", "--out", "x")), "--out", "--unquarantine")
    one_line_error(cli(*_args(local, bank_file, "--query-log", "log")), "not both")
    r = cli(*_args(local, bank_file, "--quarantine", "--unquarantine"))
    assert r.returncode == 2 and "not allowed with argument" in r.stderr
    assert "--budget B" in ok(cli("audit", "--help")).stdout and "audit" in ok(cli("--help")).stdout
