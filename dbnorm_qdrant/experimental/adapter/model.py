"""The adapter's model: the residual block and :class:`Adapter` (apply, save, load)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..._io_utils import atomic_path
from ...errors import InputError
from ...validation import as_matrix
from ._torch import F, need_torch, nn, torch
from .config import AdapterConfig

__all__ = ["Adapter", "load_adapter"]


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
        need_torch()
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
        meta = {"dim": self.dim, "format": fmt, "weights": wpath.name, "config": asdict(self.config),
                "history": self.history}
        # each file is written to a temporary name and renamed: a failed save leaves no partial file
        with atomic_path(wpath, "adapter weights") as tmp:
            if fmt == "safetensors":
                from safetensors.torch import save_file

                save_file(sd, str(tmp))
            else:
                torch.save(sd, str(tmp))
        with atomic_path(wpath.with_suffix(".json"), "adapter config") as tmp:
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
        return wpath

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | None = None) -> "Adapter":
        """Load an adapter saved by :meth:`save` (weights only: no pickled objects are executed)."""
        need_torch()
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


