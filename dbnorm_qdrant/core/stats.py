"""Per-gallery-item statistics: everything a method needs from the banks.

Every method ranks a query's candidates by ``s(q, g) - bias(g)`` (possibly gated), and
``bias(g)`` is a function of a handful of numbers per gallery item computed once from
the banks (docs/methods.md §2). :class:`GalleryStats` holds them; it is the only state that
passes from index time to query time, so it can live in memory, in a file or in a
Qdrant payload.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["GalleryStats", "STAT_FIELDS"]

#: float statistics and boolean flags, in payload order
STAT_FIELDS: tuple[str, ...] = (
    "lse_q",
    "lse_g",
    "act_q",
    "act_g",
    "topk_mean_q",
    "mean_q",
    "center_dot",
    "center_norm",
    "uniform_v",
)
_BOOL = {"act_q", "act_g"}


@dataclass
class GalleryStats:
    """Statistics of ``n`` gallery items (each field an array of length ``n`` or ``None``).

    Attributes
    ----------
    lse_q, lse_g:
        ``(1/beta) * LSE_b(beta * s(b, g))`` over the query bank (``beta_q``) and the
        gallery bank (``beta_g``, the item itself left out).
    act_q, act_g:
        Activation flags: the item is in the top-k of at least one bank query /
        gallery-bank item (DIS, DualDIS).
    topk_mean_q:
        Mean of the k largest query-bank similarities (CSLS, NNN).
    mean_q:
        Mean query-bank similarity (centrality).
    center_dot, center_norm:
        With centering: ``g . mean(B_Q)`` and ``||g - mean(B_G)||``; with them a raw
        score can be turned into the centered cosine without the item's vector.
    uniform_v:
        ``v(g) / beta``: the gallery potential of the uniform-marginal Sinkhorn on
        ``beta * S_bank`` (uniform retrieval; the bias is ``-lambda * uniform_v``).
    fingerprint:
        Identifies the banks and parameters the statistics were computed with.
    """

    n: int
    lse_q: np.ndarray | None = None
    lse_g: np.ndarray | None = None
    act_q: np.ndarray | None = None
    act_g: np.ndarray | None = None
    topk_mean_q: np.ndarray | None = None
    mean_q: np.ndarray | None = None
    center_dot: np.ndarray | None = None
    center_norm: np.ndarray | None = None
    uniform_v: np.ndarray | None = None
    fingerprint: str = ""

    def present(self) -> tuple[str, ...]:
        """Names of the statistics that are set."""
        return tuple(f for f in STAT_FIELDS if getattr(self, f) is not None)

    def take(self, idx: Sequence[int] | np.ndarray) -> "GalleryStats":
        """The statistics of the items at positions ``idx`` (for a candidate list)."""
        idx = np.asarray(idx, dtype=np.int64)
        kw = {f: (None if getattr(self, f) is None else getattr(self, f)[idx]) for f in STAT_FIELDS}
        return GalleryStats(n=len(idx), fingerprint=self.fingerprint, **kw)

    @classmethod
    def concat(cls, parts: Sequence["GalleryStats"]) -> "GalleryStats":
        """Stack statistics of several item groups (same fields, same fingerprint)."""
        if not parts:
            raise InputError("concat needs at least one GalleryStats; pass a non-empty list of parts.")
        fps = {p.fingerprint for p in parts}
        if len(fps) > 1:
            raise InputError(
                f"cannot concatenate statistics with different fingerprints {sorted(fps)}: they come from other "
                "banks or parameters; recompute every part with the same BankNormalizer."
            )
        kw: dict[str, Any] = {}
        for f in STAT_FIELDS:
            vals = [getattr(p, f) for p in parts]
            if all(v is None for v in vals):
                kw[f] = None
            elif any(v is None for v in vals):
                raise InputError(
                    f"statistic {f!r} is missing from some of the parts; recompute every part with the same "
                    "BankNormalizer (and the same activation= setting)."
                )
            else:
                kw[f] = np.concatenate(vals)
        return cls(n=sum(p.n for p in parts), fingerprint=parts[0].fingerprint, **kw)

    def record(self, i: int) -> dict[str, float | bool | str]:
        """Item ``i`` as a flat JSON-friendly dict (what the Qdrant layer stores in a payload)."""
        out: dict[str, float | bool | str] = {"fp": self.fingerprint}
        for f in self.present():
            v = getattr(self, f)[i]
            out[f] = bool(v) if f in _BOOL else float(v)
        return out

    def records(self) -> list[dict[str, float | bool | str]]:
        """All items as :meth:`record` dicts."""
        return [self.record(i) for i in range(self.n)]

    @classmethod
    def from_records(cls, recs: Sequence[Mapping[str, Any]], fingerprint: str | None = None) -> "GalleryStats":
        """Inverse of :meth:`records`. Raises :class:`InputError` on a fingerprint mismatch or a missing field."""
        if fingerprint is not None:
            for r in recs:
                if r.get("fp") != fingerprint:
                    raise InputError(
                        f"statistics were computed for fingerprint {r.get('fp')!r}, expected {fingerprint!r}; "
                        "recompute them (the banks or parameters changed)."
                    )
        names = [f for f in STAT_FIELDS if recs and f in recs[0]]
        kw: dict[str, Any] = {}
        for f in names:
            try:
                vals = [r[f] for r in recs]
            except KeyError:
                raise InputError(
                    f"statistic {f!r} is missing from some records; recompute those items' statistics "
                    "(every record must hold the same fields)."
                ) from None
            kw[f] = np.asarray(vals, dtype=bool if f in _BOOL else np.float64)
        fp = fingerprint if fingerprint is not None else (str(recs[0].get("fp", "")) if recs else "")
        return cls(n=len(recs), fingerprint=fp, **kw)

    def __eq__(self, other: object) -> bool:  # arrays need element-wise comparison
        if not isinstance(other, GalleryStats):
            return NotImplemented
        if self.n != other.n or self.fingerprint != other.fingerprint or self.present() != other.present():
            return False
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in self.present())

    __hash__ = None  # type: ignore[assignment]


assert {f.name for f in fields(GalleryStats)} >= set(STAT_FIELDS)
