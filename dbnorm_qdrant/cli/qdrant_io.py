"""The commands' Qdrant side: opening a client, checking collections, batched searches, list metrics.

:func:`open_qdrant` opens ``--path`` (embedded) or ``--url`` only when called -- the
commands call it after validating their other inputs -- and, when the command then
fails, removes what opening an embedded Qdrant created on disk (the folder, if it did
not exist, or the files it added to an existing one).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .._io_utils import missing_dirs
from ..errors import InputError
from ..eval.metrics import hubness_metrics, k_occurrence, retrieval_metrics
from .options import HUB_K


@dataclass(frozen=True)
class Qdrant:
    """An open ``QdrantClient`` and where it is, for messages (nothing is attached to the client)."""

    client: Any
    where: str

    def require(self, name: str) -> None:
        """Refuse a collection that does not exist, listing those that do."""
        if not self.client.collection_exists(name):
            have = sorted(c.name for c in self.client.get_collections().collections)
            raise InputError(f"collection {name!r} does not exist in {self.where}; existing collections: "
                             f"{', '.join(have) if have else '(none)'}.")

    def vector(self, name: str, using: str | None) -> tuple[str, int]:
        """(distance name, size) of the collection's vector ``using``; a wrong ``--using`` is named."""
        from ..qdrant.config import vector_info  # imports qdrant-client: only when a command needs Qdrant

        try:
            info = vector_info(self.client.get_collection(name), name, using)
        except InputError as exc:
            raise InputError(f"--using {using!r}: {exc}" if using else str(exc)) from None
        return info.distance, info.size

    def count(self, name: str) -> int:
        return int(self.client.count(name, exact=True).count)


@contextlib.contextmanager
def open_qdrant(args: argparse.Namespace, *, create: bool = False, memory: bool = False) -> Iterator[Qdrant]:
    """A :class:`Qdrant` for ``--path`` (embedded) or ``--url``; closed at the end of the block.

    ``create``: an embedded ``--path`` folder may be new (else it must exist).
    ``memory``: without ``--path``, an in-memory Qdrant (``--url`` is not an option). When the
    block raises, what opening created is removed: a new folder entirely, in an existing
    one the entries that were not there before.
    """
    path, url = getattr(args, "path", None), getattr(args, "url", None) or os.environ.get("QDRANT_URL")
    edge = getattr(args, "engine", "local") == "edge"
    if edge and not path and not memory:
        raise InputError("--engine edge opens a folder: pass --path DIR (a server is reached with --url alone).")
    if path:
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise InputError(f"--path {p} is a file; pass the folder of an embedded Qdrant.")
        if not p.exists() and not create:
            raise InputError(f"--path {p} does not exist; pass the folder of an existing embedded Qdrant "
                             "(or --url URL for a server).")
        new = missing_dirs(p)
        before = set(os.listdir(p)) if not new else set()
        if edge:
            client = _edge(p)
            where = f"Qdrant Edge at {p}"
        else:
            client = _connect(lambda: _local(p), f"cannot open the embedded Qdrant at {p}",
                              "close any other process that uses it")
            where = f"embedded Qdrant at {p}"
    elif memory and edge:  # the engine has no in-memory mode: a temporary folder, removed at the end
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="dbnorm-edge-"))
        client = _edge(tmp)
        where, new, before = "Qdrant Edge (temporary folder)", [tmp], set()
    elif memory:
        client = _connect(_memory, "cannot start an in-memory Qdrant", "reinstall qdrant-client")
        where, new, before = "in-memory Qdrant", [], set()
    else:
        if not url:
            raise InputError("no Qdrant given: pass --path DIR (embedded Qdrant) or --url URL (or set QDRANT_URL).")
        client = _connect(lambda: _remote(args, url), f"cannot reach Qdrant at {url}", "start the server or fix --url")
        where, new, before = f"Qdrant at {url}", [], set()
    try:
        yield Qdrant(client, where)
    except BaseException:
        with contextlib.suppress(Exception):
            client.close()
        if path or (memory and edge):
            _undo(Path(path) if path else new[0], new, before)
        raise
    else:
        client.close()
        if memory and edge and not path:
            shutil.rmtree(new[0], ignore_errors=True)


def _local(p: Path) -> Any:
    from qdrant_client import QdrantClient

    return QdrantClient(path=str(p))


def _edge(p: Path) -> Any:
    from ..edge import EdgeClient  # InputError naming the extra when qdrant-edge-py is missing

    return EdgeClient(p)


def _memory() -> Any:
    from qdrant_client import QdrantClient

    return QdrantClient(":memory:")


def _remote(args: argparse.Namespace, url: str) -> Any:
    from qdrant_client import QdrantClient

    api_key = getattr(args, "api_key", None) or os.environ.get("QDRANT_API_KEY")
    client = QdrantClient(url=url, api_key=api_key, timeout=int(args.timeout), check_compatibility=False)
    try:
        client.get_collections()
    except Exception:
        client.close()
        raise
    return client


def _connect(make: Any, problem: str, fix: str) -> Any:
    try:
        return make()
    except Exception as exc:  # qdrant-client raises many types here: connection, lock, version
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{problem} ({msg[:160]}); {fix}.") from None


def _undo(p: Path, new: list[Path], before: set[str]) -> None:
    """Remove what opening ``p`` created: the outermost new folder, or the new entries of ``p``."""
    if new:
        shutil.rmtree(new[-1], ignore_errors=True)
        return
    with contextlib.suppress(OSError):
        for name in set(os.listdir(p)) - before:
            q = p / name
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink()


# -------------------------------------------------------------------- searching
def collection_batches(client: Any, name: str, using: str | None, batch: int) -> Iterator[tuple[list, np.ndarray]]:
    """(ids, vectors) pages of a collection of queries."""
    from ..qdrant.sources import iter_pages, record_vector, vector_selector

    for recs in iter_pages(client, name, page_size=batch, with_vectors=vector_selector(using)):
        vecs = [record_vector(r, using, required=True) for r in recs]
        yield [r.id for r in recs], np.asarray(vecs, dtype=np.float32)


def array_batches(Q: np.ndarray, batch: int) -> Iterator[tuple[list, np.ndarray]]:
    """(row numbers, float32 rows) of a matrix, ``batch`` rows at a time."""
    for i in range(0, len(Q), batch):
        yield list(range(i, min(i + batch, len(Q)))), np.asarray(Q[i : i + batch], dtype=np.float32)


def search_lists(searcher: Any, collection: str, batches: Iterator[tuple[list, np.ndarray]], *, top_k: int,
                 using: str | None, bar: Any, rerank: bool, candidates: int | None = None,
                 with_payload: Any = False, with_raw_score: bool = False) -> Iterator[tuple[list, list]]:
    """(query ids, responses) per batch via ``query_batch_points``: reranked (a DBNormClient) or raw.

    ``with_raw_score`` (reranked only): each point also carries its raw score, read with
    :func:`dbnorm_qdrant.qdrant.raw_score`.
    """
    from qdrant_client import models

    kw: dict[str, Any] = {}
    if rerank and candidates is not None:
        kw["candidates"] = candidates
    if rerank and with_raw_score:
        kw["with_raw_score"] = True
    for qids, vecs in batches:
        reqs = [models.QueryRequest(query=v.tolist(), limit=top_k, using=using, with_payload=with_payload)
                for v in vecs]
        resp = searcher.query_batch_points(collection, reqs, **kw)
        bar.update(len(qids))
        yield qids, resp


def list_metrics(id_lists: Sequence[Sequence[Any]], n_gallery: int, gt_ids: Sequence[Any] | None,
                 top_k: int) -> tuple[dict[str, Any], np.ndarray, list]:
    """Metrics of result lists: recall from the position of the correct id, hubness from the top 10.

    A correct item missing from a list counts at rank ``top_k + 1`` (so R@K is exact for
    K <= top_k, MedR exact while below it, MeanR a lower bound). Returns the metrics, the
    k-occurrence vector and the point id of each of its positions.
    """
    out: dict[str, Any] = {}
    if gt_ids is not None:
        pos = np.array([lst.index(g) if g in lst else top_k for lst, g in zip(map(list, id_lists), gt_ids)],
                       dtype=np.float64)
        out.update(retrieval_metrics(ranks=pos, ks=(1, 5, 10)))
    col: dict[Any, int] = {}
    k = min(HUB_K, min(len(lst) for lst in id_lists))
    top = np.array([[col.setdefault(i, len(col)) for i in lst[:k]] for lst in id_lists], dtype=np.int64)
    ids = list(col)
    if len(col) > n_gallery:
        raise InputError(f"the results name {len(col)} distinct points but the collection holds {n_gallery}; "
                         "was it changed during the run? Run the command again.")
    occ = k_occurrence(topk=top, n_gallery=n_gallery)
    hub = hubness_metrics(occurrence=occ, k=k)
    hub["top_hubs"] = [(ids[i] if i < len(ids) else None, c) for i, c in hub["top_hubs"]]
    out.update(hub)
    return out, occ, ids


def reranked_lists(args: argparse.Namespace, q: Qdrant, searcher: Any, name: str, make_batches: Any, *,
                   total: int, top_k: int, rerank: bool, label: str,
                   with_payload: Any = False, on_point: Any = None) -> list[list[Any]]:
    """The id lists of every query, raw (``rerank=False``: the plain client) or through ``searcher``."""
    from .common import progress

    lists: list[list[Any]] = []
    with progress(args, total=total, desc=label, unit="q") as bar:
        for _, resp in search_lists(searcher if rerank else q.client, name, make_batches(), top_k=top_k,
                                    using=getattr(args, "using", None), bar=bar, rerank=rerank,
                                    candidates=getattr(args, "candidates", None), with_payload=with_payload):
            for r in resp:
                lists.append([p.id for p in r.points])
                if on_point is not None:
                    for p in r.points:
                        on_point(p)
    return lists


__all__ = ["Qdrant", "open_qdrant", "collection_batches", "array_batches", "search_lists",
           "list_metrics", "reranked_lists"]
