"""The vanilla RNN cell (Elman): one step forward, one step of backpropagation through time.

h_t = tanh(W x_t + U h_{t-1} + b), or relu in place of tanh, as ``torch.nn.RNN`` offers.
Shapes: B batch, H hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor

NONLINEARITIES = ("tanh", "relu")


def forward_step(xw: Tensor, h_prev: Tensor, w_hh: Tensor, nonlinearity: str) -> Tensor:
    """xw: (B, H) W x_t + b; h_prev: (B, H); w_hh: (H, H). Returns h_t (B, H)."""
    a = xw + h_prev @ w_hh.T  # a_t = W x_t + U h_{t-1} + b
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)  # h_t = σ(a_t)


def backward_step(dh: Tensor, h: Tensor, w_hh: Tensor, nonlinearity: str) -> tuple[Tensor, Tensor]:
    """dh: (B, H) dL/dh_t; h: (B, H) saved h_t. Returns da (B, H) and dL/dh_{t-1} (B, H).

    dh_t/dh_{t-1} = σ'(a_t) U: the factor whose product over steps vanishes or explodes.
    """
    da = dh * (1 - h * h) if nonlinearity == "tanh" else dh * (h > 0)  # σ'(a_t)
    return da, da @ w_hh
