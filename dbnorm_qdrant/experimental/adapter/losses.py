"""The four NeighborRetr losses of one batch (see the package docstring for what each does)."""

from __future__ import annotations

import math

from ._torch import F, torch
from .config import AdapterConfig

__all__ = ["sinkhorn_target", "batch_losses"]


def sinkhorn_target(sim: "torch.Tensor", iters: int, mix: float) -> "torch.Tensor":
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


def batch_losses(q, g, q0, g0, mem_q, mem_g, cfg: AdapterConfig) -> dict[str, "torch.Tensor"]:  # noqa: ANN001
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
    target = sinkhorn_target(tsim.detach(), cfg.sinkhorn_iters, cfg.target_mix)
    uni = -(target * F.log_softmax(tsim, dim=1)).sum(dim=1).mean()
    # KL to the frozen similarities
    frozen = cfg.logit_scale * (q0 @ g0.T)
    kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(frozen, dim=1), log_target=True, reduction="batchmean")
    total = cent + cfg.neighbor_weight * neigh + cfg.uniform_weight * uni + cfg.kl_weight * kl
    return {"total": total, "centrality": cent, "neighbor": neigh, "uniform": uni, "kl": kl}


