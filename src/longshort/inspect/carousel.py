"""The constant error carousel: dC_t/dC_k along the cell path is the product of forget gates.

For a forget-gate trace f (T, ...), ``carousel(f)[t, k] = prod_{j=k+1..t} f_j`` for k <= t,
computed from sums of logs so long products do not underflow to garbage.
"""

from __future__ import annotations

import torch
from torch import Tensor

_TINY = 1e-30


def carousel(f: Tensor, k: int | None = None) -> Tensor:
    """Products of forget gates. f: (T, *units).

    With k given: (T, *units), the product from step k+1 to each t (1 for t <= k).
    Without: (T, T, *units) for all pairs (t, k), zero above the diagonal (k > t).

    Example::

        >>> import torch
        >>> f = torch.tensor([[0.5], [0.9], [0.5]])   # three steps of one unit's forget gate
        >>> carousel(f, k=0).flatten().tolist()        # ∂C_t/∂C_0 = f_1 ⊙ ... ⊙ f_t
        [1.0, 0.8999999761581421, 0.44999998807907104]
    """
    logs = torch.log(f.double().clamp_min(_TINY))
    cum = torch.cumsum(logs, dim=0)  # S_t = sum_{j<=t} log f_j
    if k is not None:
        if not 0 <= k < f.shape[0]:
            raise ValueError(f"carousel: k must lie in [0, {f.shape[0] - 1}], got {k}")
        prods = torch.exp(cum - cum[k])
        prods[: k + 1] = 1.0
        return prods.to(f.dtype)
    diff = cum[:, None] - cum[None, :]  # S_t - S_k = sum_{j=k+1..t} log f_j
    steps = f.shape[0]
    lower = torch.ones(steps, steps, dtype=torch.bool, device=f.device).tril()
    lower = lower.view(steps, steps, *([1] * (f.dim() - 1)))
    return torch.where(lower, torch.exp(diff), 0.0).to(f.dtype)


def half_life(f: Tensor) -> Tensor:
    """Per unit, the steps until the carousel product falls below 0.5 at the unit's mean
    forget rate: ln 0.5 / mean_t ln f_t (inf when f is 1 throughout). f: (T, *units)."""
    mean_log = torch.log(f.double().clamp_min(_TINY)).mean(dim=0)
    return (torch.log(torch.tensor(0.5, dtype=torch.float64)) / mean_log).to(f.dtype)
