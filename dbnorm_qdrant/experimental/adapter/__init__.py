"""NeighborRetr-style adapter on frozen embeddings (experimental; needs the ``torch`` extra).

A small residual adapter ``x -> normalize(x + W2 act(W1 x + b1) + b2)`` with ``W2, b2``
zero-initialised (the identity at start), trained on aligned (query, gallery) pairs with
the losses of NeighborRetr (Lin et al., CVPR 2025), transposed from its token-level video
model to one vector per item:

- **centrality-weighted InfoNCE**: the query->gallery InfoNCE of each pair weighted by
  ``exp(centrality_scale * c(q))``, ``c(q)`` the mean similarity of the query to the
  memory bank (of gallery vectors);
- **neighbour adjusting**: for each query, its ``num_neighbors`` nearest in-batch gallery
  items are soft positives, weighted by ``softmax(temperature * (norm_sim - norm_cen))``
  where ``norm_cen`` is the min-max normalised *memory-bank centrality* of each gallery
  item (its mean similarity to a FIFO memory bank of recent queries): similar and not
  central = a good neighbour;
- **uniform retrieval**: cross-entropy of ``softmax(temperature * sim)`` against the
  Sinkhorn plan of the batch (uniform marginals, ``sinkhorn_iters`` iterations, rows
  rescaled to sum to 1) mixed with the identity: ``mix * P + (1 - mix) * I``;
- **KL** ``KL(softmax(logit_scale * frozen) || softmax(logit_scale * adapted))`` keeping
  the adapted similarities close to the frozen ones.

Defaults follow the official code (centrality scale 0.3, 20 neighbours, temperature 3,
target mix 0.7, 50 Sinkhorn iterations; loss weights 1). Differences from it: single
vectors instead of token sets (no local/global levels: the KL anchors the adapted
similarities to the frozen ones instead of global to local), the Sinkhorn plan's rows
are rescaled to sum to 1 before mixing (the official plan has total mass 1/(m+n) per
row, so its mix is almost all identity), and the memory bank holds vectors, not tokens.

By default only the query side is adapted (the collection is untouched);
``both_sides=True`` trains a gallery adapter too, and :func:`write_adapted_vectors`
writes adapted gallery vectors into a new named vector or a new collection.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...core.validation import InputError, as_matrix

try:  # optional extra
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - exercised without torch
    torch = None  # type: ignore[assignment]

__all__ = ["AdapterConfig", "Adapter", "train_adapter", "training_loss", "load_adapter", "write_adapted_vectors",
           "add_cli"]


def _need_torch() -> None:
    if torch is None:
        raise ImportError("the adapter needs torch: pip install 'dbnorm-qdrant[torch]'")


@dataclass
class AdapterConfig:
    """Adapter architecture and training hyperparameters (all settable; JSON-friendly)."""

    hidden: int = 256
    activation: str = "gelu"  # gelu | relu
    both_sides: bool = False
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    logit_scale: float = 20.0  # InfoNCE / KL inverse temperature on cosines
    centrality_scale: float = 0.3
    num_neighbors: int = 20
    temperature: float = 3.0
    target_mix: float = 0.7
    sinkhorn_iters: int = 50
    memory_size: int = 2048
    uniform_weight: float = 1.0
    neighbor_weight: float = 1.0
    kl_weight: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto (cuda when present) | cpu | cuda

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "batch_size", "num_neighbors", "sinkhorn_iters", "memory_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be an integer >= 1, got {v!r}.")
        for name in ("lr", "logit_scale", "temperature"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v <= 0:
                raise InputError(f"{name} must be positive, got {v!r}.")
        if not 0.0 <= float(self.target_mix) <= 1.0:
            raise InputError(f"target_mix must be in [0, 1], got {self.target_mix!r}.")
        if self.activation not in ("gelu", "relu"):
            raise InputError(f"activation must be 'gelu' or 'relu', got {self.activation!r}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {self.device!r}.")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AdapterConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown adapter config keys: {sorted(unknown)}")
        return cls(**d)


if torch is not None:

    class _Residual(nn.Module):
        def __init__(self, dim: int, hidden: int, activation: str) -> None:
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)
            self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

        def forward(self, x):  # noqa: ANN001, ANN201
            return F.normalize(x + self.fc2(self.act(self.fc1(x))), dim=-1)


class Adapter:
    """A trained adapter: ``adapt_queries`` / ``adapt_gallery`` map frozen vectors to adapted ones."""

    def __init__(self, dim: int, config: AdapterConfig | None = None) -> None:
        _need_torch()
        self.config = config or AdapterConfig()
        self.dim = int(dim)
        torch.manual_seed(self.config.seed)
        self.query = _Residual(self.dim, self.config.hidden, self.config.activation)
        self.gallery = _Residual(self.dim, self.config.hidden, self.config.activation) if self.config.both_sides else None
        self.history: list[float] = []  # mean training loss per epoch

    # ------------------------------------------------------------------ apply
    def modules(self) -> dict[str, "nn.Module"]:
        out = {"query": self.query}
        if self.gallery is not None:
            out["gallery"] = self.gallery
        return out

    def _apply(self, mod, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:  # noqa: ANN001
        X = as_matrix(X, "vectors", ncols=self.dim, ncols_of="the adapter")
        dev = next(mod.parameters()).device
        out = np.empty(X.shape, dtype=np.float32)
        mod.eval()
        with torch.no_grad():
            for i0 in range(0, len(X), batch_size):
                xb = torch.as_tensor(np.asarray(X[i0 : i0 + batch_size], dtype=np.float32), device=dev)
                out[i0 : i0 + batch_size] = mod(F.normalize(xb, dim=-1)).cpu().numpy()
        return out

    def adapt_queries(self, X: np.ndarray) -> np.ndarray:
        """Adapted, unit-norm query vectors (float32)."""
        return self._apply(self.query, X)

    def adapt_gallery(self, X: np.ndarray) -> np.ndarray:
        """Adapted gallery vectors (unit-norm); with a query-only adapter, ``X`` re-normalised."""
        if self.gallery is None:
            X = as_matrix(X, "vectors", ncols=self.dim, ncols_of="the adapter")
            n = np.linalg.norm(X, axis=1, keepdims=True)
            return (X / np.where(n == 0, 1, n)).astype(np.float32)
        return self._apply(self.gallery, X)

    # ------------------------------------------------------------- save / load
    def state_dict(self) -> dict[str, "torch.Tensor"]:
        sd = {}
        for side, mod in self.modules().items():
            for k, v in mod.state_dict().items():
                sd[f"{side}.{k}"] = v.detach().cpu().contiguous()
        return sd

    def save(self, path: str | os.PathLike[str], *, format: str = "auto") -> Path:
        """Save weights (``.safetensors`` when installed, else a torch state dict) and ``<path>.json``.

        ``path`` is the weights file; its suffix is set by the format. Returns the weights path.
        """
        path = Path(path)
        fmt = _format(format)
        wpath = path.with_suffix(".safetensors" if fmt == "safetensors" else ".pt")
        sd = self.state_dict()
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(sd, str(wpath))
        else:
            torch.save(sd, str(wpath))
        meta = {"dim": self.dim, "format": fmt, "weights": wpath.name, "config": asdict(self.config),
                "history": self.history}
        wpath.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return wpath

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | None = None) -> "Adapter":
        """Load an adapter saved by :meth:`save` (weights only: no pickled objects are executed)."""
        _need_torch()
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            raise InputError(f"adapter config {meta_path} not found (save writes it next to the weights).")
        meta = json.loads(meta_path.read_text())
        cfg = AdapterConfig.from_dict(meta["config"])
        wpath = meta_path.with_name(meta["weights"])
        if meta["format"] == "safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(wpath))
        else:
            try:
                sd = torch.load(str(wpath), map_location="cpu", weights_only=True)
            except Exception as exc:  # UnpicklingError: something other than tensors inside
                raise InputError(f"{wpath} is not a plain tensor state dict (refusing to unpickle objects): {exc}") from exc
            if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
                raise InputError(f"{wpath} is not a tensor state dict.")
        ad = cls(int(meta["dim"]), cfg)
        for side, mod in ad.modules().items():
            sub = {k[len(side) + 1 :]: v for k, v in sd.items() if k.startswith(side + ".")}
            mod.load_state_dict(sub, strict=True)
        ad.history = list(meta.get("history", []))
        if device is not None:
            ad.to(device)
        return ad

    def to(self, device: str) -> "Adapter":
        for mod in self.modules().values():
            mod.to(device)
        return self


def _format(fmt: str) -> str:
    if fmt == "auto":
        try:
            import safetensors.torch  # noqa: F401

            return "safetensors"
        except ImportError:
            return "torch"
    if fmt not in ("safetensors", "torch"):
        raise InputError(f"format must be auto, safetensors or torch, got {fmt!r}.")
    return fmt


def load_adapter(path: str | os.PathLike[str], device: str | None = None) -> Adapter:
    """Shorthand for :meth:`Adapter.load`."""
    return Adapter.load(path, device)


# ---------------------------------------------------------------------- losses
def _sinkhorn_target(sim: "torch.Tensor", iters: int, mix: float) -> "torch.Tensor":
    """``mix * P + (1 - mix) * I``; ``P`` the uniform-marginal Sinkhorn plan of ``sim``, rows summing to 1."""
    with torch.no_grad():
        m, n = sim.shape
        u = torch.zeros(m, dtype=sim.dtype, device=sim.device)
        v = torch.zeros(n, dtype=sim.dtype, device=sim.device)
        for _ in range(iters):
            u = -math.log(m) - torch.logsumexp(sim + v[None, :], dim=1)
            v = -math.log(n) - torch.logsumexp(sim + u[:, None], dim=0)
        P = torch.exp(sim + u[:, None] + v[None, :])
        P = P / P.sum(dim=1, keepdim=True)
        return mix * P + (1.0 - mix) * torch.eye(m, n, dtype=sim.dtype, device=sim.device)


def _minmax(x: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    big = torch.finfo(x.dtype).max
    lo = torch.where(mask, x, torch.full_like(x, big)).min(dim=-1, keepdim=True).values
    hi = torch.where(mask, x, torch.full_like(x, -big)).max(dim=-1, keepdim=True).values
    return (x - lo) / (hi - lo + 1e-8)


def _losses(q, g, q0, g0, mem_q, mem_g, cfg: AdapterConfig) -> dict[str, "torch.Tensor"]:  # noqa: ANN001
    """The four NeighborRetr losses of one batch of adapted (q, g) and frozen (q0, g0) pairs."""
    B = q.shape[0]
    sim = q @ g.T  # (B, B) cosines
    logits = cfg.logit_scale * sim
    # centrality-weighted InfoNCE (both directions), centrality from the memory bank
    c_q = (q @ mem_g.T).mean(dim=1).detach() if mem_g.shape[0] else torch.zeros(B, device=q.device)
    c_g = (g @ mem_q.T).mean(dim=1).detach() if mem_q.shape[0] else torch.zeros(B, device=q.device)
    diag = torch.arange(B, device=q.device)
    lp_t2v = F.log_softmax(logits, dim=1)[diag, diag]
    lp_v2t = F.log_softmax(logits.T, dim=1)[diag, diag]
    cent = -(0.5 * (lp_t2v * torch.exp(cfg.centrality_scale * c_q)).mean()
             + 0.5 * (lp_v2t * torch.exp(cfg.centrality_scale * c_g)).mean())
    # neighbour adjusting: soft positives among the k nearest in-batch items, down-weighting central ones
    k = min(cfg.num_neighbors, B - 1)
    if k >= 1:
        eye = torch.eye(B, dtype=torch.bool, device=q.device)
        s_ns = sim.detach().masked_fill(eye, -float("inf"))
        top = s_ns.topk(k, dim=1).indices
        nb = torch.zeros(B, B, dtype=torch.bool, device=q.device).scatter_(1, top, True)
        ext = nb | eye
        cen = c_g[None, :].expand(B, B)
        adj = (_minmax(sim.detach(), ext) - _minmax(cen, ext)).masked_fill(~nb, -float("inf"))
        w = torch.softmax(cfg.temperature * adj, dim=1) * nb
        w = w + eye.to(w.dtype)
        lp = F.log_softmax(logits.masked_fill(~ext, -float("inf")), dim=1).masked_fill(~ext, 0.0)
        neigh = -((lp * w).sum(dim=1) / w.sum(dim=1)).mean()
    else:
        neigh = logits.new_zeros(())
    # uniform retrieval: Sinkhorn target mixed with the identity
    tsim = cfg.temperature * sim
    target = _sinkhorn_target(tsim.detach(), cfg.sinkhorn_iters, cfg.target_mix)
    uni = -(target * F.log_softmax(tsim, dim=1)).sum(dim=1).mean()
    # KL to the frozen similarities
    frozen = cfg.logit_scale * (q0 @ g0.T)
    kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(frozen, dim=1), log_target=True, reduction="batchmean")
    total = cent + cfg.neighbor_weight * neigh + cfg.uniform_weight * uni + cfg.kl_weight * kl
    return {"total": total, "centrality": cent, "neighbor": neigh, "uniform": uni, "kl": kl}


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
            tot += float(_losses(q, g, q0, g0, mq, mg, cfg)["total"]) * len(q0)
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
    """
    _need_torch()
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
        mem_q = torch.empty(0, Q.shape[1], device=dev)
        mem_g = torch.empty(0, Q.shape[1], device=dev)
        n = len(Q)
        steps = cfg.epochs * math.ceil(n / cfg.batch_size)
        bar = _progress(steps, progress, "train-adapter")
        for ep in range(cfg.epochs):
            for m in ad.modules().values():
                m.train()
            perm = torch.randperm(n, generator=gen).to(dev)
            tot, cnt = 0.0, 0
            for i0 in range(0, n, cfg.batch_size):
                idx = perm[i0 : i0 + cfg.batch_size]
                if len(idx) < 2:
                    continue
                q0, g0 = tq[idx], tg[idx]
                q = ad.query(q0)
                g = ad.gallery(g0) if ad.gallery is not None else g0
                L = _losses(q, g, q0, g0, mem_q, mem_g, cfg)
                opt.zero_grad(set_to_none=True)
                L["total"].backward()
                opt.step()
                with torch.no_grad():  # FIFO memory bank of recent (adapted) vectors
                    mem_q = torch.cat([q.detach(), mem_q])[: cfg.memory_size]
                    mem_g = torch.cat([g.detach(), mem_g])[: cfg.memory_size]
                tot += float(L["total"].detach()) * len(idx)
                cnt += len(idx)
                bar.update(1)
            ad.history.append(tot / max(cnt, 1))
            if log_every and (ep + 1) % log_every == 0:
                print(f"epoch {ep + 1}/{cfg.epochs}: loss {ad.history[-1]:.4f}", file=sys.stderr)
        bar.close()
        for m in ad.modules().values():
            m.eval()
    return ad


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str):  # noqa: ANN202
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc)
    except ImportError:  # pragma: no cover
        return _NoBar()


# ---------------------------------------------------------------- Qdrant writer
def write_adapted_vectors(
    client: Any,
    collection: str,
    adapter: Adapter,
    *,
    target_vector: str = "adapted",
    target_collection: str | None = None,
    using: str | None = None,
    side: str = "gallery",
    batch_size: int = 256,
    progress: bool = True,
) -> int:
    """Write adapted vectors of a collection's points, leaving the original vectors untouched.

    - ``target_collection=None``: into the named vector ``target_vector`` of the same
      collection, which must already be declared in its config (Qdrant cannot add a named
      vector to an existing collection); only that vector is written (``update_vectors``).
    - ``target_collection="name"``: into a new collection (created when missing, same
      distance, the single named vector ``target_vector``) with the points' ids and payloads.

    Resumable: points that already hold ``target_vector`` (resp. already exist in the
    target collection) are skipped, so an interrupted run continues where it stopped.
    ``side="gallery"`` (default) uses the gallery adapter, ``"query"`` the query one.
    Returns the number of points written. Uses only qdrant_client's public API.
    """
    from qdrant_client import models

    if side not in ("gallery", "query"):
        raise InputError(f"side must be 'gallery' or 'query', got {side!r}.")
    fn = adapter.adapt_gallery if side == "gallery" else adapter.adapt_queries
    info = client.get_collection(collection)
    vecs_cfg = info.config.params.vectors
    if isinstance(vecs_cfg, dict):
        if using is None:
            raise InputError(f"collection {collection!r} has named vectors {sorted(vecs_cfg)}; pass using=.")
        src_cfg = vecs_cfg[using]
    else:
        if using is not None:
            raise InputError(f"collection {collection!r} has a single unnamed vector; drop using={using!r}.")
        src_cfg = vecs_cfg
    if src_cfg.size != adapter.dim:
        raise InputError(f"vector size {src_cfg.size} does not match the adapter's dimension {adapter.dim}.")
    if target_collection is None:
        if not isinstance(vecs_cfg, dict) or target_vector not in vecs_cfg or target_vector == using:
            raise InputError(
                f"collection {collection!r} does not declare a named vector {target_vector!r} (Qdrant cannot add "
                "one to an existing collection): create the collection with it, or pass target_collection= to "
                "write a new collection."
            )
    elif not client.collection_exists(target_collection):
        client.create_collection(
            target_collection,
            vectors_config={target_vector: models.VectorParams(size=adapter.dim, distance=src_cfg.distance)},
        )
    else:  # resuming: only into a collection shaped like the one this function creates
        tcfg = client.get_collection(target_collection).config.params.vectors
        if not (
            isinstance(tcfg, dict)
            and set(tcfg) == {target_vector}
            and tcfg[target_vector].size == adapter.dim
            and tcfg[target_vector].distance == src_cfg.distance
        ):
            raise InputError(
                f"collection {target_collection!r} already exists and is not a previous output of this function "
                f"(it must hold exactly the named vector {target_vector!r} of size {adapter.dim}, {src_cfg.distance}); "
                "choose a new target_collection so nothing of yours is overwritten."
            )
    total = client.count(collection, exact=True).count
    bar = _progress(total, progress, f"adapt {collection}")
    written = 0
    offset = None
    while True:
        pts, offset = client.scroll(
            collection, limit=batch_size, offset=offset, with_payload=target_collection is not None,
            with_vectors=[using] if using is not None else True,
        )
        if not pts:
            break
        ids = [p.id for p in pts]
        if target_collection is None:
            have = client.retrieve(collection, ids=ids, with_payload=False, with_vectors=[target_vector])
            done = {r.id for r in have if isinstance(r.vector, dict) and target_vector in r.vector}
        else:
            have = client.retrieve(target_collection, ids=ids, with_payload=False, with_vectors=False)
            done = {r.id for r in have}
        todo = [p for p in pts if p.id not in done]
        if todo:
            X = np.asarray([p.vector[using] if using is not None else p.vector for p in todo], dtype=np.float32)
            A = fn(X)
            if target_collection is None:
                client.update_vectors(
                    collection,
                    points=[models.PointVectors(id=p.id, vector={target_vector: a.tolist()}) for p, a in zip(todo, A)],
                )
            else:
                client.upsert(
                    target_collection,
                    points=[models.PointStruct(id=p.id, vector={target_vector: a.tolist()}, payload=p.payload)
                            for p, a in zip(todo, A)],
                )
            written += len(todo)
        bar.update(len(pts))
        if offset is None:
            break
    bar.close()
    return written


# --------------------------------------------------------------------------- CLI
def add_cli(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``train-adapter`` subcommand's options (one per :class:`AdapterConfig` field)."""
    p = subparsers.add_parser(
        "train-adapter",
        help="train a NeighborRetr-style residual adapter on frozen (query, gallery) pairs (experimental; torch)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--queries", required=True, help=".npy of query vectors (row i pairs with gallery row i)")
    p.add_argument("--gallery", required=True, help=".npy of gallery vectors")
    p.add_argument("--out", required=True, help="output weights path (suffix set by the format; a .json sits next to it)")
    p.add_argument("--format", default="auto", choices=("auto", "safetensors", "torch"))
    d = AdapterConfig()
    for f in fields(AdapterConfig):
        default = getattr(d, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    return p  # the CLI (dbnorm_qdrant.cli) loads the files, trains and saves


