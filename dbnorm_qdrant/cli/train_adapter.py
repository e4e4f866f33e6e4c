"""``train-adapter``: a NeighborRetr-style adapter on ``.npy`` pairs (experimental; needs torch).

The options (one per :class:`~dbnorm_qdrant.experimental.adapter.AdapterConfig` field)
are defined next to the adapter, by :func:`dbnorm_qdrant.experimental.adapter.add_cli`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any

from .._io_utils import check_writable
from ..errors import InputError
from . import common as c
from . import options as o


def add_parser(sub: Any) -> None:
    from ..experimental.adapter.cli import add_cli

    p = add_cli(sub)
    o.add_output_opts(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experimental import adapter

    if adapter.torch is None:
        raise InputError('train-adapter needs torch; install it with pip install "dbnorm-qdrant[torch]".')
    Q = c.matrix(args.queries, "--queries")
    G = c.matrix(args.gallery, "--gallery")
    if Q.shape != G.shape:
        raise InputError(f"--queries {Q.shape} and --gallery {G.shape} must be the same shape (row i pairs with "
                         "row i); pass aligned pairs.")
    cfg = adapter.AdapterConfig(**{f.name: getattr(args, f.name) for f in fields(adapter.AdapterConfig)})
    check_writable(args.out, "--out")
    ad = adapter.train_adapter(Q, G, cfg, progress=not args.quiet)
    path = ad.save(args.out, format=args.format)
    c.log.info("saved the adapter to %s", path)
    print(json.dumps({"weights": str(path), "config": str(path.with_suffix(".json")), "history": ad.history}))
    return 0
