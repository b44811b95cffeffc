"""The LSTM cell: one step forward, one step of backpropagation through time.

Notation of Hochreiter and Schmidhuber (1997) with the forget gate of Gers et al. (2000):
f_t, i_t, C~_t (g), o_t, the cell state C_t and h_t. Gate blocks are stored in
torch's order i, f, g (= C~), o so weights are interchangeable with ``torch.nn.LSTM``.

Shapes: B batch, H hidden size, P size of h (``proj_size`` if set, else H).
"""

from __future__ import annotations

import torch
from torch import Tensor


def forward_step(
    xw: Tensor, h_prev: Tensor, c_prev: Tensor, w_hh: Tensor, w_hr: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """One step forward.

    xw: (B, 4H) input projection W·x_t + b, computed for all steps before the loop.
    h_prev: (B, P); c_prev: (B, H); w_hh: (4H, P); w_hr: (P, H) or None.
    Returns gates (B, 4H) = [i, f, g, o] after their nonlinearities, c (B, H), h (B, P).
    """
    z = xw + h_prev @ w_hh.T  # W·[h_{t-1}, x_t] + b for all four gates at once
    zi, zf, zg, zo = z.chunk(4, dim=1)
    i = torch.sigmoid(zi)  # i_t  = σ(W_i·[h_{t-1}, x_t] + b_i)
    f = torch.sigmoid(zf)  # f_t  = σ(W_f·[h_{t-1}, x_t] + b_f)
    g = torch.tanh(zg)  # C~_t = tanh(W_C·[h_{t-1}, x_t] + b_C)
    o = torch.sigmoid(zo)  # o_t  = σ(W_o·[h_{t-1}, x_t] + b_o)
    c = f * c_prev + i * g  # C_t  = f_t ⊙ C_{t-1} + i_t ⊙ C~_t
    h = o * torch.tanh(c)  # h_t  = o_t ⊙ tanh(C_t)
    if w_hr is not None:
        h = h @ w_hr.T  # projected LSTM (proj_size): h_t = W_hr (o_t ⊙ tanh(C_t))
    return torch.cat((i, f, g, o), dim=1), c, h


def backward_step(
    dh: Tensor,
    dc: Tensor,
    gates: Tensor,
    c_prev: Tensor,
    c: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step back through time.

    dh: (B, P) dL/dh_t, from the output at t and from step t+1; dc: (B, H) dL/dC_t from step t+1.
    gates: (B, 4H) saved [i, f, g, o]; c_prev, c: (B, H) C_{t-1} and C_t.
    Returns dz (B, 4H), the gradient at the gates' pre-activations, dL/dh_{t-1} (B, P) through
    the recurrent weights, dL/dC_{t-1} (B, H) along the carousel, and dL/dC_t (B, H) in all.
    """
    i, f, g, o = gates.chunk(4, dim=1)
    dm = dh @ w_hr if w_hr is not None else dh  # back through h_t = W_hr m_t
    tc = torch.tanh(c)
    do = dm * tc  # h_t = o_t ⊙ tanh(C_t)
    dc = dc + dm * o * (1 - tc * tc)  # ... and through tanh(C_t)
    di = dc * g  # C_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t
    df = dc * c_prev
    dg = dc * i
    dz = torch.cat(
        (di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)), dim=1
    )  # σ'(z) = σ(1 - σ), tanh'(z) = 1 - tanh²
    dc_prev = dc * f  # ∂C_t/∂C_{t-1} = f_t: the constant error carousel
    dh_prev = dz @ w_hh  # the path through h_{t-1}
    return dz, dh_prev, dc_prev, dc
