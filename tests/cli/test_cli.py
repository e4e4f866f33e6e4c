"""The ``dbnorm-qdrant`` commands on slices of the shipped sample, against embedded Qdrant in tmp_path.

Most run :func:`dbnorm_qdrant.cli.main` in the test process (``cli``); the entry point
itself and the demo run as subprocesses (``cli_subprocess``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from dbnorm_qdrant import BankNormalizer, Params, evaluate
from cli_run import N_B, N_G, cli, cli_subprocess, ok
from support import PACKAGE_DATA

CONTRACT = {"R1", "R5", "R10", "MedR", "MeanR", "k_skewness", "params"}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


# -------------------------------------------------------------------------------- entry point
def test_module_entry_point_and_help():
    r = ok(cli_subprocess("--help"))
    for command in ("demo", "evaluate", "bank", "stats", "rerank", "report", "train-adapter"):
        assert command in r.stdout
    r = ok(cli("rerank", "--help"))
    assert "--top-k" in r.stdout and "--k K" in r.stdout and "neighbourhood size" in r.stdout


# -------------------------------------------------------------------------------- evaluate
def test_evaluate_json_contract_matches_library(files):
    r = ok(cli("evaluate", "--queries", files["Q"], "--gallery", files["G"], "--query-bank", files["QB"],
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
    r = ok(cli("evaluate", "--queries", q_rev, "--gallery", files["G"], "--gt", gt, "--query-bank", files["QB"],
               "--gallery-bank", files["GB"], "--method", "auto", "--json"))
    out = json.loads(r.stdout)
    assert set(out) == {"none", "auto"}
    assert out["auto"]["params"]["method"] in ("none", "is", "dis", "dualis", "dualdis", "csls", "nnn", "centrality",
                                               "uniform")
    assert "supervised tuning" in r.stderr or "no configuration" in r.stderr  # paired: same bank lengths
    assert out["none"]["R1"] == pytest.approx(evaluate(np.load(files["Q"]) @ np.load(files["G"]).T)["R1"])


def test_evaluate_through_qdrant_matches_matrix(files, qpath):
    args = ["--queries", files["Q"], "--query-bank", files["QB"], "--gallery-bank", files["GB"], "--method", "is",
            "--json"]
    mat = json.loads(ok(cli("evaluate", "--gallery", files["G"], *args)).stdout)
    col = json.loads(ok(cli("evaluate", "--collection", "g", "--path", qpath, "--candidates", N_G, "--top-k", 50,
                            *args)).stdout)
    for key in ("R1", "R5", "R10", "k_skewness"):
        assert col["none"][key] == pytest.approx(mat["none"][key], abs=0.5)
        assert col["is"][key] == pytest.approx(mat["is"][key], abs=0.5)


# -------------------------------------------------------------------- banks and stats
def test_bank_build_precompute_status_resume(files, qpath, tmp_path):
    banks = tmp_path / "banks.npz"
    r = ok(cli("bank", "build", "--query-bank", files["QB"], "--collection", "g", "--path", qpath, "--sample", 200,
               "--method", "dualis", "--out", banks, "--json"))
    summary = json.loads(r.stdout)
    assert summary["gallery_bank"] == [200, 384] and summary["gallery_keys"] and summary["params"]["method"] == "dualis"
    with np.load(banks, allow_pickle=False) as z:
        assert z["query_bank"].shape == (N_B, 384) and z["gallery_keys"].shape == (200,)
        assert int(z["format_version"]) == 1
    common = ["--collection", "g", "--path", qpath, "--banks", banks, "--json"]
    pre = json.loads(ok(cli("stats", "precompute", *common, "--page-size", 128)).stdout)
    assert pre["written"] == N_G and pre["skipped"] == 0 and pre["params"]["method"] == "dualis"
    again = json.loads(ok(cli("stats", "precompute", *common)).stdout)
    assert again["written"] == 0 and again["skipped"] == N_G  # resumable: current points are skipped
    st = json.loads(ok(cli("stats", "status", *common)).stdout)
    assert st["points"] == N_G and st["current"] == N_G and st["stale"] == 0 and st["up_to_date"]
    assert st["without_bias_field"] == 0  # written with the bias field the server formula reads
    assert st["fingerprint"] == pre["fingerprint"]
    # other parameters: everything stored is stale for them
    st2 = json.loads(ok(cli("stats", "status", *common, "--method", "dualis", "--beta-q", "10")).stdout)
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
    ok(cli("rerank", "--collection", "g", "--path", qpath, "--queries", files["Q"], "--candidates", N_G,
           "--batch-size", 64, "--out", a, *common))
    b = tmp_path / "mat.jsonl"
    ok(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--batch-size", 64, "--out", b, *common))
    rows_a = [json.loads(x) for x in a.read_text().splitlines()]
    rows_b = [json.loads(x) for x in b.read_text().splitlines()]
    assert len(rows_a) == len(rows_b) == N_G
    assert set(rows_a[0]) == {"query", "ids", "scores", "raw_scores"} and set(rows_b[0]) == {"query", "ids", "scores"}
    assert [r["query"] for r in rows_a] == list(range(N_G))
    same = np.mean([ra["ids"][0] == rb["ids"][0] for ra, rb in zip(rows_a, rows_b)])
    assert same > 0.97  # same method over all candidates: same rankings up to float16/float32 round-off
    assert all(len(r["ids"]) == 5 and r["scores"] == sorted(r["scores"], reverse=True) for r in rows_a)
    # the raw score is Qdrant's cosine: the query . gallery item (both unit rows)
    Q, G = np.load(files["Q"]), np.load(files["G"])
    r0 = rows_a[0]
    np.testing.assert_allclose(r0["raw_scores"], [float(Q[0] @ G[i]) for i in r0["ids"]], rtol=1e-3, atol=1e-3)
    # queries from a query collection
    c = tmp_path / "qc.jsonl"
    ok(cli("rerank", "--collection", "g", "--path", qpath, "--query-collection", "q", "--out", c, *common))
    rows_c = [json.loads(x) for x in c.read_text().splitlines()]
    assert len(rows_c) == 40 and rows_c[3]["ids"][0] == rows_a[3]["ids"][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["col.jsonl", "mat.jsonl", "qc.jsonl"]  # no temp files


def test_rerank_parquet(files, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs pyarrow (the parquet extra)")
    out = tmp_path / "r.parquet"
    ok(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"], "--method", "is",
           "--out", out, "-q"))
    table = pq.read_table(out)
    assert table.num_rows == N_G
    jsonl = tmp_path / "r.jsonl"
    ok(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"], "--method", "is",
           "--out", jsonl, "-q"))
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert table.column("ids").to_pylist() == [r["ids"] for r in rows]


# --------------------------------------------------------------------------- report
def test_report_matrices_and_collection(files, qpath, tmp_path):
    pytest.importorskip("matplotlib", reason="the report's plot needs matplotlib (the plots extra)")
    out = tmp_path / "rep"
    r = ok(cli("report", "--queries", files["Q"], "--gallery", files["G"], "--query-bank", files["QB"],
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
    ok(cli("report", "--collection", "g", "--path", qpath, "--queries", files["Q"], "--query-bank", files["QB"],
           "--gallery-bank", files["GB"], "--method", "is", "--field", "text", "--format", "html", "--out", out2, "-q"))
    assert png_size(out2 / "hubness.png")[0] >= 600
    html = (out2 / "report.html").read_text()
    assert "<img src='hubness.png'" in html
    hub = json.loads((out2 / "metrics.json").read_text())["retrievals"]["raw"]["top_hubs"][0]
    assert hub["label"] == texts[hub["id"]]


# ----------------------------------------------------------------------------- demo
def test_demo_runs_on_the_shipped_sample(tmp_path):
    mpl_image = pytest.importorskip("matplotlib.image", reason="the demo's plot needs matplotlib (the plots extra)")
    out = tmp_path / "demo"
    r = ok(cli_subprocess("demo", "--out", out, "--n-queries", 200, "-q"))
    assert "raw cosine" in r.stdout and "R@1" in r.stdout and "k-skew" in r.stdout
    assert (out / "report.md").is_file()
    img = mpl_image.imread(out / "hubness.png")
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 600
    m = json.loads((out / "metrics.json").read_text())["retrievals"]
    raw, new = list(m.values())
    assert new["metrics"]["k_skewness"] < raw["metrics"]["k_skewness"]


def test_demo_without_matplotlib_writes_the_page_and_says_how_to_plot(tmp_path):
    out = tmp_path / "demo"
    block = 'import sys; sys.modules["matplotlib"] = None  # what a base install without the plots extra sees'
    r = ok(cli_subprocess("demo", "--out", out, "--n-queries", 100, "-q", pre=block))
    assert "raw cosine" in r.stdout and 'pip install "dbnorm-qdrant[plots]"' in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.md"]
    page = (out / "report.md").read_text()
    assert "dbnorm-qdrant[plots]" in page and "hubness.png" not in page and "| raw cosine |" in page


def test_shipped_sample_is_small_and_documented():
    data = PACKAGE_DATA
    assert (data / "demo_wordnet.npz").stat().st_size < 8_000_000
    info = json.loads((data / "demo_wordnet.json").read_text())
    assert "WordNet" in info["licence"] and "MiniLM" in info["model"]


def test_train_adapter_command(files, tmp_path):
    pytest.importorskip("torch", reason="the adapter needs the torch extra")
    out = tmp_path / "adapter"
    r = ok(cli("train-adapter", "--queries", files["QB"], "--gallery", files["GB"], "--out", out, "--epochs", "1",
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
