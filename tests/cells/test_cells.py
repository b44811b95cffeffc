"""One step of each cell against torch.nn's cells and autograd on them."""

from __future__ import annotations

import torch
from torch import nn

from longshort.cells import lstm, rnn

B, I, H = 3, 4, 5


def test_lstm_step_forward_and_backward_match_torch_cell():
    torch.manual_seed(0)
    cell = nn.LSTMCell(I, H, dtype=torch.float64)
    x = torch.randn(B, I, dtype=torch.float64)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    h_ref, c_ref = cell(x, (h0, c0))
    dh, dc = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    dh0_ref, dc0_ref = torch.autograd.grad((h_ref * dh + c_ref * dc).sum(), (h0, c0))

    xw = x @ cell.weight_ih.T + cell.bias_ih + cell.bias_hh
    with torch.no_grad():
        gates, c, h = lstm.forward_step(xw, h0, c0, cell.weight_hh, None)
        dz, dh_prev, dc_prev, _ = lstm.backward_step(dh, dc, gates, c0, c, cell.weight_hh, None)
    torch.testing.assert_close(h, h_ref.detach())
    torch.testing.assert_close(c, c_ref.detach())
    torch.testing.assert_close(dh_prev, dh0_ref)
    torch.testing.assert_close(dc_prev, dc0_ref)
    f = gates[:, H : 2 * H]
    # with no gradient through h, dL/dC_{t-1} is exactly dL/dC_t * f_t: the carousel
    _, _, carousel, _ = lstm.backward_step(
        torch.zeros_like(dh), dc, gates, c0, c, cell.weight_hh, None
    )
    torch.testing.assert_close(carousel, dc * f)
    assert dz.shape == (B, 4 * H)


def test_rnn_step_matches_torch_cell():
    for nonlinearity in ("tanh", "relu"):
        torch.manual_seed(1)
        cell = nn.RNNCell(I, H, nonlinearity=nonlinearity, dtype=torch.float64)
        x = torch.randn(B, I, dtype=torch.float64)
        h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
        h_ref = cell(x, h0)
        dh = torch.randn(B, H, dtype=torch.float64)
        (dh0_ref,) = torch.autograd.grad((h_ref * dh).sum(), (h0,))
        xw = x @ cell.weight_ih.T + cell.bias_ih + cell.bias_hh
        with torch.no_grad():
            h = rnn.forward_step(xw, h0, cell.weight_hh, nonlinearity)
            _, dh_prev = rnn.backward_step(dh, h, cell.weight_hh, nonlinearity)
        torch.testing.assert_close(h, h_ref.detach())
        torch.testing.assert_close(dh_prev, dh0_ref)
