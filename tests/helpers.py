"""Error measures for comparing longshort with torch.nn, and a record of the worst seen."""

from __future__ import annotations

import collections

import torch

WORST: dict[str, float] = collections.defaultdict(float)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b| (the scale of the reference)."""
    return float(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).detach())


def abs_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max().detach())


def record(kind: str, value: float) -> float:
    WORST[kind] = max(WORST[kind], value)
    return value
