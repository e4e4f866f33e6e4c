"""Ray plumbing shared by the Ray precompute and rerank: the optional import, the session
(connect or start a small local cluster, always shut down what was started), and turning a
failed Ray task back into the package's errors.

Nothing here imports Ray at module level: :func:`require_ray` does, and names the ``ray``
extra when it is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
import sys
from typing import Any, Iterator
from urllib.parse import urlsplit

from ..errors import InputError

__all__ = ["RAY_EXTRA", "RayRunError", "require_ray", "ray_session", "unwrap", "peak_rss_mb", "check_address"]

log = logging.getLogger("dbnorm_qdrant.scale")

RAY_EXTRA = "pip install 'dbnorm-qdrant[ray]'"
#: a local cluster started by this package: small, quiet, no dashboard (the caller's cluster is used as it is)
LOCAL_OBJECT_STORE = 500 * 1024 * 1024
#: seconds to wait for a TCP answer from a cluster address before saying it is unreachable
CONNECT_TIMEOUT_S = 5.0


class RayRunError(InputError):
    """A Ray run that did not complete (a task failed after its retries, the cluster went away).

    Raised before anything was written: the collection's payload is as it was."""


def require_ray() -> Any:
    """The ``ray`` module, or an :class:`InputError` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the rerank needs Ray Data: part of the extra)
    except ImportError:
        raise InputError(f"the Ray engine needs Ray (with Ray Data), which is not installed: {RAY_EXTRA} "
                         "(or use the local engine).") from None
    return ray


def check_address(address: str) -> None:
    """Refuse a cluster address that does not answer (a TCP connect with a short timeout):
    ``ray.init`` itself would retry for minutes. ``auto`` / ``local`` are left to Ray."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    default = 10001 if address.startswith("ray://") else 6379
    try:
        host, port = parts.hostname, parts.port or default
    except ValueError:
        host, port = None, None
    if not host:
        raise InputError(f"Ray address {address!r} is not host:port or ray://host:port; pass the head node's "
                         "address (e.g. ray://head:10001 for Ray Client, head:6379 on a cluster node) or none "
                         "to start a local Ray.")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address!r} ({exc}); start it (`ray start --head`) or "
                         "fix the address (--ray-address / address=).") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_workers: int | None = None) -> Iterator[int]:
    """Yield the number of workers to use on a connected Ray.

    A Ray already initialised in this process is used as it is (and left running). Else
    ``address`` is connected to (``ray://host:port``, ``host:port`` or ``auto``), or without
    one a local Ray is started with ``num_workers`` CPUs (default: all), a 500 MB object
    store and no dashboard; what was started here is shut down at the end of the block.
    """
    ray = require_ray()
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
        raise InputError(f"num_workers must be an integer >= 1, got {num_workers!r}.")
    if address is not None:  # also when a Ray runs here already: a wrong address is named, not ignored
        check_address(address)
    started = False
    if not ray.is_initialized():
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address is not None:
            kw["address"] = address
        else:
            kw.update(num_cpus=num_workers or os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE)
        try:
            ray.init(**kw)
        except Exception as exc:  # ConnectionError, RuntimeError, version mismatch: one message
            msg = " ".join(str(exc).split())[:300] or type(exc).__name__
            where = f"the Ray cluster at {address!r}" if address else "a local Ray"
            raise InputError(f"cannot start or join {where} ({msg}); check the address and that the cluster's Ray "
                             "and Python versions match this one.") from None
        started = True
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = min(num_workers, cpus) if num_workers else cpus
        log.info("Ray: %d worker(s) of %d CPU(s)%s", workers, cpus, "" if started else " (the running Ray)")
        yield max(1, workers)
    finally:
        if started:
            ray.shutdown()


def unwrap(exc: BaseException, what: str) -> BaseException:
    """The error to raise for a failed Ray task or dataset: the task's own :class:`InputError`
    when it raised one (deterministic: bad input, not retried), else a :class:`RayRunError`
    saying ``what`` failed and that nothing was written."""
    inner: BaseException = exc
    while isinstance(getattr(inner, "cause", None), BaseException):  # RayTaskError.cause: the task's exception
        inner = inner.cause  # type: ignore[attr-defined]
    if isinstance(inner, InputError) and not isinstance(inner, RayRunError):
        return InputError(str(inner))
    msg = " ".join(str(exc).split())[:400] or type(exc).__name__
    return RayRunError(f"{what} failed on Ray ({type(exc).__name__}: {msg}); nothing was written. Check the "
                       "cluster (workers out of memory, nodes lost) and run again; raise max_retries= to "
                       "retry more.")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (``getrusage``; kB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
