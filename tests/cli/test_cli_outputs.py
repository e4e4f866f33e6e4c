"""Command-line outputs: a bad query row named by its row number, output files with the mode of a
plainly created file, and errors raised below the CLI in its flags' words."""

from __future__ import annotations

import os
import stat

import numpy as np

from cli_run import cli, ok, one_line_error, tree


def test_rerank_through_qdrant_names_the_query_row_not_its_batch_position(files, qpath, tmp_path):
    Q = np.load(files["Q"])[:20].copy()
    Q[10] = 0.0
    qz = tmp_path / "qz.npy"
    np.save(qz, Q)
    out = tmp_path / "r" / "r.jsonl"
    common = ["--query-bank", files["QB"], "--method", "is", "--top-k", 5, "--out", out, "-q"]
    line = one_line_error(cli("rerank", "--collection", "g", "--path", qpath, "--queries", qz, "--batch-size", 4,
                              *common), "--queries row 10 is a zero vector")
    assert "requests[" not in line
    one_line_error(cli("rerank", "--gallery", files["G"], "--queries", qz, "--batch-size", 4, *common),
                   "--queries row 10 is a zero vector")
    assert tree(tmp_path) == {"qz.npy"}


def test_output_files_get_the_umask_mode_not_0600(files, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "r.jsonl"
        ok(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"], "--method",
               "is", "--top-k", 3, "--out", out, "-q"))
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        os.umask(0o027)
        out2 = tmp_path / "b.npz"
        ok(cli("bank", "build", "--query-bank", files["QB"], "--gallery-bank", files["GB"], "--out", out2, "-q"))
        assert stat.S_IMODE(out2.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_errors_from_below_the_cli_speak_in_flags(files, qpath):
    base = ["evaluate", "--queries", files["Q"], "--query-bank", files["QB"], "--method", "is", "--path", qpath]
    line = one_line_error(cli(*base, "--collection", "g", "--using", "wrong"), "drop --using")
    assert "using=" not in line
    line = one_line_error(cli(*base, "--collection", "nv"), "pass --using one of the dense vectors")
    assert "using=" not in line
    line = one_line_error(cli("evaluate", "--queries", files["Q"], "--gallery", files["G"], "--query-bank",
                              files["QB"], "--method", "csls", "--k", "100000"), "choose --k <=")
    assert "choose k" not in line
