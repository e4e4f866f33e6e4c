"""Training: :func:`train_adapter` (deterministic per seed and device) and :func:`training_loss`."""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator

import numpy as np

from ...errors import InputError
from ...validation import as_matrix
from ._torch import F, need_torch, torch
from .losses import batch_losses
from .config import AdapterConfig
from .model import Adapter

__all__ = ["train_adapter", "training_loss"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


def _device(cfg: AdapterConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _pairs(query_vecs: np.ndarray, gallery_vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Q = as_matrix(query_vecs, "query_vecs")
    G = as_matrix(gallery_vecs, "gallery_vecs", ncols=Q.shape[1], ncols_of="query_vecs")
    if len(Q) != len(G):
        raise InputError(f"query_vecs and gallery_vecs must be aligned pairs, got {len(Q)} and {len(G)} rows.")
    if len(Q) < 2:
        raise InputError("training needs at least 2 pairs.")
    return Q, G


def training_loss(adapter: Adapter, query_vecs: np.ndarray, gallery_vecs: np.ndarray) -> float:
    """Mean total loss over fixed, unshuffled batches (memory bank: the frozen pairs). For comparisons."""
    Q, G = _pairs(query_vecs, gallery_vecs)
    cfg = adapter.config
    dev = next(adapter.query.parameters()).device
    tq = F.normalize(torch.as_tensor(np.asarray(Q, dtype=np.float32), device=dev), dim=-1)
    tg = F.normalize(torch.as_tensor(np.asarray(G, dtype=np.float32), device=dev), dim=-1)
    mem = min(cfg.memory_size, len(Q))
    tot, nb = 0.0, 0
    with torch.no_grad():
        mq = adapter.query(tq[:mem])
        mg = adapter.gallery(tg[:mem]) if adapter.gallery is not None else tg[:mem]
        for i0 in range(0, len(Q), cfg.batch_size):
            q0, g0 = tq[i0 : i0 + cfg.batch_size], tg[i0 : i0 + cfg.batch_size]
            if len(q0) < 2:
                continue
            q = adapter.query(q0)
            g = adapter.gallery(g0) if adapter.gallery is not None else g0
            tot += float(batch_losses(q, g, q0, g0, mq, mg, cfg)["total"]) * len(q0)
            nb += len(q0)
    return tot / max(nb, 1)


def train_adapter(
    query_vecs: np.ndarray,
    gallery_vecs: np.ndarray,
    config: AdapterConfig | None = None,
    *,
    progress: bool = False,
    log_every: int = 0,
) -> Adapter:
    """Train an :class:`Adapter` on aligned pairs ``(query_vecs[i], gallery_vecs[i])``.

    Deterministic for a given ``config.seed`` on a given device (seeded init and
    shuffling, deterministic torch algorithms). Uses CUDA when present (``device="auto"``).
    ``progress`` shows a tqdm bar; ``log_every=n`` logs the mean loss every n epochs
    (logger ``dbnorm_qdrant.experimental.adapter.train``, level INFO).
    """
    need_torch()
    cfg = config or AdapterConfig()
    Q, G = _pairs(query_vecs, gallery_vecs)
    dev = _device(cfg)
    with _deterministic():
        ad = Adapter(Q.shape[1], cfg).to(dev)
        gen = torch.Generator().manual_seed(cfg.seed)
        tq = F.normalize(torch.as_tensor(np.asarray(Q, dtype=np.float32)), dim=-1).to(dev)
        tg = F.normalize(torch.as_tensor(np.asarray(G, dtype=np.float32)), dim=-1).to(dev)
        params = [p for m in ad.modules().values() for p in m.parameters()]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        mem = (torch.empty(0, Q.shape[1], device=dev), torch.empty(0, Q.shape[1], device=dev))
        bar = progress_bar(cfg.epochs * math.ceil(len(Q) / cfg.batch_size), progress, "train-adapter")
        for ep in range(cfg.epochs):
            perm = torch.randperm(len(Q), generator=gen).to(dev)
            loss, mem = _epoch(ad, opt, tq, tg, perm, mem, bar)
            ad.history.append(loss)
            if log_every and (ep + 1) % log_every == 0:
                log.info("epoch %d/%d: loss %.4f", ep + 1, cfg.epochs, loss)
        bar.close()
        for m in ad.modules().values():
            m.eval()
    return ad


def _epoch(ad: Adapter, opt: Any, tq: Any, tg: Any, perm: Any, mem: tuple[Any, Any], bar: Any) -> tuple[float, Any]:
    """One pass over the pairs in the order ``perm``; returns the mean loss and the memory bank after it."""
    cfg = ad.config
    mem_q, mem_g = mem
    for m in ad.modules().values():
        m.train()
    tot, cnt = 0.0, 0
    for i0 in range(0, len(perm), cfg.batch_size):
        idx = perm[i0 : i0 + cfg.batch_size]
        if len(idx) < 2:
            continue
        q0, g0 = tq[idx], tg[idx]
        q = ad.query(q0)
        g = ad.gallery(g0) if ad.gallery is not None else g0
        L = batch_losses(q, g, q0, g0, mem_q, mem_g, cfg)
        opt.zero_grad(set_to_none=True)
        L["total"].backward()
        opt.step()
        with torch.no_grad():  # FIFO memory bank of recent (adapted) vectors
            mem_q = torch.cat([q.detach(), mem_q])[: cfg.memory_size]
            mem_g = torch.cat([g.detach(), mem_g])[: cfg.memory_size]
        tot += float(L["total"].detach()) * len(idx)
        cnt += len(idx)
        bar.update(1)
    return tot / max(cnt, 1), (mem_q, mem_g)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str):  # noqa: ANN202
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc)
    except ImportError:  # pragma: no cover
        return _NoBar()


