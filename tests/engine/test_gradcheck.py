"""torch.autograd.gradcheck in float64 on the handwritten BPTT, through h_0 and c_0 too."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from longshort import engine

T, B, I, H = 5, 3, 2, 4


def _rand(*shape, seed=[0]):  # noqa: B006 - a running seed for distinct tensors
    seed[0] += 1
    g = torch.Generator().manual_seed(seed[0])
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.7).requires_grad_()


@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lengths", [None, [5, 1, 3]])
def test_lstm_layer_gradcheck(cpu_engine, proj, bias, lengths):
    p = proj or H
    args = [_rand(T, B, I), _rand(B, p), _rand(B, H), _rand(4 * H, I), _rand(4 * H, p)]
    args += [_rand(4 * H), _rand(4 * H)] if bias else [None, None]
    args += [_rand(p, H) if proj else None]
    lens = None if lengths is None else torch.tensor(lengths)

    def f(*a):
        out, h_n, c_n, _, _ = engine.lstm_layer(*a, lengths=lens)
        return out, h_n, c_n

    assert gradcheck(f, tuple(args), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("lengths", [None, [2, 5, 4]])
def test_rnn_layer_gradcheck(cpu_engine, nonlinearity, lengths):
    args = (_rand(T, B, I), _rand(B, H), _rand(H, I), _rand(H, H), _rand(H), _rand(H))
    lens = None if lengths is None else torch.tensor(lengths)

    def f(*a):
        out, h_n, _ = engine.rnn_layer(*a, lengths=lens, nonlinearity=nonlinearity)
        return out, h_n

    assert gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_module_gradcheck_through_states(cpu_engine):
    """The whole module: input, h_0 and c_0 of a 2-layer bidirectional projected LSTM."""
    import longshort

    m = longshort.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=3, dtype=torch.float64)
    x, h0, c0 = _rand(T, B, I), _rand(4, B, 3), _rand(4, B, H)

    def f(x, h0, c0):
        out, (h, c) = m(x, (h0, c0), lengths=torch.tensor([5, 2, 4]))
        return out, h, c

    assert gradcheck(f, (x, h0, c0), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_would_catch_a_wrong_backward():
    """The check can fail: a backward with the carousel term dropped is caught."""
    from longshort.cells import lstm as cell

    original = cell.backward_step

    def broken(dh, dc, gates, c_prev, c, w_hh, w_hr):
        dz, dh_prev, dc_prev, dc_t = original(dh, dc, gates, c_prev, c, w_hh, w_hr)
        return dz, dh_prev, dc_prev * 0.5, dc_t

    from longshort.engine import use_cpu_engine

    args = (_rand(T, B, I), _rand(B, H), _rand(B, H), _rand(4 * H, I), _rand(4 * H, H))
    with use_cpu_engine("reference"):
        cell.backward_step = broken
        try:
            ok = gradcheck(
                lambda *a: engine.lstm_layer(*a)[:3],
                args,
                eps=1e-6,
                atol=1e-7,
                raise_exception=False,
            )
        finally:
            cell.backward_step = original
    assert not ok
