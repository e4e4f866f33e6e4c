"""The ``dbnorm-qdrant`` command line, run as subprocesses against embedded Qdrant in tmp_path.

Vectors: small slices of ../shared/data/wordnet_gloss written to .npy files (skipped when
../shared is missing); ``demo`` uses the sample shipped in the package.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dbnorm_qdrant import BankNormalizer, Params, evaluate

from support import PACKAGE_DATA, WORDNET
N_G, N_B = 300, 500
CONTRACT = {"R1", "R5", "R10", "MedR", "MeanR", "k_skewness", "params"}


def cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("QDRANT_URL", "QDRANT_API_KEY")}
    return subprocess.run([sys.executable, "-m", "dbnorm_qdrant.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    if not WORDNET.is_dir():
        pytest.skip(f"shared data not found at {WORDNET} (the project expects ../shared next to the checkout)")
    d = tmp_path_factory.mktemp("vectors")
    out = {}
    for name, src, n in (("Q", "Q_test", N_G), ("G", "G_test", N_G), ("QB", "Q_bank", N_B), ("GB", "G_bank", N_B)):
        out[name] = d / f"{name}.npy"
        np.save(out[name], np.load(WORDNET / f"{src}.npy", mmap_mode="r")[:n])
    texts = [json.loads(line)["g"] for _, line in zip(range(N_G), open(WORDNET / "pairs_test.jsonl", encoding="utf-8"))]
    out["texts"] = d / "texts.json"
    out["texts"].write_text(json.dumps(texts))
    return out


@pytest.fixture(scope="module")
def qpath(files, tmp_path_factory) -> Path:
    """Embedded Qdrant in a folder with collection 'g' (the gallery, payload 'text') and 'q' (the queries)."""
    from qdrant_client import QdrantClient, models

    path = tmp_path_factory.mktemp("qdrant")
    c = QdrantClient(path=str(path))
    texts = json.loads(files["texts"].read_text())
    for name, arr, payload in (("g", np.load(files["G"]), [{"text": t, "keep": i} for i, t in enumerate(texts)]),
                               ("q", np.load(files["Q"])[:40], None)):
        c.create_collection(name, vectors_config=models.VectorParams(size=arr.shape[1], distance=models.Distance.COSINE))
        c.upload_collection(name, vectors=arr, ids=list(range(len(arr))), payload=payload, wait=True)
    c.close()
    return path


def _ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stderr[-3000:]
    return r


# -------------------------------------------------------------------------------- evaluate
def test_evaluate_json_contract_matches_library(files):
    r = _ok(cli("evaluate", "--queries", files["Q"], "--gallery", files["G"], "--query-bank", files["QB"],
                "--gallery-bank", files["GB"], "--method", "dualis", "--beta-q", "20", "--beta-g", "3", "--json"))
    out = json.loads(r.stdout)  # stdout holds the JSON object and nothing else
    assert set(out) == {"none", "dualis"}
    assert all(set(v) == CONTRACT for v in out.values())
    assert out["none"]["params"]["method"] == "none"
    assert out["dualis"]["params"] == Params("dualis", beta_q=20, beta_g=3).to_dict()
    Q, G = np.load(files["Q"]), np.load(files["G"])
    raw = evaluate(Q @ G.T)
    new = evaluate(BankNormalizer(np.load(files["QB"]), np.load(files["GB"]), method="dualis").scores(Q, G))
    for key in ("R1", "R5", "R10", "MedR", "MeanR", "k_skewness"):
        assert out["none"][key] == pytest.approx(raw[key])
        assert out["dualis"][key] == pytest.approx(new[key])
    assert out["dualis"]["k_skewness"] < out["none"]["k_skewness"]


def test_evaluate_auto_reports_tuned_params_and_gt(files, tmp_path):
    gt = tmp_path / "gt.npy"
    np.save(gt, np.arange(N_G - 1, -1, -1))  # a reversed ground truth on reversed queries = the identity
    q_rev = tmp_path / "Qrev.npy"
    np.save(q_rev, np.load(files["Q"])[::-1])
    r = _ok(cli("evaluate", "--queries", q_rev, "--gallery", files["G"], "--gt", gt, "--query-bank", files["QB"],
                "--gallery-bank", files["GB"], "--method", "auto", "--json"))
    out = json.loads(r.stdout)
    assert set(out) == {"none", "auto"}
    assert out["auto"]["params"]["method"] in ("none", "is", "dis", "dualis", "dualdis", "csls", "nnn", "centrality")
    assert "supervised tuning" in r.stderr or "no configuration" in r.stderr  # paired: same bank lengths
    assert out["none"]["R1"] == pytest.approx(evaluate(np.load(files["Q"]) @ np.load(files["G"]).T)["R1"])


def test_evaluate_through_qdrant_matches_matrix(files, qpath):
    args = ["--queries", files["Q"], "--query-bank", files["QB"], "--gallery-bank", files["GB"], "--method", "is",
            "--json"]
    mat = json.loads(_ok(cli("evaluate", "--gallery", files["G"], *args)).stdout)
    col = json.loads(_ok(cli("evaluate", "--collection", "g", "--path", qpath, "--candidates", N_G, "--limit", 50,
                             *args)).stdout)
    for key in ("R1", "R5", "R10", "k_skewness"):
        assert col["none"][key] == pytest.approx(mat["none"][key], abs=0.5)
        assert col["is"][key] == pytest.approx(mat["is"][key], abs=0.5)


# ---------------------------------------------------------------------------- bad input
def _bad_inputs(files, tmp: Path) -> dict[str, tuple[list, str]]:
    pick = tmp / "pickle.npy"
    np.save(pick, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    raw_pickle = tmp / "raw.npy"
    raw_pickle.write_bytes(pickle.dumps([1.0, 2.0]))
    vec = tmp / "vec.npy"
    np.save(vec, np.ones(384, dtype=np.float32))
    strs = tmp / "strs.npy"
    np.save(strs, np.array([["a", "b"]]))
    small = tmp / "small.npy"
    np.save(small, np.ones((5, 16), dtype=np.float32))
    base = ["evaluate", "--gallery", files["G"], "--query-bank", files["QB"], "--method", "is", "--json"]
    return {
        "missing": ([*base, "--queries", tmp / "nope.npy"], "does not exist"),
        "pickle": ([*base, "--queries", pick], "pickle"),
        "raw pickle": ([*base, "--queries", raw_pickle], "pickle"),
        "1-D": ([*base, "--queries", vec], "2-D"),
        "dtype": ([*base, "--queries", strs], "dtype"),
        "dims": ([*base, "--queries", small], "dimension"),
        "url": (["stats", "status", "--collection", "g", "--url", "http://127.0.0.1:9", "--timeout", "2"],
                "cannot reach Qdrant"),
    }


def test_bad_input_one_line_exit_2(files, tmp_path):
    for name, (args, needle) in _bad_inputs(files, tmp_path).items():
        r = cli(*args)
        assert r.returncode == 2, (name, r.stderr)
        assert r.stdout == "", name
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("dbnorm-qdrant: error:"), (name, r.stderr)
        assert needle in lines[0] and "Traceback" not in r.stderr, (name, lines)


def test_unknown_collection_and_debug_traceback(files, qpath):
    r = cli("rerank", "--collection", "nope", "--path", qpath, "--queries", files["Q"], "--out", qpath / "x.jsonl",
            "--query-bank", files["QB"], "--method", "is")
    assert r.returncode == 2 and "collection 'nope' does not exist" in r.stderr and "existing collections: g, q" in r.stderr
    r = cli("evaluate", "--queries", "nope.npy", "--gallery", files["G"], "--query-bank", files["QB"], "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr
    r = cli("evaluate", "--collection", "g", "--path", qpath, "--queries", files["Q"], "--query-bank", files["QB"],
            "--method", "is", "--limit", "5", "--json")
    assert r.returncode == 2 and "--limit 5 is too small" in r.stderr and r.stdout == ""


# -------------------------------------------------------------------- banks and stats
def test_bank_build_precompute_status_resume(files, qpath, tmp_path):
    banks = tmp_path / "banks.npz"
    r = _ok(cli("bank", "build", "--query-bank", files["QB"], "--collection", "g", "--path", qpath, "--sample", 200,
                "--method", "dualis", "--out", banks, "--json"))
    summary = json.loads(r.stdout)
    assert summary["gallery_bank"] == [200, 384] and summary["gallery_keys"] and summary["params"]["method"] == "dualis"
    with np.load(banks, allow_pickle=False) as z:
        assert z["query_bank"].shape == (N_B, 384) and z["gallery_keys"].shape == (200,)
    common = ["--collection", "g", "--path", qpath, "--banks", banks, "--json"]
    pre = json.loads(_ok(cli("stats", "precompute", *common, "--page-size", 128)).stdout)
    assert pre["written"] == N_G and pre["skipped"] == 0 and pre["params"]["method"] == "dualis"
    again = json.loads(_ok(cli("stats", "precompute", *common)).stdout)
    assert again["written"] == 0 and again["skipped"] == N_G  # resumable: current points are skipped
    st = json.loads(_ok(cli("stats", "status", *common)).stdout)
    assert st["points"] == N_G and st["current"] == N_G and st["stale"] == 0 and st["up_to_date"] and st["fingerprint"] == pre["fingerprint"]
    # other parameters: everything stored is stale for them
    st2 = json.loads(_ok(cli("stats", "status", *common, "--method", "dualis", "--beta-q", "10")).stdout)
    assert st2["current"] == 0 and st2["stale"] == N_G
    # the user's payload is untouched
    from qdrant_client import QdrantClient

    c = QdrantClient(path=str(qpath))
    try:
        pts = c.retrieve("g", ids=[0, 7], with_payload=True)
        assert {k for k in pts[0].payload} == {"text", "keep", "_dbnorm"} and pts[1].payload["keep"] == 7
        c.delete_payload("g", keys=["_dbnorm"], points=list(range(N_G)))  # leave 'g' as the other tests expect
    finally:
        c.close()


# --------------------------------------------------------------------------- rerank
def test_rerank_collection_and_matrix_jsonl(files, qpath, tmp_path):
    common = ["--query-bank", files["QB"], "--gallery-bank", files["GB"], "--method", "dualis", "--top-k", 5, "-q"]
    a = tmp_path / "col.jsonl"
    _ok(cli("rerank", "--collection", "g", "--path", qpath, "--queries", files["Q"], "--candidates", N_G,
            "--batch-size", 64, "--out", a, *common))
    b = tmp_path / "mat.jsonl"
    _ok(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--batch-size", 64, "--out", b, *common))
    rows_a = [json.loads(x) for x in a.read_text().splitlines()]
    rows_b = [json.loads(x) for x in b.read_text().splitlines()]
    assert len(rows_a) == len(rows_b) == N_G
    assert set(rows_a[0]) == {"query", "ids", "scores", "raw_scores"} and set(rows_b[0]) == {"query", "ids", "scores"}
    assert [r["query"] for r in rows_a] == list(range(N_G))
    same = np.mean([ra["ids"][0] == rb["ids"][0] for ra, rb in zip(rows_a, rows_b)])
    assert same > 0.97  # same method over all candidates: same rankings up to float16/float32 round-off
    assert all(len(r["ids"]) == 5 and r["scores"] == sorted(r["scores"], reverse=True) for r in rows_a)
    # queries from a query collection
    c = tmp_path / "qc.jsonl"
    _ok(cli("rerank", "--collection", "g", "--path", qpath, "--query-collection", "q", "--out", c, *common))
    rows_c = [json.loads(x) for x in c.read_text().splitlines()]
    assert len(rows_c) == 40 and rows_c[3]["ids"][0] == rows_a[3]["ids"][0]


def test_rerank_parquet(files, tmp_path):
    out = tmp_path / "r.parquet"
    r = cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"], "--method", "is",
            "--out", out, "-q")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert r.returncode == 2 and "pip install pyarrow" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    table = pq.read_table(out)
    assert table.num_rows == N_G
    jsonl = tmp_path / "r.jsonl"
    _ok(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"], "--method", "is",
            "--out", jsonl, "-q"))
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert table.column("ids").to_pylist() == [r["ids"] for r in rows]


# --------------------------------------------------------------------------- report
def test_report_matrices_and_collection(files, qpath, tmp_path):
    out = tmp_path / "rep"
    r = _ok(cli("report", "--queries", files["Q"], "--gallery", files["G"], "--query-bank", files["QB"],
                "--gallery-bank", files["GB"], "--method", "dualis", "--labels", files["texts"], "--out", out))
    assert "k-skew" in r.stdout
    w, h = png_size(out / "hubness.png")
    assert 600 <= w <= 4000 and 300 <= h <= 3000
    page = (out / "report.md").read_text()
    assert "hubness.png" in page and "| raw |" in page and "## Top hubs" in page
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["retrievals"]) == {"raw", "dualis"}
    hubs = metrics["retrievals"]["raw"]["top_hubs"]
    texts = json.loads(files["texts"].read_text())
    assert hubs[0]["label"] == texts[hubs[0]["id"]]
    # a collection, hubs named by a payload field, HTML page
    out2 = tmp_path / "rep2"
    _ok(cli("report", "--collection", "g", "--path", qpath, "--queries", files["Q"], "--query-bank", files["QB"],
            "--gallery-bank", files["GB"], "--method", "is", "--field", "text", "--format", "html", "--out", out2, "-q"))
    assert png_size(out2 / "hubness.png")[0] >= 600
    html = (out2 / "report.html").read_text()
    assert "<img src='hubness.png'" in html
    hub = json.loads((out2 / "metrics.json").read_text())["retrievals"]["raw"]["top_hubs"][0]
    assert hub["label"] == texts[hub["id"]]


# ----------------------------------------------------------------------------- demo
def test_demo_runs_on_the_shipped_sample(tmp_path):
    import matplotlib.image

    out = tmp_path / "demo"
    r = _ok(cli("demo", "--out", out, "--queries", 200, "-q"))
    assert "raw cosine" in r.stdout and "R@1" in r.stdout and "k-skew" in r.stdout
    assert (out / "report.md").is_file()
    img = matplotlib.image.imread(out / "hubness.png")
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 600
    m = json.loads((out / "metrics.json").read_text())["retrievals"]
    raw, new = list(m.values())
    assert new["metrics"]["k_skewness"] < raw["metrics"]["k_skewness"]


def test_shipped_sample_is_small_and_documented():
    data = PACKAGE_DATA
    assert (data / "demo_wordnet.npz").stat().st_size < 8_000_000
    info = json.loads((data / "demo_wordnet.json").read_text())
    assert "WordNet" in info["licence"] and "MiniLM" in info["model"]


def test_train_adapter_command(files, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "adapter"
    r = _ok(cli("train-adapter", "--queries", files["QB"], "--gallery", files["GB"], "--out", out, "--epochs", "1",
                "--format", "torch", "-q"))
    info = json.loads(r.stdout)
    weights = Path(info["weights"])
    assert weights.exists() and weights.stat().st_size > 1000 and Path(info["config"]).exists()
    assert len(info["history"]) == 1 and np.isfinite(info["history"][0])
    from dbnorm_qdrant.experimental.adapter import load_adapter

    ad = load_adapter(weights)
    Q = np.load(files["QB"])
    adapted = ad.adapt_queries(Q[:5])
    assert adapted.shape == (5, Q.shape[1]) and np.allclose(np.linalg.norm(adapted, axis=1), 1, atol=1e-4)
    bad = cli("train-adapter", "--queries", files["QB"], "--gallery", files["G"], "--out", out)
    assert bad.returncode == 2 and "same shape" in bad.stderr and "Traceback" not in bad.stderr
