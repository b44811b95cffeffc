"""The gated recurrent unit (Cho et al. 2014): one step forward, one step of BPTT.

torch's formulation, gate blocks in its order r, z, n, so weights are interchangeable with
``torch.nn.GRU``:

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)            reset gate
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)            update gate
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))  candidate
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

There is no separate cell state: the additive path runs through h itself, and along it
∂h_t/∂h_{t-1} carries z_t where the LSTM's carousel carries f_t.
Shapes: B batch, H hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor


def forward_step(
    xw: Tensor, h_prev: Tensor, w_hh: Tensor, b_hh: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One step forward.

    xw: (B, 3H) W_i·x_t + b_i, computed for all steps before the loop; h_prev: (B, H);
    w_hh: (3H, H); b_hh: (3H,) or None. Returns gates (B, 4H) = [r, z, n, W_hn h + b_hn] (the
    last block is saved for BPTT) and h_t (B, H).
    """
    hw = h_prev @ w_hh.T  # W_h·h_{t-1} for all three gates at once
    if b_hh is not None:
        hw = hw + b_hh
    xr, xz, xn = xw.chunk(3, dim=1)
    hr, hz, hn = hw.chunk(3, dim=1)
    r = torch.sigmoid(xr + hr)  # r_t = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = torch.sigmoid(xz + hz)  # z_t = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = torch.tanh(xn + r * hn)  # n_t = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h = (1 - z) * n + z * h_prev  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
    return torch.cat((r, z, n, hn), dim=1), h


def backward_step(
    dh: Tensor, gates: Tensor, h_prev: Tensor, w_hh: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One step back through time.

    dh: (B, H) dL/dh_t from the output at t and from step t+1; gates: (B, 4H) saved
    [r, z, n, W_hn h + b_hn]; h_prev: (B, H). Returns the gradients at the pre-activations of
    the input side dgi (B, 3H) and of the hidden side dgh (B, 3H), and dL/dh_{t-1} (B, H).
    """
    r, z, n, hn = gates.chunk(4, dim=1)
    dn = dh * (1 - z)  # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    dz = dh * (h_prev - n)
    dan = dn * (1 - n * n)  # tanh' = 1 - tanh²
    dr = dan * hn  # n = tanh(a_n), a_n = W_in x + b_in + r ⊙ (W_hn h + b_hn)
    dar = dr * r * (1 - r)  # σ' = σ(1 - σ)
    daz = dz * z * (1 - z)
    dgi = torch.cat((dar, daz, dan), dim=1)
    dgh = torch.cat((dar, daz, dan * r), dim=1)  # the hidden side of n is scaled by r
    dh_prev = dh * z + dgh @ w_hh  # ∂h_t/∂h_{t-1} = z_t along the additive path, + the gates'
    return dgi, dgh, dh_prev
