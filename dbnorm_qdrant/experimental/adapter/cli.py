"""The ``train-adapter`` subcommand's options, one per :class:`AdapterConfig` field."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from .config import AdapterConfig

__all__ = ["add_cli"]


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train-adapter``; the command line (:mod:`dbnorm_qdrant.cli.train_adapter`)
    loads the files, trains and saves."""
    p = subparsers.add_parser(
        "train-adapter",
        help="train a NeighborRetr-style residual adapter on frozen (query, gallery) pairs (experimental; torch)",
        description="NeighborRetr-style adapter on frozen embeddings (experimental; needs the torch extra): a "
        "residual block trained on aligned (query, gallery) pairs with NeighborRetr's losses.",
    )
    p.add_argument("--queries", required=True, help=".npy of query vectors (row i pairs with gallery row i)")
    p.add_argument("--gallery", required=True, help=".npy of gallery vectors")
    p.add_argument("--out", required=True, help="output weights path (suffix set by the format; a .json sits next to it)")
    p.add_argument("--format", default="auto", choices=("auto", "safetensors", "torch"), help="weights format")
    d = AdapterConfig()
    for f in fields(AdapterConfig):
        default = getattr(d, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"(default {default})")
    return p
