"""Running the command line in the test process (fast) or in a subprocess (the real entry point)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from dbnorm_qdrant.cli import main

#: test-pair rows and bank rows of the slices of the shipped sample (see conftest.py)
N_G, N_B = 300, 500


def cli(*args: Any) -> subprocess.CompletedProcess:
    """``dbnorm-qdrant ARGS`` through :func:`main` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    log = logging.getLogger("dbnorm_qdrant")
    saved = (log.handlers[:], log.level, log.propagate)  # main() configures the package logger: restore it
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            log.handlers[:], log.level, log.propagate = saved
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def cli_subprocess(*args: Any, timeout: int = 300, pre: str = "", pythonpath: Path | None = None
                   ) -> subprocess.CompletedProcess:
    """``python -m dbnorm_qdrant.cli ARGS`` in a subprocess; ``pre``: Python run before ``main``."""
    env = {k: v for k, v in os.environ.items() if k not in ("QDRANT_URL", "QDRANT_API_KEY")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    if pre:
        cmd = [sys.executable, "-c", f"{pre}\nimport sys\nfrom dbnorm_qdrant.cli import main\nsys.exit(main())",
               *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "dbnorm_qdrant.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def one_line_error(r: subprocess.CompletedProcess, *needles: str, narrates: bool = False) -> str:
    """Assert exit 2 with one ``dbnorm-qdrant: error:`` line naming every needle; return the line.

    ``narrates``: the command prints its steps on stdout as it goes (``demo``), so stdout may hold some.
    """
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert narrates or r.stdout == "", r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dbnorm-qdrant: error:"), r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def tree(path: Path) -> set[str]:
    """Every path under ``path`` (relative), to check that a failed command changed nothing."""
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()
