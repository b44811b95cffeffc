"""Traces, carousel products and gradient norms against independent recomputations."""

from __future__ import annotations

import torch
from torch import nn

import longshort
from longshort.inspect import carousel, gate_statistics, gradient_flow, half_life, trace


def test_trace_equals_torch_cell_recomputation():
    torch.manual_seed(0)
    m = longshort.LSTM(3, 5, num_layers=2)
    x = torch.randn(7, 2, 3)
    lengths = torch.tensor([7, 4])
    traces = trace(m, x, lengths)
    assert len(traces) == 2
    cell = nn.LSTMCell(3, 5)
    cell.load_state_dict(
        {k.replace("_l0", ""): v for k, v in m.state_dict().items() if k.endswith("_l0")}
    )
    h = c = torch.zeros(2, 5)
    for t in range(7):
        with torch.no_grad():
            z = x[t] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
            h, c = cell(x[t], (h, c))
        i, f, g, o = z.chunk(4, 1)
        valid = t < lengths
        for name, want in (
            ("i", torch.sigmoid(i)),
            ("f", torch.sigmoid(f)),
            ("g", torch.tanh(g)),
            ("o", torch.sigmoid(o)),
            ("c", c),
            ("h", h),
        ):
            got = getattr(traces[0], name)[t]
            torch.testing.assert_close(got[valid], want[valid], rtol=0, atol=1e-5)
            assert torch.all(got[~valid] == 0)


def test_rnn_trace_is_hidden_states():
    m = longshort.RNN(3, 4)
    x = torch.randn(6, 2, 3)
    (tr,) = trace(m, x)
    out, _ = m(x)
    torch.testing.assert_close(tr.h, out.detach())
    assert tr.f is None


def test_carousel_equals_explicit_products():
    f = torch.rand(9, 3, dtype=torch.float64) * 0.5 + 0.5
    allp = carousel(f)
    for t in range(9):
        for k in range(9):
            want = torch.prod(f[k + 1 : t + 1], dim=0) if k <= t else torch.zeros(3)
            torch.testing.assert_close(allp[t, k], want.to(allp.dtype))
    torch.testing.assert_close(carousel(f, k=2)[6], torch.prod(f[3:7], dim=0))
    assert torch.isfinite(carousel(torch.full((5000, 1), 0.5))).all()  # logs: no NaN
    hl = half_life(torch.full((10, 2), 0.5))
    torch.testing.assert_close(hl, torch.ones(2))


def test_gradient_norms_equal_autograd():
    """||dL/dh_k|| and ||dL/dC_k|| from the engine's BPTT against an nn.LSTMCell loop."""
    torch.manual_seed(1)
    for cls in (longshort.LSTM, longshort.RNN):
        m = cls(3, 4)
        x = torch.randn(12, 2, 3)
        flow = gradient_flow(m, x, seed=5)
        cell = (nn.LSTMCell if cls is longshort.LSTM else nn.RNNCell)(3, 4)
        cell.load_state_dict({k.replace("_l0", ""): v for k, v in m.state_dict().items()})
        hs, cs = [], []
        h = torch.zeros(2, 4)
        c = torch.zeros(2, 4)
        for t in range(12):
            if cls is longshort.LSTM:
                h, c = cell(x[t], (h, c))
                c.retain_grad()
                cs.append(c)
            else:
                h = cell(x[t], h)
            h.retain_grad()
            hs.append(h)
        w = torch.randn(h.shape, generator=torch.Generator().manual_seed(5))
        w = w / w.norm(dim=-1, keepdim=True)
        (h * w).sum().backward()
        want_h = torch.stack([v.grad.norm(dim=1).mean() for v in hs])
        torch.testing.assert_close(flow.dh[0], want_h, rtol=1e-4, atol=1e-7)
        if cls is longshort.LSTM:
            want_c = torch.stack([v.grad.norm(dim=1).mean() for v in cs])
            torch.testing.assert_close(flow.dc[0], want_c, rtol=1e-4, atol=1e-7)


def test_jacobian_cross_check():
    """||dh_T/dh_k|| of a small RNN against torch.autograd.functional.jacobian."""
    torch.manual_seed(2)
    m = longshort.RNN(2, 3)
    x = torch.randn(5, 1, 2)
    flow = gradient_flow(m, x, seed=0)
    w = torch.randn(1, 3, generator=torch.Generator().manual_seed(0))
    w = w / w.norm()
    cell = nn.RNNCell(2, 3)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in m.state_dict().items()})

    def from_step(k):
        def run(hk):
            h = hk
            for t in range(k + 1, 5):
                h = cell(x[t], h)
            return (h * w).sum()

        return run

    h = torch.zeros(1, 3)
    states = []
    with torch.no_grad():
        for t in range(5):
            h = cell(x[t], h)
            states.append(h)
    for k in range(5):
        jac = torch.autograd.functional.jacobian(from_step(k), states[k])
        torch.testing.assert_close(flow.dh[0][k], jac.norm(), rtol=1e-4, atol=1e-7)


def test_gate_statistics_ranges():
    m = longshort.LSTM(3, 4, forget_bias=5.0)
    stats = gate_statistics(m, [(torch.randn(6, 2, 3), torch.tensor([6, 3]))] * 2)
    assert set(stats) == {"i", "f", "g", "o"}
    assert all(v > 0.9 for v in stats["f"]["above"])  # forget bias 5: f ~ 0.99
    assert all(0 <= v <= 1 for g in stats.values() for v in g["above"] + g["below"])


def test_trace_of_packed_input_is_masked_like_lengths():
    m = longshort.LSTM(3, 4, bidirectional=True)
    x = torch.randn(6, 3, 3)
    lengths = torch.tensor([2, 6, 4])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    a, b = trace(m, packed), trace(m, x, lengths)
    for ta, tb in zip(a, b, strict=True):
        torch.testing.assert_close(ta.f, tb.f)
        torch.testing.assert_close(ta.c, tb.c)
        assert torch.all(ta.f[2:, 0] == 0)


def test_gru_trace_carousel_and_gradient_flow():
    """The GRU's carousel is the product of its update gates: with h's input path cut
    (n_t held at 0 by zero weights on the candidate), h_t = z_t ⊙ h_{t-1} exactly."""
    torch.manual_seed(0)
    m = longshort.GRU(3, 4)
    with torch.no_grad():
        m.weight_ih_l0[8:] = 0  # W_in = 0
        m.weight_hh_l0[8:] = 0  # W_hn = 0
        m.bias_ih_l0[8:] = 0
        m.bias_hh_l0[8:] = 0
    x = torch.randn(6, 2, 3)
    h0 = torch.randn(1, 2, 4)
    tr = trace(m, x, hx=h0)[0]
    prods = carousel(tr.z[:, 0], k=0)  # prod_{j=1..t} z_j
    h1 = tr.z[0, 0] * h0[0, 0]  # h after the first step
    torch.testing.assert_close(tr.h[:, 0], prods * h1, rtol=1e-5, atol=1e-6)
    flow = gradient_flow(m, x)
    assert flow.dh[0].shape == (6,) and flow.dc[0] is None
