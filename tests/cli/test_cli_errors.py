"""Bad input: one line on stderr (``dbnorm-qdrant: error: <problem>; <fix>``), exit 2, no traceback,
and nothing created or changed on disk. One test per item of the newcomer list (issue 12)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cli_run import cli, cli_subprocess, ok, one_line_error, tree

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def _bad_npy(files, tmp: Path) -> dict[str, tuple[list, str]]:
    pick = tmp / "pickle.npy"
    np.save(pick, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    raw_pickle = tmp / "raw.npy"
    raw_pickle.write_bytes(pickle.dumps([1.0, 2.0]))
    text = tmp / "text.npy"
    text.write_text("0.1 0.2 0.3\n")
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
        "text": ([*base, "--queries", text], "not a .npy file"),
        "1-D": ([*base, "--queries", vec], "2-D"),
        "dtype": ([*base, "--queries", strs], "dtype"),
        "dims": ([*base, "--queries", small], "dimension"),
        "url": (["stats", "status", "--collection", "g", "--url", "http://127.0.0.1:9", "--timeout", "2"],
                "cannot reach Qdrant"),
    }


def test_bad_vector_files_one_line_exit_2(files, tmp_path):
    for name, (args, needle) in _bad_npy(files, tmp_path).items():
        one_line_error(cli(*args), needle)


def test_subprocess_error_is_one_line_and_debug_keeps_the_traceback(files, tmp_path):
    one_line_error(cli_subprocess("evaluate", "--queries", tmp_path / "nope.npy", "--gallery", files["G"],
                                  "--query-bank", files["QB"]), "does not exist")
    r = cli_subprocess("evaluate", "--queries", tmp_path / "nope.npy", "--gallery", files["G"], "--query-bank",
                       files["QB"], "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "InputError" in r.stderr


# -------------------------------------------------------------------------- bank files
def _bank_file_cases(files, tmp: Path) -> dict[str, tuple[Path, str]]:
    good = tmp / "good.npz"
    np.savez(good, query_bank=np.load(files["QB"]))
    corrupt = tmp / "corrupt.npz"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated: a BadZipFile inside numpy
    text = tmp / "text.npz"
    text.write_text("query_bank = [[0.1, 0.2]]\n")
    objects = tmp / "objects.npz"
    np.savez(objects, query_bank=np.array([{"a": 1}], dtype=object))
    npy = tmp / "single.npy"
    np.save(npy, np.load(files["QB"]))
    pickled = tmp / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"query_bank": [[1.0]]}))
    newer = tmp / "newer.npz"
    np.savez(newer, query_bank=np.load(files["QB"]), format_version=np.array(99))
    method = tmp / "method.npz"
    np.savez(method, query_bank=np.load(files["QB"]), params=np.array('{"method": "magic"}'))
    return {
        "corrupt": (corrupt, "corrupt or truncated"),
        "text": (text, "not a bank file"),
        "object array": (objects, "pickled objects"),
        "single npy": (npy, "single .npy array"),
        "pickle": (pickled, "pickled objects"),
        "newer": (newer, "format version 99"),
        "unknown method": (method, "magic"),
        "missing": (tmp / "nope.npz", "does not exist"),
    }


def test_bad_bank_files_one_line_exit_2(files, tmp_path):
    for name, (path, needle) in _bank_file_cases(files, tmp_path).items():
        line = one_line_error(cli("evaluate", "--queries", files["Q"], "--gallery", files["G"], "--banks", path,
                                  "--method", "is"), needle)
        assert str(path) in line, (name, line)
        assert "bank build" in line or name == "unknown method" or "save_banks" in line, (name, line)


def test_legacy_bank_file_without_version_still_reads(files, tmp_path):
    legacy = tmp_path / "legacy.npz"  # what the 0.1 command line wrote: no format_version
    np.savez(legacy, query_bank=np.load(files["QB"]), gallery_bank=np.load(files["GB"]),
             params=np.array('{"method": "dualis", "beta_q": 20.0, "beta_g": 3.0, "k": 1, "alpha": 1.0, '
                             '"center": false}'), meta=np.array('{"paired": true}'))
    ok(cli("evaluate", "--queries", files["Q"], "--gallery", files["G"], "--banks", legacy, "--json"))


# -------------------------------------------------------------------------- outputs
def test_unwritable_out_exit_2_and_nothing_written(files, qpath, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = tree(tmp_path)
    cases = [
        (["rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"], "--method", "is",
          "--out", blocker / "r.jsonl"], "a-file is a file"),
        (["report", "--queries", files["Q"], "--gallery", files["G"], "--query-bank", files["QB"], "--method", "is",
          "--out", blocker / "rep"], "a-file is a file"),
        (["bank", "build", "--query-bank", files["QB"], "--out", blocker / "b.npz"], "a-file is a file"),
        (["demo", "--out", blocker], "is a file, not a folder"),
    ]
    for args, needle in cases:
        one_line_error(cli(*args), "cannot write" if "demo" not in args else "--out", needle)
    assert tree(tmp_path) == before


@pytest.mark.skipif(ROOT_USER, reason="root writes into read-only folders")
def test_read_only_out_folder_exit_2(files, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        one_line_error(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"],
                           "--method", "is", "--out", ro / "sub" / "r.jsonl"), "no write permission")
    finally:
        ro.chmod(0o700)
    assert tree(ro) == set()


def test_rerank_out_extension_must_be_known(files, tmp_path):
    one_line_error(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"],
                       "--method", "is", "--out", tmp_path / "r.csv"), ".jsonl", ".parquet", "'.csv'")
    one_line_error(cli("rerank", "--gallery", files["G"], "--queries", files["Q"], "--query-bank", files["QB"],
                       "--method", "is", "--out", tmp_path / "r.jsonl", "--format", "parquet"), "make them agree")
    assert tree(tmp_path) == set()


def test_failed_rerank_leaves_no_partial_file(files, tmp_path):
    bad_gallery = tmp_path / "G.npy"
    np.save(bad_gallery, np.zeros((5, 384), dtype=np.float32))  # zero rows: refused after --out was checked
    out = tmp_path / "deep" / "r.jsonl"
    r = cli("rerank", "--gallery", bad_gallery, "--queries", files["Q"], "--query-bank", files["QB"],
            "--method", "is", "--out", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert tree(tmp_path) == {"G.npy"}


# ------------------------------------------------------------------- Qdrant inputs
def test_path_is_not_created_when_the_command_fails(files, tmp_path):
    new = tmp_path / "new" / "qdrant"
    one_line_error(cli("evaluate", "--queries", files["Q"], "--collection", "g", "--path", new, "--query-bank",
                       files["QB"], "--method", "is"), "--path", "does not exist")
    one_line_error(cli("stats", "status", "--collection", "g", "--path", new), "does not exist")
    assert tree(tmp_path) == set()


def test_failed_demo_leaves_path_and_out_as_they_were(tmp_path):
    from qdrant_client import QdrantClient, models

    path = tmp_path / "qdrant"
    c = QdrantClient(path=str(path))
    c.create_collection("dbnorm_demo", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    c.upsert("dbnorm_demo", points=[models.PointStruct(id=1, vector=[1.0, 0, 0, 0])])
    c.close()
    before = tree(tmp_path)
    one_line_error(cli("demo", "--path", path, "--out", tmp_path / "report", "--n-queries", 10, "-q"),
                   "another size", "empty --path", narrates=True)
    assert tree(tmp_path) == before  # no report folder, nothing new in the Qdrant folder


def test_using_wrong_names_the_value_and_the_valid_ones(files, qpath):
    base = ["evaluate", "--queries", files["Q"], "--query-bank", files["QB"], "--method", "is", "--path", qpath]
    one_line_error(cli(*base, "--collection", "nv", "--using", "wrong"), "'wrong'", "'a'", "'b'")
    one_line_error(cli(*base, "--collection", "g", "--using", "wrong"), "'wrong'", "single unnamed")
    one_line_error(cli(*base, "--collection", "nv"), "dense vectors", "'a'")


def test_unknown_collection_and_top_k_below_10(files, qpath, tmp_path):
    one_line_error(cli("rerank", "--collection", "nope", "--path", qpath, "--queries", files["Q"], "--out",
                       tmp_path / "x.jsonl", "--query-bank", files["QB"], "--method", "is"),
                   "collection 'nope' does not exist", "existing collections: g, nv, q")
    one_line_error(cli("evaluate", "--collection", "g", "--path", qpath, "--queries", files["Q"], "--query-bank",
                       files["QB"], "--method", "is", "--top-k", "5", "--json"), "--top-k 5 is too small")
    assert tree(tmp_path) == set()


# ------------------------------------------------------------------ numeric options
def test_zero_counts_are_refused_by_name(files, qpath, tmp_path):
    one_line_error(cli("bank", "build", "--query-bank", files["QB"], "--collection", "g", "--path", qpath,
                       "--sample", "0", "--out", tmp_path / "b.npz"), "--sample", ">= 1", "got 0")
    one_line_error(cli("rerank", "--top-k", "0", "--collection", "g", "--path", qpath, "--queries", files["Q"],
                       "--query-bank", files["QB"], "--out", tmp_path / "r.jsonl"), "--top-k", ">= 1")
    one_line_error(cli("evaluate", "--queries", files["Q"], "--gallery", files["G"], "--query-bank", files["QB"],
                       "--method", "csls", "--k", "0"), "--k", ">= 1")
    assert tree(tmp_path) == set()


def test_unknown_method_is_caught_before_any_work(files, tmp_path):
    one_line_error(cli("rerank", "--method", "magic", "--gallery", files["G"], "--queries", files["Q"],
                       "--query-bank", files["QB"], "--out", tmp_path / "r.jsonl"), "magic", "dualis")
    # a parameter the method refuses is caught before tuning or reading the vectors
    one_line_error(cli("rerank", "--method", "uniform", "--alpha", "2", "--gallery", tmp_path / "nope.npy",
                       "--queries", files["Q"], "--query-bank", files["QB"], "--out", tmp_path / "r.jsonl"), "alpha")
    assert tree(tmp_path) == set()


def test_the_client_is_not_modified(files, qpath):
    """The CLI keeps where a client points in its own object, never as an attribute of the client."""
    import argparse

    from dbnorm_qdrant.cli.qdrant_io import open_qdrant

    with open_qdrant(argparse.Namespace(path=str(qpath), url=None)) as q:
        assert "qdrant" in q.where and not any(a.startswith("_dbnorm") for a in vars(q.client))


def test_zip_with_a_broken_member_is_corrupt(files, tmp_path):
    bad = tmp_path / "member.npz"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("query_bank.npy", b"\x93NUMPY garbage")
    one_line_error(cli("evaluate", "--queries", files["Q"], "--gallery", files["G"], "--banks", bad, "--method", "is"),
                   str(bad))
