"""Gate statistics over a data set: per unit and gate, the mean and how often it saturates."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from longshort.inspect.trace import trace
from longshort.nn import LSTM

GATES = ("i", "f", "g", "o")


def gate_statistics(
    model: LSTM,
    batches: Iterable[tuple[Tensor, Tensor | None]],
    high: float = 0.9,
    low: float = 0.1,
    layer: int = 0,
) -> dict[str, dict]:
    """For each gate of one layer (first direction): per-unit mean, fraction of steps above
    `high` and below `low` (for g, the candidate in [-1, 1]: above `high`, below -`high`).

    batches: (x, lengths) pairs; padded steps are excluded. Returns {gate: {"mean": (H,),
    "above": (H,), "below": (H,)}} as lists of floats.
    """
    sums: dict[str, dict[str, Tensor]] = {}
    count = None
    for x, lengths in batches:
        tr = next(t for t in trace(model, x, lengths) if t.layer == layer and t.direction == 0)
        steps, batch = tr.h.shape[:2]
        if lengths is None:
            valid = torch.ones(steps, batch, 1, dtype=torch.bool)
        else:
            valid = (torch.arange(steps)[:, None] < lengths[None, :]).unsqueeze(-1)
        n = valid.sum()
        count = n if count is None else count + n
        for name in GATES:
            v = getattr(tr, name)
            lo = -high if name == "g" else low
            acc = sums.setdefault(name, {k: 0 for k in ("mean", "above", "below")})
            acc["mean"] = acc["mean"] + (v * valid).sum(dim=(0, 1))
            acc["above"] = acc["above"] + ((v > high) & valid).sum(dim=(0, 1))
            acc["below"] = acc["below"] + ((v < lo) & valid).sum(dim=(0, 1))
    if count is None:
        raise ValueError("gate_statistics: batches was empty")
    return {
        g: {k: (v.double() / count).tolist() for k, v in acc.items()} for g, acc in sums.items()
    }
