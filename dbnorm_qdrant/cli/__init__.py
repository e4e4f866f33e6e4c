"""The ``dbnorm-qdrant`` command line.

Commands
--------
``demo``
    The main job on a real sample shipped in the package (WordNet reverse dictionary,
    all-MiniLM-L6-v2): loads it into embedded Qdrant, tunes, reranks every test query
    through :class:`~dbnorm_qdrant.qdrant.DBNormClient`, prints raw vs normalised recall
    and hubness, and writes the hubness report.
``evaluate``
    Metrics before and after from vectors (``.npy``), or through a Qdrant collection.
``bank build``
    A bank file (``.npz``: query bank, gallery bank, gallery keys, optional parameters)
    from ``.npy`` files or by sampling collections.
``stats precompute`` / ``stats status`` / ``stats refresh``
    Statistics in a collection's payload: write them (resumable), check coverage and
    staleness, refresh the activation flags of ``dis``/``dualdis``.
``rerank``
    Batch offline reranking of a query set to JSONL or Parquet, through Qdrant or
    against a plain gallery matrix.
``report``
    The hubness report (PNG + Markdown/HTML) of a collection or a pair of matrices.

Results go to stdout; diagnostics (logging) and progress bars go to stderr. Bad input
gives a one-line error and exit code 2 (``--debug`` shows the traceback).

This module only parses, loads, calls the library and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .. import __version__
from ..core.validation import InputError, as_matrix
from ..core.methods import METHODS, Params
from ..eval.metrics import evaluate as _evaluate
from ..eval.metrics import hubness_metrics, k_occurrence, retrieval_metrics

PROG = "dbnorm-qdrant"
log = logging.getLogger("dbnorm_qdrant.cli")

#: metrics of the ``evaluate`` contract, in order
CONTRACT_KEYS = ("R1", "R5", "R10", "MedR", "MeanR", "k_skewness")
_HUB_K = 10


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


# ====================================================================== helpers: I/O
def _progress(args: argparse.Namespace, **kw: Any):
    from tqdm.auto import tqdm

    return tqdm(file=sys.stderr, disable=getattr(args, "quiet", False), leave=False, **kw)


def _load_npy(path: str | os.PathLike[str] | None, what: str, *, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` array, never unpickled; one-line errors for the usual mistakes."""
    if path is None:
        raise CliError(f"{what} is required.")
    p = Path(path)
    if not p.exists():
        raise CliError(f"{what}: file {p} does not exist.")
    if p.is_dir():
        raise CliError(f"{what}: {p} is a folder; pass a .npy file.")
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise CliError(f"{what}: {p} holds pickled objects, which are never loaded; save a numeric array "
                           "with numpy.save(path, array).") from None
        raise CliError(f"{what}: {p} is not a readable .npy file ({exc}).") from None
    except (OSError, EOFError) as exc:
        raise CliError(f"{what}: cannot read {p} as a .npy file ({exc}).") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise CliError(f"{what}: {p} is an .npz archive; pass a single .npy array (or use --banks for a bank file).")
    return arr


def _matrix(path: str | None, what: str, *, ncols: int | None = None, of: str | None = None,
            mmap: bool = False) -> np.ndarray:
    arr = _load_npy(path, what, mmap=mmap)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise CliError(f"{what}: {path} has dtype {arr.dtype}; vectors must be a real float array "
                       "(float16/32/64).")
    if arr.ndim != 2:
        raise CliError(f"{what}: {path} has shape {arr.shape}; vectors must be 2-D (rows x dimension).")
    if ncols is not None and arr.shape[1] != ncols:
        raise CliError(f"{what}: {path} has dimension {arr.shape[1]} but {of} has {ncols}; "
                       "use vectors from the same embedding model.")
    if mmap:
        return arr
    return as_matrix(arr, f"{what} ({path})")


def _gt(path: str | None, n_queries: int) -> np.ndarray | None:
    if path is None:
        return None
    gt = _load_npy(path, "--gt")
    if gt.dtype == bool:
        return gt
    if not np.issubdtype(gt.dtype, np.integer):
        raise CliError(f"--gt: {path} has dtype {gt.dtype}; pass integer gallery indices (one per query) "
                       "or a boolean mask.")
    if gt.ndim != 1 or len(gt) != n_queries:
        raise CliError(f"--gt: {path} has shape {gt.shape}; pass one gallery index per query ({n_queries}).")
    return gt


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    return x


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _f(x: Any, spec: str = "{:.2f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return spec.format(x)


# ================================================================== helpers: Qdrant
def _open_client(args: argparse.Namespace):
    """A QdrantClient for ``--path`` (embedded) or ``--url``; checked to answer."""
    from qdrant_client import QdrantClient

    path, url = getattr(args, "path", None), getattr(args, "url", None) or os.environ.get("QDRANT_URL")
    if path:
        try:
            client = QdrantClient(path=str(path))
        except Exception as exc:  # e.g. the folder is locked by another process
            raise CliError(f"cannot open the embedded Qdrant at {path}: {exc}") from None
        client._dbnorm_where = f"embedded Qdrant at {path}"  # type: ignore[attr-defined]
        return client
    if not url:
        raise CliError("no Qdrant given: pass --path DIR (embedded Qdrant) or --url URL (or set QDRANT_URL).")
    api_key = getattr(args, "api_key", None) or os.environ.get("QDRANT_API_KEY")
    try:
        client = QdrantClient(url=url, api_key=api_key, timeout=int(args.timeout), check_compatibility=False)
        client.get_collections()
    except Exception as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise CliError(f"cannot reach Qdrant at {url} ({msg[:160]}); start the server or fix --url.") from None
    client._dbnorm_where = f"Qdrant at {url}"  # type: ignore[attr-defined]
    return client


def _require_collection(client: Any, name: str) -> None:
    if not client.collection_exists(name):
        have = sorted(c.name for c in client.get_collections().collections)
        where = getattr(client, "_dbnorm_where", "Qdrant")
        raise CliError(f"collection {name!r} does not exist in {where}; existing collections: "
                       f"{', '.join(have) if have else '(none)'}.")


def _distance(client: Any, name: str, using: str | None) -> tuple[str, int]:
    """Distance name and size of a collection's (named) vector."""
    vectors = client.get_collection(name).config.params.vectors
    if isinstance(vectors, dict):
        key = using if using is not None else ""
        if key not in vectors:
            raise CliError(f"collection {name!r} has named vectors {sorted(vectors)}; pass --using one of them.")
        vp = vectors[key]
    else:
        vp = vectors
    dist = vp.distance.value if hasattr(vp.distance, "value") else str(vp.distance)
    return dist, int(vp.size)


# ==================================================================== banks / params
def _load_bank_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise CliError(f"--banks: file {p} does not exist; build one with `{PROG} bank build`.")
    try:
        with np.load(p, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise CliError(f"--banks: {p} is not an .npz bank file; build one with `{PROG} bank build`.")
            data = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise CliError(f"--banks: {p} cannot be read without unpickling ({exc}); rebuild it with "
                       f"`{PROG} bank build`.") from None
    except (OSError, EOFError) as exc:
        raise CliError(f"--banks: cannot read {p} ({exc}).") from None
    if "query_bank" not in data:
        raise CliError(f"--banks: {p} has no 'query_bank' array; build it with `{PROG} bank build`.")
    out: dict[str, Any] = {"query_bank": data["query_bank"], "gallery_bank": data.get("gallery_bank"),
                           "gallery_keys": data.get("gallery_keys"), "params": None, "paired": False}
    if "params" in data:
        out["params"] = json.loads(str(data["params"].item()))
    if "meta" in data:
        out["paired"] = bool(json.loads(str(data["meta"].item())).get("paired", False))
    return out


def _banks(args: argparse.Namespace, dim: int | None = None, *, required: bool = True):
    """(BankSet, stored params or None, paired) from ``--banks`` or ``--query-bank``/``--gallery-bank``."""
    from ..qdrant import BankSet

    if getattr(args, "banks", None):
        if getattr(args, "query_bank", None) or getattr(args, "gallery_bank", None):
            raise CliError("give either --banks or --query-bank/--gallery-bank, not both.")
        b = _load_bank_file(args.banks)
        qb, gb, keys, stored, paired = b["query_bank"], b["gallery_bank"], b["gallery_keys"], b["params"], b["paired"]
        if qb.ndim != 2 or (dim is not None and qb.shape[1] != dim):
            raise CliError(f"--banks: the query bank has shape {qb.shape}, but the vectors have dimension {dim}; "
                           "use banks embedded with the same model.")
    else:
        if not getattr(args, "query_bank", None):
            if not required:
                return None, None, False
            raise CliError("banks are required: pass --query-bank QB.npy [--gallery-bank GB.npy] or --banks FILE.npz.")
        qb = _matrix(args.query_bank, "--query-bank", ncols=dim, of="the queries")
        gb = None
        if getattr(args, "gallery_bank", None):
            gb = _matrix(args.gallery_bank, "--gallery-bank", ncols=qb.shape[1], of="--query-bank")
        keys, stored = None, None
        paired = gb is not None and len(gb) == len(qb)
    flag = getattr(args, "paired", None)
    if flag is not None:
        paired = flag
    return BankSet.from_arrays(qb, gb, keys), stored, paired


def _explicit_params(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    for name in ("beta_q", "beta_g", "k", "alpha"):
        v = getattr(args, name, None)
        if v is not None:
            kw[name] = v
    if getattr(args, "center", False):
        kw["center"] = True
    return kw


def _params(args: argparse.Namespace, banks: Any, stored: dict | None, paired: bool) -> tuple[Params, Any]:
    """The Params to use and the TuneResult (or None): explicit method, stored params, or tuning."""
    from ..core.tuning import tune

    method = getattr(args, "method", None)
    extra = _explicit_params(args)
    if method is None and stored is not None:
        p = Params(**stored)
        return (p.with_(**extra) if extra else p), None
    method = method or "auto"
    if method == "auto":
        if extra:
            log.warning("--method auto chooses betas, k, alpha and centring itself; ignoring %s", sorted(extra))
        log.info("tuning on the banks (%s, %d query-bank rows)...", "paired" if paired else "unpaired",
                 len(banks.query_bank))
        t0 = time.perf_counter()
        res = tune(banks.query_bank, banks.gallery_bank, paired=paired, seed=getattr(args, "seed", 0))
        log.info("%s [%.1fs]", res.reason, time.perf_counter() - t0)
        return res.params, res
    return Params(method=method, **extra), None


def _normalizer(banks: Any, params: Params, *, unit: bool = False):
    return banks.normalizer(params, unit=unit)


# ============================================================ Qdrant result lists
def _query_collection_batches(client: Any, name: str, using: str | None, batch: int) -> Iterator[tuple[list, np.ndarray]]:
    """(ids, vectors) pages of a collection of queries."""
    offset = None
    while True:
        recs, offset = client.scroll(collection_name=name, limit=batch, offset=offset, with_payload=False,
                                     with_vectors=True if using is None else [using])
        if recs:
            vecs = [r.vector[using] if isinstance(r.vector, dict) else r.vector for r in recs]
            yield [r.id for r in recs], np.asarray(vecs, dtype=np.float32)
        if offset is None:
            return


def _array_batches(Q: np.ndarray, batch: int) -> Iterator[tuple[list, np.ndarray]]:
    for i in range(0, len(Q), batch):
        yield list(range(i, min(i + batch, len(Q)))), np.asarray(Q[i : i + batch], dtype=np.float32)


def _search_lists(searcher: Any, collection: str, batches: Iterator[tuple[list, np.ndarray]], *, limit: int,
                  using: str | None, bar: Any, rerank: bool, candidates: int | None = None,
                  with_payload: Any = False) -> Iterator[tuple[list, list]]:
    """(query ids, responses) per batch, via ``query_batch_points`` (reranked or raw)."""
    from qdrant_client import models

    for qids, vecs in batches:
        reqs = [models.QueryRequest(query=v.tolist(), limit=limit, using=using, with_payload=with_payload)
                for v in vecs]
        if rerank:
            kw = {} if candidates is None else {"candidates": candidates}
            resp = searcher.query_batch_points(collection, reqs, **kw)
        else:
            resp = searcher.query_batch_points(collection, reqs)
        bar.update(len(qids))
        yield qids, resp


def _list_metrics(id_lists: Sequence[Sequence[Any]], n_gallery: int, gt_ids: Sequence[Any] | None,
                  limit: int) -> tuple[dict[str, Any], np.ndarray, list]:
    """Metrics of result lists: recall from the position of the correct id, hubness from the top-10.

    A correct item missing from a list counts at rank ``limit + 1`` (so R@K is exact for
    K <= limit, MedR exact while below it, MeanR a lower bound).
    """
    out: dict[str, Any] = {}
    if gt_ids is not None:
        pos = np.array([lst.index(g) if g in lst else limit for lst, g in zip(map(list, id_lists), gt_ids)],
                       dtype=np.float64)
        out.update(retrieval_metrics(ranks=pos, ks=(1, 5, 10)))
    col: dict[Any, int] = {}
    k = min(_HUB_K, min(len(lst) for lst in id_lists))
    top = np.array([[col.setdefault(i, len(col)) for i in lst[:k]] for lst in id_lists], dtype=np.int64)
    ids = list(col)
    if len(col) > n_gallery:
        raise CliError(f"the results name {len(col)} distinct points but the collection holds {n_gallery}.")
    occ = k_occurrence(topk=top, n_gallery=n_gallery)
    hub = hubness_metrics(occurrence=occ, k=k)
    hub["top_hubs"] = [(ids[i] if i < len(ids) else None, c) for i, c in hub["top_hubs"]]
    out.update(hub)
    return out, occ, ids


def _contract(m: dict[str, Any], params: Params) -> dict[str, Any]:
    out = {k: m.get(k) for k in CONTRACT_KEYS}
    out["params"] = params.to_dict()
    return out


# ========================================================================== evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    Q = _matrix(args.queries, "--queries")
    banks, stored, paired = _banks(args, Q.shape[1])
    params, _ = _params(args, banks, stored, paired)
    key = args.method or "auto"
    if args.collection:
        result = _evaluate_collection(args, Q, banks, params, key)
    else:
        G = _matrix(args.gallery, "--gallery", ncols=Q.shape[1], of="--queries")
        gt = _gt(args.gt, len(Q))
        t0 = time.perf_counter()
        raw = _evaluate(Q @ G.T, gt, _HUB_K, ks=(1, 5, 10))
        nz = _normalizer(banks, params)
        new = _evaluate(nz.scores(Q, G), gt, _HUB_K, ks=(1, 5, 10)) if params.method != "none" else raw
        log.info("scored %d queries x %d gallery items [%.1fs]", len(Q), len(G), time.perf_counter() - t0)
        result = {"none": _contract(raw, Params(method="none")), key: _contract(new, params)}
    if args.json:
        _emit_json(result)
    else:
        _print_table([[name] + [_f(v[k]) for k in CONTRACT_KEYS] for name, v in result.items()],
                     ["method", "R@1", "R@5", "R@10", "MedR", "MeanR", "k-skew"])
        print(f"\nparams used: {json.dumps(result[key]['params'])}")
    return 0


def _evaluate_collection(args: argparse.Namespace, Q: np.ndarray, banks: Any, params: Params, key: str) -> dict:
    from ..qdrant import DBNormClient

    client = _open_client(args)
    with contextlib.closing(client):
        _require_collection(client, args.collection)
        dist, size = _distance(client, args.collection, args.using)
        if size != Q.shape[1]:
            raise CliError(f"--queries have dimension {Q.shape[1]} but collection {args.collection!r} has size {size}.")
        n = client.count(args.collection, exact=True).count
        gt = list(range(len(Q))) if args.gt is None else _load_npy(args.gt, "--gt").tolist()
        if len(gt) != len(Q):
            raise CliError(f"--gt: {len(gt)} entries for {len(Q)} queries; pass one point id per query.")
        if args.limit < 10:
            raise CliError(f"--limit {args.limit} is too small: R@10 and the top-10 hubness need at least 10 results "
                           "per query; use --limit 10 or more (default 100).")
        db = DBNormClient(client, _normalizer(banks, params, unit=dist == "Cosine"), candidates=args.candidates)
        out = {}
        for name, rerank, p in (("none", False, Params(method="none")), (key, True, params)):
            if name == key and p.method == "none":
                out[name] = dict(out["none"], params=p.to_dict())
                continue
            lists = []
            with _progress(args, total=len(Q), desc=f"{name}: query_batch_points", unit="q") as bar:
                for _, resp in _search_lists(db if rerank else client, args.collection,
                                             _array_batches(Q, args.batch_size), limit=args.limit,
                                             using=args.using, bar=bar, rerank=rerank, candidates=args.candidates):
                    lists += [[pt.id for pt in r.points] for r in resp]
            m, _, _ = _list_metrics(lists, n, gt, args.limit)
            out[name] = _contract(m, p)
        return out


# ============================================================================ bank
def cmd_bank_build(args: argparse.Namespace) -> int:
    from ..qdrant import DBNormClient

    meta: dict[str, Any] = {"created_by": f"{PROG} {__version__}"}
    keys = None
    if args.collection or args.query_collection:
        client = _open_client(args)
        with contextlib.closing(client):
            db = DBNormClient(client)
            qb = _matrix(args.query_bank, "--query-bank") if args.query_bank else None
            if args.query_collection:
                _require_collection(client, args.query_collection)
                log.info("reading the query bank from collection %r...", args.query_collection)
                qb = db.query_bank_from_collection(args.query_collection, args.query_sample, seed=args.seed,
                                                   using=args.query_using)
                meta["query_collection"] = args.query_collection
            if qb is None:
                raise CliError("a query bank is needed: pass --query-bank QB.npy or --query-collection NAME.")
            if args.collection:
                _require_collection(client, args.collection)
                log.info("sampling %d gallery-bank points from collection %r...", args.sample, args.collection)
                gb, keys = db.sample_gallery_bank(args.collection, args.sample, seed=args.seed, using=args.using)
                meta.update(gallery_collection=args.collection, sample=int(len(gb)), seed=args.seed)
            else:
                gb = _matrix(args.gallery_bank, "--gallery-bank", ncols=qb.shape[1], of="the query bank") \
                    if args.gallery_bank else None
    else:
        qb = _matrix(args.query_bank, "--query-bank")
        gb = _matrix(args.gallery_bank, "--gallery-bank", ncols=qb.shape[1], of="--query-bank") if args.gallery_bank else None
    from ..qdrant import BankSet

    banks = BankSet.from_arrays(qb, gb, keys)  # validates shapes, dims and values
    paired = gb is not None and keys is None and len(gb) == len(qb) and not args.query_collection
    if args.paired is not None:
        paired = args.paired
    meta["paired"] = bool(paired)
    arrays: dict[str, Any] = {"query_bank": banks.query_bank}
    if banks.gallery_bank is not None:
        arrays["gallery_bank"] = banks.gallery_bank
    if banks.gallery_keys is not None:
        arrays["gallery_keys"] = banks.gallery_keys
    params = None
    if args.method is not None:
        params, res = _params(args, banks, None, paired)
        arrays["params"] = np.array(json.dumps(params.to_dict()))
        if res is not None:
            meta["tuning"] = res.reason
    arrays["meta"] = np.array(json.dumps(meta))
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CliError(f"--out must end in .npz, got {out}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    summary = {"out": str(out), "query_bank": list(banks.query_bank.shape),
               "gallery_bank": None if banks.gallery_bank is None else list(banks.gallery_bank.shape),
               "gallery_keys": banks.gallery_keys is not None, "paired": bool(paired),
               "params": None if params is None else params.to_dict()}
    if args.json:
        _emit_json(summary)
    else:
        print(f"wrote {out}: query bank {tuple(banks.query_bank.shape)}, gallery bank "
              f"{None if banks.gallery_bank is None else tuple(banks.gallery_bank.shape)}"
              f"{', sampled from ' + repr(args.collection) if args.collection else ''}"
              f"{', params ' + json.dumps(params.to_dict()) if params else ''}")
    return 0


# =========================================================================== stats
def _db_for(args: argparse.Namespace, client: Any):
    from ..qdrant import DBNormClient

    _require_collection(client, args.collection)
    dist, size = _distance(client, args.collection, args.using)
    banks, stored, paired = _banks(args, size)
    params, _ = _params(args, banks, stored, paired)
    nz = _normalizer(banks, params, unit=dist == "Cosine")
    return DBNormClient(client, nz, payload_key=args.payload_key), nz


def cmd_stats_precompute(args: argparse.Namespace) -> int:
    client = _open_client(args)
    with contextlib.closing(client):
        db, nz = _db_for(args, client)
        t0 = time.perf_counter()
        rep = db.precompute(args.collection, using=args.using, page_size=args.page_size, force=args.force,
                            progress=not args.quiet)
        dt = time.perf_counter() - t0
    out = {"collection": args.collection, "fingerprint": rep.fingerprint, "written": rep.written,
           "skipped": rep.skipped, "seconds": round(dt, 3), "params": nz.params.to_dict(), "payload_key": args.payload_key}
    if args.json:
        _emit_json(out)
    else:
        print(f"{args.collection}: wrote statistics of {rep.written} points, {rep.skipped} already current "
              f"(fingerprint {rep.fingerprint}, payload key {args.payload_key!r}) in {dt:.1f}s")
    return 0


def cmd_stats_status(args: argparse.Namespace) -> int:
    client = _open_client(args)
    with contextlib.closing(client):
        _require_collection(client, args.collection)
        _, size = _distance(client, args.collection, args.using)
        expected = params = None
        if getattr(args, "banks", None) or getattr(args, "query_bank", None):
            _, nz = _db_for(args, client)
            expected, params = nz.fingerprint, nz.params
        total = client.count(args.collection, exact=True).count
        fps: Counter[str | None] = Counter()
        offset = None
        with _progress(args, total=total, desc=f"scanning {args.collection}", unit="pt") as bar:
            while True:
                recs, offset = client.scroll(collection_name=args.collection, limit=1024, offset=offset,
                                             with_payload=[args.payload_key], with_vectors=False)
                for r in recs:
                    rec = (r.payload or {}).get(args.payload_key)
                    fps[rec.get("fp") if isinstance(rec, dict) else None] += 1
                bar.update(len(recs))
                if offset is None:
                    break
    missing = fps.pop(None, 0)
    with_stats = sum(fps.values())
    out: dict[str, Any] = {
        "collection": args.collection, "points": total, "payload_key": args.payload_key,
        "with_stats": with_stats, "missing": missing, "fingerprints": dict(fps.most_common()),
        "coverage": (with_stats / total) if total else 0.0,
    }
    if expected is not None:
        current = fps.get(expected, 0)
        out.update(fingerprint=expected, current=current, stale=with_stats - current,
                   coverage=(current / total) if total else 0.0, params=params.to_dict(),
                   up_to_date=current == total)
        if params.gated:
            out["activation_flags"] = (f"{params.method} gates on activation sets that go stale when points are added; "
                                       f"run `{PROG} stats refresh` after adding points")
    if args.json:
        _emit_json(out)
    else:
        print(f"collection {args.collection!r}: {total} points, payload key {args.payload_key!r}")
        if expected is not None:
            print(f"  fingerprint of these banks + params: {expected} ({params.method})")
            print(f"  current: {out['current']} ({out['coverage']:.1%})   stale: {out['stale']}   missing: {missing}")
            if "activation_flags" in out:
                print(f"  note: {out['activation_flags']}")
        else:
            print(f"  with statistics: {with_stats} ({out['coverage']:.1%})   missing: {missing}")
        for fp, c in fps.most_common(5):
            print(f"  fingerprint {fp}: {c} points")
    return 0


def cmd_stats_refresh(args: argparse.Namespace) -> int:
    client = _open_client(args)
    with contextlib.closing(client):
        db, nz = _db_for(args, client)
        rep = db.refresh(args.collection, using=args.using)
    out = {"collection": args.collection, "fingerprint": rep.fingerprint, "flags_changed": rep.flags_changed,
           "params": nz.params.to_dict()}
    if args.json:
        _emit_json(out)
    else:
        if not nz.params.gated:
            print(f"{nz.params.method} has no activation flags; nothing to refresh")
        else:
            print(f"{args.collection}: {rep.flags_changed} activation flags rewritten (fingerprint {rep.fingerprint})")
    return 0


# ========================================================================== rerank
class _Writer:
    """Streams result rows to JSONL or Parquet (one row group per batch)."""

    def __init__(self, path: Path, fmt: str | None) -> None:
        fmt = fmt or ("parquet" if path.suffix in (".parquet", ".pq") else "jsonl")
        self.fmt, self.path, self.rows = fmt, path, 0
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
                import pyarrow.parquet  # noqa: F401
            except ImportError:
                raise CliError("Parquet output needs pyarrow, which is not installed: `pip install pyarrow` (or the parquet extra), "
                               "or write JSONL (--out results.jsonl).") from None
            self._pq = None
        else:
            self._f = open(path, "w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.rows += len(rows)
        if self.fmt == "jsonl":
            for r in rows:
                self._f.write(json.dumps(_jsonable(r)) + "\n")
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {k: [r.get(k) for r in rows] for k in rows[0]}
        if any(not isinstance(i, int) for r in rows for i in r["ids"]) or not isinstance(rows[0]["query"], int):
            cols["ids"] = [[str(i) for i in r["ids"]] for r in rows]
            cols["query"] = [str(q) for q in cols["query"]]
        table = pa.table(cols)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.path, table.schema)
        self._pq.write_table(table.cast(self._pq.schema))

    def close(self) -> None:
        if self.fmt == "jsonl":
            self._f.close()
        elif self._pq is not None:
            self._pq.close()


def cmd_rerank(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.gallery and args.collection:
        raise CliError("give either --collection (rerank through Qdrant) or --gallery (a plain matrix), not both.")
    if not args.gallery and not args.collection:
        raise CliError("nothing to search: pass --collection NAME (with --path/--url) or --gallery G.npy.")
    if bool(args.queries) == bool(args.query_collection):
        raise CliError("pass the queries as --queries Q.npy or --query-collection NAME (one of them).")
    if args.query_collection and not args.collection:
        raise CliError("--query-collection needs --collection (and --path/--url).")
    t0 = time.perf_counter()
    if args.collection:
        n = _rerank_collection(args, out)
    else:
        n = _rerank_matrix(args, out)
    dt = time.perf_counter() - t0
    log.info("reranked %d queries in %.1fs (%.1f queries/s) -> %s", n, dt, n / dt if dt else float("inf"), out)
    if args.json:
        _emit_json({"out": str(out), "queries": n, "seconds": round(dt, 3)})
    elif not args.quiet:
        print(f"wrote top-{args.top_k} results of {n} queries to {out}")
    return 0


def _rerank_matrix(args: argparse.Namespace, out: Path) -> int:
    Q = _matrix(args.queries, "--queries", mmap=True)
    G = _matrix(args.gallery, "--gallery", ncols=Q.shape[1], of="--queries")
    banks, stored, paired = _banks(args, Q.shape[1])
    params, _ = _params(args, banks, stored, paired)
    nz = _normalizer(banks, params)
    log.info("gallery statistics for %d items (%s)...", len(G), params.method)
    stats = nz.gallery_stats(G)
    w = _Writer(out, args.format)
    try:
        with _progress(args, total=len(Q), desc="rerank", unit="q") as bar:
            for qids, vecs in _array_batches(Q, args.batch_size):
                idx, val = nz.search(as_matrix(vecs, "--queries", ncols=G.shape[1]), G, stats, top_k=min(args.top_k, len(G)))
                w.write([{"query": q, "ids": i.tolist(), "scores": v.tolist()} for q, i, v in zip(qids, idx, val)])
                bar.update(len(qids))
    finally:
        w.close()
    return w.rows


def _rerank_collection(args: argparse.Namespace, out: Path) -> int:
    from ..qdrant import DBNormClient

    client = _open_client(args)
    with contextlib.closing(client):
        _require_collection(client, args.collection)
        dist, size = _distance(client, args.collection, args.using)
        if args.query_collection:
            _require_collection(client, args.query_collection)
            total = client.count(args.query_collection, exact=True).count
            batches = _query_collection_batches(client, args.query_collection, args.query_using, args.batch_size)
        else:
            Q = _matrix(args.queries, "--queries", ncols=size, of=f"collection {args.collection!r}", mmap=True)
            total, batches = len(Q), _array_batches(Q, args.batch_size)
        banks, stored, paired = _banks(args, size)
        params, _ = _params(args, banks, stored, paired)
        db = DBNormClient(client, _normalizer(banks, params, unit=dist == "Cosine"), candidates=args.candidates)
        w = _Writer(out, args.format)
        try:
            with _progress(args, total=total, desc="rerank", unit="q") as bar:
                for qids, resp in _search_lists(db, args.collection, batches, limit=args.top_k, using=args.using,
                                                bar=bar, rerank=True, candidates=args.candidates):
                    w.write([{"query": q, "ids": [p.id for p in r.points], "scores": [p.score for p in r.points],
                              "raw_scores": [getattr(p, "raw_score", p.score) for p in r.points]}
                             for q, r in zip(qids, resp)])
        finally:
            w.close()
    return w.rows


# ========================================================================== report
def _labels_file(path: str | None, field: str | None) -> dict[Any, Any] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise CliError(f"--labels: file {p} does not exist.")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".json":
            doc = json.loads(text)
            if isinstance(doc, dict) and field and field in doc:
                doc = doc[field]
            if isinstance(doc, dict):
                return dict(doc)
            return {i: v for i, v in enumerate(doc)}
        if p.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            return {i: (r.get(field) if field and isinstance(r, dict) else r) for i, r in enumerate(rows)}
    except (json.JSONDecodeError, AttributeError) as exc:
        raise CliError(f"--labels: cannot read {p} ({exc}).") from None
    return {i: line for i, line in enumerate(text.splitlines())}


def cmd_report(args: argparse.Namespace) -> int:
    from ..eval.report import Retrieval, write_report

    if args.collection:
        runs, labels, params, notes = _report_collection(args)
    else:
        if not (args.queries and args.gallery):
            raise CliError("report needs --queries Q.npy --gallery G.npy, or --collection NAME with --path/--url.")
        Q = _matrix(args.queries, "--queries")
        G = _matrix(args.gallery, "--gallery", ncols=Q.shape[1], of="--queries")
        banks, stored, paired = _banks(args, Q.shape[1])
        params, _ = _params(args, banks, stored, paired)
        gt = _gt(args.gt, len(Q)) if args.gt not in (None, "none") else None
        with_recall = args.gt != "none" and (gt is not None or len(Q) <= len(G))
        runs = []
        for name, S in (("raw", Q @ G.T), (params.method, _normalizer(banks, params).scores(Q, G))):
            m = _evaluate(S, gt, _HUB_K, ks=(1, 5, 10)) if with_recall else hubness_metrics(S, _HUB_K)
            runs.append(Retrieval(name, k_occurrence(S, _HUB_K), m))
        labels = _labels_file(args.labels, args.field)
        notes = [f"{len(Q)} queries x {len(G)} gallery items, exact scores"]
        if with_recall and gt is None:
            notes.append("ground truth: the identity (query i matches gallery item i)")
    paths = write_report(args.out, runs, k=_HUB_K, labels=labels, title=args.title, fmt=args.format,
                         notes=notes, params=params.to_dict())
    if args.json:
        _emit_json({k: str(v) for k, v in paths.items()})
    else:
        _print_runs(runs)
        print(f"\nwrote {paths['png']} and {paths['page']}")
    return 0


def _report_collection(args: argparse.Namespace):
    from ..qdrant import DBNormClient
    from ..eval.report import Retrieval

    client = _open_client(args)
    with contextlib.closing(client):
        _require_collection(client, args.collection)
        dist, size = _distance(client, args.collection, args.using)
        n = client.count(args.collection, exact=True).count
        if args.query_collection:
            _require_collection(client, args.query_collection)
            nq = client.count(args.query_collection, exact=True).count
            make = lambda: _query_collection_batches(client, args.query_collection, args.query_using, args.batch_size)  # noqa: E731
        elif args.queries:
            Q = _matrix(args.queries, "--queries", ncols=size, of=f"collection {args.collection!r}")
            nq = len(Q)
            make = lambda: _array_batches(Q, args.batch_size)  # noqa: E731
        else:
            raise CliError("report on a collection needs queries: --queries Q.npy or --query-collection NAME.")
        banks, stored, paired = _banks(args, size)
        params, _ = _params(args, banks, stored, paired)
        gt = None if args.gt in (None, "none") else _load_npy(args.gt, "--gt").tolist()
        db = DBNormClient(client, _normalizer(banks, params, unit=dist == "Cosine"), candidates=args.candidates)
        limit = max(_HUB_K, 10)
        runs, labels = [], {}
        for name, rerank in (("raw", False), (params.method, True)):
            lists = []
            with _progress(args, total=nq, desc=name, unit="q") as bar:
                for _, resp in _search_lists(db if rerank else client, args.collection, make(), limit=limit,
                                             using=args.using, bar=bar, rerank=rerank, candidates=args.candidates,
                                             with_payload=[args.field] if args.field else False):
                    for r in resp:
                        lists.append([p.id for p in r.points])
                        if args.field:
                            for p in r.points:
                                if p.payload and args.field in p.payload:
                                    labels[p.id] = p.payload[args.field]
            m, occ, ids = _list_metrics(lists, n, gt, limit)
            runs.append(Retrieval(name, occ, m, ids=ids + [None] * (len(occ) - len(ids))))
    notes = [f"{nq} queries against collection {args.collection!r} ({n} points), top {limit} through Qdrant"]
    return runs, (labels or None), params, notes


def _print_runs(runs: Sequence[Any]) -> None:
    rows = []
    for r in runs:
        m = r.metrics
        rows.append([r.name, _f(m.get("R1")), _f(m.get("R5")), _f(m.get("R10")), _f(m.get("k_skewness"), "{:.3f}"),
                     _f(m.get("robin_hood"), "{:.3f}"), _f(m.get("antihub_rate"), "{:.1%}"),
                     str(int(np.max(r.occurrence)))])
    _print_table(rows, ["retrieval", "R@1", "R@5", "R@10", "k-skew", "Robin Hood", "antihubs", f"max N{_HUB_K}"])


# ============================================================================ demo
DEMO_FILE = "demo_wordnet"
DEMO_COLLECTION = "dbnorm_demo"


def _demo_sample() -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    data = resources.files("dbnorm_qdrant") / "data"
    try:
        with resources.as_file(data / f"{DEMO_FILE}.npz") as p, np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k].astype(np.float32) for k in z.files}
        texts = json.loads((data / f"{DEMO_FILE}_texts.json").read_text(encoding="utf-8"))["gallery_texts"]
        info = json.loads((data / f"{DEMO_FILE}.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CliError(f"the demo sample is missing from the installed package ({exc.filename}); reinstall "
                       "dbnorm-qdrant (or rebuild it with scripts/make_demo_sample.py).") from None
    return arrays, texts, info


def cmd_demo(args: argparse.Namespace) -> int:
    from qdrant_client import QdrantClient, models

    from ..qdrant import BankSet, DBNormClient
    from ..eval.report import Retrieval, write_report
    from ..core.tuning import tune

    t_start = time.perf_counter()
    arrays, texts, info = _demo_sample()
    Q, G, QB, GB = (arrays[k] for k in ("Q_test", "G_test", "Q_bank", "G_bank"))
    if args.queries is not None:
        Q = Q[: args.queries]
    print(f"dbnorm-qdrant demo: {info['task']}")
    print(f"  {len(G):,} gallery items, {len(Q):,} test queries, {len(QB):,} bank pairs; {info['model']}")
    with contextlib.ExitStack() as stack:
        client = QdrantClient(path=str(args.path)) if args.path else QdrantClient(":memory:")
        stack.callback(client.close)
        # 1. the gallery in embedded Qdrant
        t0 = time.perf_counter()
        if client.collection_exists(DEMO_COLLECTION):
            if client.count(DEMO_COLLECTION, exact=True).count != len(G):
                raise CliError(f"{args.path} already holds a collection {DEMO_COLLECTION!r} of another size; "
                               "pass an empty --path.")
            log.info("reusing collection %r in %s", DEMO_COLLECTION, args.path)
        else:
            client.create_collection(DEMO_COLLECTION, vectors_config=models.VectorParams(
                size=G.shape[1], distance=models.Distance.COSINE))
            with _progress(args, total=len(G), desc="loading gallery into Qdrant", unit="pt") as bar:
                for i in range(0, len(G), 500):
                    j = min(i + 500, len(G))
                    client.upload_collection(DEMO_COLLECTION, vectors=G[i:j], ids=list(range(i, j)),
                                             payload=[{"text": t} for t in texts[i:j]], batch_size=500, wait=True)
                    bar.update(j - i)
        print(f"\n1. loaded {len(G):,} gallery vectors into embedded Qdrant "
              f"({'at ' + str(args.path) if args.path else 'in memory'}) [{time.perf_counter() - t0:.1f}s]")
        # 2. banks and tuning
        t0 = time.perf_counter()
        banks = BankSet.from_arrays(QB, GB)
        res = tune(banks.query_bank, banks.gallery_bank, paired=True, seed=0)
        params = res.params
        print(f"2. tuned on the bank pairs: {res.reason} [{time.perf_counter() - t0:.1f}s]")
        # 3. rerank all test queries through DBNormClient.query_batch_points
        db = DBNormClient(client, banks.normalizer(params, unit=True), candidates=args.candidates)
        gt = list(range(len(Q)))
        runs, results = [], {}
        for name, rerank in (("raw cosine", False), (_method_name(params), True)):
            t0 = time.perf_counter()
            lists = []
            with _progress(args, total=len(Q), desc=f"{name}: query_batch_points", unit="q") as bar:
                for _, resp in _search_lists(db if rerank else client, DEMO_COLLECTION,
                                             _array_batches(Q, args.batch_size), limit=_HUB_K, using=None,
                                             bar=bar, rerank=rerank, candidates=args.candidates):
                    lists += [[p.id for p in r.points] for r in resp]
            m, occ, ids = _list_metrics(lists, len(G), gt, _HUB_K)
            m.pop("MedR"), m.pop("MeanR")  # only the top 10 is fetched: ranks beyond it are unknown
            dt = time.perf_counter() - t0
            results[name] = (m, dt)
            runs.append(Retrieval(name, occ, m, ids=ids + [None] * (len(occ) - len(ids))))
        print(f"3. searched {len(Q):,} queries with query_batch_points: raw, and reranked with "
              f"N = {args.candidates} candidates each\n")
        _print_runs(runs)
        for name, (m, dt) in results.items():
            hubs = ", ".join(f"{_short(texts[i])} ({c})" for i, c in m["top_hubs"][:3] if i is not None)
            print(f"  {name}: top hubs {hubs}  [{dt:.1f}s]")
        labels = {i: t for i, t in enumerate(texts)}
        notes = [f"{info['task']}; {info['model']}; source: {info['source']}; licence: {info['licence']}",
                 f"{len(Q)} test queries against {len(G)} gallery items in embedded Qdrant; ground truth: "
                 "query i matches item i; reranked with DBNormClient.query_batch_points "
                 f"(N = {args.candidates} raw candidates per query)",
                 f"tuning: {res.reason}"]
        paths = write_report(args.out, runs, k=_HUB_K, labels=labels, fmt=args.format, notes=notes,
                             title="dbnorm-qdrant demo: hubness on WordNet reverse-dictionary retrieval",
                             params=params.to_dict())
    print(f"\n4. hubness report: {paths['page']} (plot {paths['png']})")
    print(f"done in {time.perf_counter() - t_start:.1f}s")
    return 0


def _method_name(p: Params) -> str:
    return f"{p.method}{' + centring' if p.center else ''}"


def _short(text: str, n: int = 30) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "\u2026"


# ========================================================================== parser
def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bars and no informational logging")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, and tracebacks on errors")


def _qdrant_opts(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = p.add_argument_group("Qdrant")
    g.add_argument("--collection", required=required, metavar="NAME", help="the collection (the gallery)")
    g.add_argument("--path", metavar="DIR", help="embedded (local-mode) Qdrant stored in DIR")
    g.add_argument("--url", metavar="URL", help="a Qdrant server (default: $QDRANT_URL)")
    g.add_argument("--api-key", metavar="KEY", help="API key of the server (default: $QDRANT_API_KEY)")
    g.add_argument("--timeout", type=int, default=10, metavar="S", help="server timeout in seconds (default 10)")
    g.add_argument("--using", metavar="VECTOR", help="the named vector to use, if the collection has several")


def _bank_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("banks")
    g.add_argument("--banks", metavar="FILE.npz", help=f"a bank file from `{PROG} bank build`")
    g.add_argument("--query-bank", metavar="QB.npy", help="query-bank vectors (not the test queries)")
    g.add_argument("--gallery-bank", metavar="GB.npy", help="gallery-bank vectors (needed by dualis/dualdis)")


def _method_opts(p: argparse.ArgumentParser, default_doc: str = "auto") -> None:
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=("auto",) + METHODS, default=None,
                   help=f"normalisation method (default: {default_doc}); auto tunes method and parameters on the banks")
    g.add_argument("--beta-q", type=float, help="query-bank inverse temperature (default 20)")
    g.add_argument("--beta-g", type=float, help="gallery-bank inverse temperature (default 3)")
    g.add_argument("--k", type=int, help="activation top-k (dis/dualdis) or neighbours (csls/nnn)")
    g.add_argument("--alpha", type=float, help="bias weight of nnn / centrality")
    g.add_argument("--center", action="store_true", help="centre both sides on the bank means")
    pg = g.add_mutually_exclusive_group()
    pg.add_argument("--paired", dest="paired", action="store_true", default=None,
                    help="the banks are aligned pairs (row i of each matches): supervised tuning")
    pg.add_argument("--unpaired", dest="paired", action="store_false",
                    help="the banks are not aligned: unsupervised tuning (minimises hubness)")
    g.add_argument("--seed", type=int, default=0, help="seed of the tuning split (default 0)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog=PROG, description="Hubness normalisation (DBNorm, QB-Norm, CSLS, NNN) for "
                                 "embedding retrieval and Qdrant.", formatter_class=fmt,
                                 epilog=f"Run `{PROG} demo` to see it work on a real sample.")
    ap.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _common(ap)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="the main job on a shipped real sample, in embedded Qdrant", formatter_class=fmt,
                       description="Load a real sample (WordNet definitions -> lemma lists, all-MiniLM-L6-v2) into "
                       "embedded Qdrant, tune on the bank pairs, rerank every test query through "
                       "DBNormClient.query_batch_points, print raw vs normalised recall and hubness, and write the "
                       "hubness report. Needs no network and no data beyond the package.")
    p.add_argument("--out", default="dbnorm-demo-report", metavar="DIR", help="report folder (default ./dbnorm-demo-report)")
    p.add_argument("--path", metavar="DIR", help="keep the embedded Qdrant in DIR (default: in memory)")
    p.add_argument("--candidates", type=int, default=100, metavar="N", help="raw candidates reranked per query (default 100)")
    p.add_argument("--queries", type=int, metavar="N", help="use only the first N test queries")
    p.add_argument("--batch-size", type=int, default=256, help="queries per query_batch_points call")
    p.add_argument("--format", choices=("md", "html"), default="md", help="report page format (default md)")
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("evaluate", help="metrics before and after, from vectors or through Qdrant", formatter_class=fmt,
                       description="R@1/R@5/R@10, MedR, MeanR and k-skewness (top-10 k-occurrence) of the raw scores and "
                       "of the normalised ones. With --json: one JSON object {\"none\": {...}, \"<method>\": {...}}, "
                       "each with R1, R5, R10, MedR, MeanR, k_skewness (R@K in percent) and params (the method and "
                       "parameters used; for auto, the ones tuning chose).",
                       epilog="Ground truth defaults to the identity (query i matches gallery item i, or point id i "
                       "with --collection). --method auto tunes on the banks: supervised (R@1 on held-out pairs) when "
                       "the query bank and gallery bank have the same length (taken as aligned pairs) or with "
                       "--paired; otherwise, or with --unpaired, unsupervised (minimum hubness). Through Qdrant, a "
                       "correct item outside the top --limit counts at rank limit+1 (MeanR is then a lower bound).")
    p.add_argument("--queries", required=True, metavar="Q.npy", help="query vectors (n x d)")
    p.add_argument("--gallery", metavar="G.npy", help="gallery vectors (m x d); or --collection")
    p.add_argument("--gt", metavar="gt.npy", help="correct gallery index (point id with --collection) per query")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _bank_opts(p)
    _method_opts(p)
    _qdrant_opts(p, required=False)
    p.add_argument("--limit", type=int, default=100, help="with --collection: results per query (default 100)")
    p.add_argument("--candidates", type=int, metavar="N", help="with --collection: raw candidates reranked per query")
    p.add_argument("--batch-size", type=int, default=256, help="queries per query_batch_points call")
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bank", help="bank files")
    bsub = p.add_subparsers(dest="bank_command", metavar="SUBCOMMAND", required=True)
    p = bsub.add_parser("build", help="a bank file from .npy files or by sampling collections", formatter_class=fmt,
                        description="Write a bank file (.npz: query_bank, gallery_bank, gallery_keys, and with "
                        "--method the parameters, tuned for auto) that the other commands read with --banks.")
    p.add_argument("--out", required=True, metavar="FILE.npz")
    p.add_argument("--query-bank", metavar="QB.npy")
    p.add_argument("--gallery-bank", metavar="GB.npy")
    p.add_argument("--sample", type=int, default=10000, metavar="N",
                   help="with --collection: gallery-bank points sampled from it (default 10000)")
    p.add_argument("--query-collection", metavar="NAME", help="a collection of logged queries for the query bank")
    p.add_argument("--query-sample", type=int, metavar="N", help="sample N points of --query-collection (default all)")
    p.add_argument("--query-using", metavar="VECTOR")
    p.add_argument("--json", action="store_true")
    _method_opts(p, "none stored")
    _qdrant_opts(p, required=False)
    _common(p)
    p.set_defaults(func=cmd_bank_build)

    p = sub.add_parser("stats", help="statistics stored in a collection's payload")
    ssub = p.add_subparsers(dest="stats_command", metavar="SUBCOMMAND", required=True)
    for name, func, doc in (
        ("precompute", cmd_stats_precompute, "write every point's statistics to its payload (resumable: points "
         "whose statistics are current are skipped)"),
        ("status", cmd_stats_status, "coverage, fingerprints and staleness of the stored statistics (banks optional)"),
        ("refresh", cmd_stats_refresh, "recompute the activation sets (dis/dualdis) and rewrite the flags that changed"),
    ):
        p = ssub.add_parser(name, help=doc, description=doc[0].upper() + doc[1:] + ".", formatter_class=fmt)
        _qdrant_opts(p)
        _bank_opts(p)
        _method_opts(p, "the bank file's, else auto")
        p.add_argument("--payload-key", default="_dbnorm", help="the reserved payload key (default _dbnorm)")
        if name == "precompute":
            p.add_argument("--page-size", type=int, default=256, help="points per page (default 256)")
            p.add_argument("--force", action="store_true", help="recompute even current statistics")
        p.add_argument("--json", action="store_true")
        _common(p)
        p.set_defaults(func=func)

    p = sub.add_parser("rerank", help="batch offline reranking to JSONL or Parquet", formatter_class=fmt,
                       description="Top-k ids and scores per query, reranked with bank normalisation, written as "
                       "one row per query ({query, ids, scores[, raw_scores]}) to JSONL or Parquet (by the --out "
                       "suffix or --format). Through Qdrant (--collection: batched query_batch_points) or against "
                       "a plain gallery matrix (--gallery). Memory stays bounded by --batch-size.")
    p.add_argument("--out", required=True, metavar="FILE", help="results.jsonl or results.parquet")
    p.add_argument("--format", choices=("jsonl", "parquet"), help="default: from the --out suffix")
    p.add_argument("--queries", metavar="Q.npy", help="query vectors (read memory-mapped)")
    p.add_argument("--query-collection", metavar="NAME", help="or: the queries are the points of this collection")
    p.add_argument("--query-using", metavar="VECTOR")
    p.add_argument("--gallery", metavar="G.npy", help="rerank against this matrix instead of a collection")
    p.add_argument("--top-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--candidates", type=int, metavar="N", help="raw candidates reranked per query")
    p.add_argument("--batch-size", type=int, default=256, help="queries per batch (default 256)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    _bank_opts(p)
    _method_opts(p, "the bank file's, else auto")
    _qdrant_opts(p, required=False)
    _common(p)
    p.set_defaults(func=cmd_rerank)

    p = sub.add_parser("report", help="the hubness report (PNG + Markdown/HTML)", formatter_class=fmt,
                       description="k-occurrence histogram before and after (log scale), the top hubs named by a "
                       "payload field (--field) or a labels file (--labels), and the metrics table, as hubness.png "
                       "plus report.md (or report.html) and metrics.json in --out.")
    p.add_argument("--out", default="dbnorm-report", metavar="DIR", help="report folder (default ./dbnorm-report)")
    p.add_argument("--format", choices=("md", "html"), default="md")
    p.add_argument("--title", default="Hubness report")
    p.add_argument("--queries", metavar="Q.npy")
    p.add_argument("--query-collection", metavar="NAME")
    p.add_argument("--query-using", metavar="VECTOR")
    p.add_argument("--gallery", metavar="G.npy", help="a gallery matrix (instead of --collection)")
    p.add_argument("--gt", metavar="gt.npy|none",
                   help="ground truth for recall; default: the identity for matrices, none for a collection")
    p.add_argument("--field", metavar="KEY", help="payload field that names the hubs (collection)")
    p.add_argument("--labels", metavar="FILE", help="names of gallery items: .txt (one a line), .json list, or "
                   ".jsonl with --field (matrices)")
    p.add_argument("--candidates", type=int, metavar="N")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print the paths written as JSON")
    _bank_opts(p)
    _method_opts(p)
    _qdrant_opts(p, required=False)
    _common(p)
    p.set_defaults(func=cmd_report)

    from ..experimental.adapter import add_cli as _add_adapter_cli

    p = _add_adapter_cli(sub)  # options from AdapterConfig, defined next to the adapter
    _common(p)
    p.set_defaults(func=cmd_train_adapter)
    return ap


def cmd_train_adapter(args: argparse.Namespace) -> int:
    """``train-adapter``: NeighborRetr-style adapter on ``.npy`` pairs (experimental; needs torch)."""
    from dataclasses import fields

    from ..experimental import adapter

    if adapter.torch is None:
        raise CliError('train-adapter needs torch; install it with pip install "dbnorm-qdrant[torch]".')
    Q = _load_npy(args.queries, "--queries")
    G = _load_npy(args.gallery, "--gallery")
    if Q.ndim != 2 or G.ndim != 2 or Q.shape != G.shape:
        raise CliError(f"--queries {Q.shape} and --gallery {G.shape} must be 2-D and the same shape (row i pairs with row i).")
    cfg = adapter.AdapterConfig(**{f.name: getattr(args, f.name) for f in fields(adapter.AdapterConfig)})
    ad = adapter.train_adapter(Q, G, cfg, progress=not args.quiet)
    path = ad.save(args.out, format=args.format)
    log.info("saved the adapter to %s", path)
    print(json.dumps({"weights": str(path), "config": str(path.with_suffix(".json")), "history": ad.history}))
    return 0


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if args.debug else "[dbnorm] %(message)s"))
    root = logging.getLogger("dbnorm_qdrant")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if not args.debug:
        import warnings

        warnings.filterwarnings("ignore", module="qdrant_client")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dbnorm-qdrant`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.quiet = getattr(args, "quiet", False)
    args.debug = getattr(args, "debug", False)
    _setup_logging(args)
    try:
        return int(args.func(args) or 0)
    except (CliError, InputError) as exc:
        if args.debug:
            raise
        msg = " ".join(str(exc).split())
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
