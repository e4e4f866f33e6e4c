"""``bank build``: a bank file (:func:`dbnorm_qdrant.banks.save_banks`) from ``.npy`` files or collections."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from .. import __version__
from .._io_utils import check_writable
from ..banks import BankSet, save_banks
from ..errors import InputError
from . import common as c
from . import options as o
from .qdrant_io import Qdrant, open_qdrant


def add_parser(sub: Any) -> None:
    p = o.subparser(sub, "bank", help="bank files")
    bsub = p.add_subparsers(dest="bank_command", metavar="SUBCOMMAND", required=True)
    p = o.subparser(
        bsub, "build", help="a bank file from .npy files or by sampling collections",
        description="Write a bank file (.npz: query_bank, gallery_bank, gallery_keys, format_version, and with "
        "--method the parameters, tuned for auto) that the other commands read with --banks and Python "
        "reads with dbnorm_qdrant.banks.load_banks.")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="the bank file to write (created only on success)")
    p.add_argument("--query-bank", metavar="QB.npy", help="query-bank vectors")
    p.add_argument("--gallery-bank", metavar="GB.npy", help="gallery-bank vectors (or --collection to sample them)")
    p.add_argument("--sample", type=o.positive_int, default=10000, metavar="N",
                   help="with --collection: gallery-bank points sampled from it (default 10000)")
    p.add_argument("--query-collection", metavar="NAME", help="a collection of logged queries for the query bank")
    p.add_argument("--query-sample", type=o.positive_int, metavar="N",
                   help="sample N points of --query-collection (default all)")
    p.add_argument("--query-using", metavar="VECTOR", help="the named vector of --query-collection")
    o.add_json_opt(p, "print a JSON summary")
    o.add_method_opts(p, "none stored")
    o.add_qdrant_opts(p, required=False)
    o.add_output_opts(p)
    p.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    if not str(args.out).endswith(".npz"):
        raise InputError(f"--out must end in .npz, got {args.out}; name the bank file FILE.npz.")
    if args.query_bank and args.query_collection:
        raise InputError("give the query bank as --query-bank QB.npy or --query-collection NAME, not both.")
    if args.gallery_bank and args.collection:
        raise InputError("give the gallery bank as --gallery-bank GB.npy or --collection NAME (sampled), not both.")
    if not (args.query_bank or args.query_collection):
        raise InputError("a query bank is needed: pass --query-bank QB.npy or --query-collection NAME.")
    c.check_method(args)
    out = check_writable(args.out, "--out")
    meta: dict[str, Any] = {"created_by": f"{o.PROG} {__version__}"}
    qb = c.matrix(args.query_bank, "--query-bank") if args.query_bank else None
    gb = c.matrix(args.gallery_bank, "--gallery-bank", ncols=qb.shape[1], of="--query-bank") \
        if args.gallery_bank and qb is not None else None
    if args.collection or args.query_collection:
        with open_qdrant(args) as q:
            qb, gb, keys = _from_collections(args, q, qb, gb, meta)
            bank_set = BankSet.from_arrays(qb, gb, keys)
    else:
        bank_set = BankSet.from_arrays(qb, gb)  # validates shapes, dims and values
    paired = gb is not None and bank_set.gallery_bank_keys is None and len(gb) == len(qb) and not args.query_collection
    if args.paired is not None:
        paired = args.paired
    meta["paired"] = bool(paired)
    params = None
    if args.method is not None:
        params, res = c.params(args, bank_set, None, paired)
        if res is not None:
            meta["tuning"] = res.reason
    save_banks(out, bank_set, params=params, meta=meta)
    _summary(args, bank_set, paired, params)
    return 0


def _from_collections(args: argparse.Namespace, q: Qdrant, qb: np.ndarray | None, gb: np.ndarray | None,
                      meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The query bank from ``--query-collection`` and/or the gallery bank sampled from ``--collection``."""
    from ..qdrant import DBNormClient

    db = DBNormClient(q.client)
    keys = None
    if args.query_collection:
        q.require(args.query_collection)
        c.log.info("reading the query bank from collection %r...", args.query_collection)
        qb = db.query_bank_from_collection(args.query_collection, args.query_sample, seed=args.seed,
                                           using=args.query_using)
        meta["query_collection"] = args.query_collection
    if args.collection:
        q.require(args.collection)
        q.vector(args.collection, args.using)  # a wrong --using is named before sampling
        c.log.info("sampling %d gallery-bank points from collection %r...", args.sample, args.collection)
        gb, keys = db.sample_gallery_bank(args.collection, args.sample, seed=args.seed, using=args.using)
        meta.update(gallery_collection=args.collection, sample=int(len(gb)), seed=args.seed)
    elif args.gallery_bank and gb is None:  # the query bank came from a collection
        gb = c.matrix(args.gallery_bank, "--gallery-bank", ncols=np.shape(qb)[1], of="the query bank")
    return qb, gb, keys


def _summary(args: argparse.Namespace, bank_set: BankSet, paired: bool, params: Any) -> None:
    gb = bank_set.gallery_bank
    if args.json:
        c.emit_json({"out": str(args.out), "query_bank": list(bank_set.query_bank.shape),
                     "gallery_bank": None if gb is None else list(gb.shape),
                     "gallery_keys": bank_set.gallery_bank_keys is not None, "paired": bool(paired),
                     "params": None if params is None else params.to_dict()})
    else:
        print(f"wrote {args.out}: query bank {tuple(bank_set.query_bank.shape)}, gallery bank "
              f"{None if gb is None else tuple(gb.shape)}"
              f"{', sampled from ' + repr(args.collection) if args.collection else ''}"
              f"{', params ' + json.dumps(params.to_dict()) if params else ''}")
