"""Recompute in segments: same results as torch.nn, gradcheck through segment boundaries."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

import longshort
from longshort import engine
from tests.nn.parity import run_both


@pytest.mark.parametrize("kw", [{}, {"proj_size": 3}, {"bias": False, "num_layers": 2}])
def test_recompute_matches_torch(cpu_engine, kw):
    theirs = nn.LSTM(3, 6, bidirectional=True, **kw)
    ours = longshort.LSTM(3, 6, bidirectional=True, recompute_segment=4, **kw)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(23, 3, 3)
    run_both(ours, theirs, x)
    packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([23, 9, 1]), enforce_sorted=False)
    run_both(ours, theirs, packed)


def test_segmented_gradcheck(cpu_engine):
    g = torch.Generator().manual_seed(0)

    def r(*s):
        return (torch.randn(*s, generator=g, dtype=torch.float64) * 0.5).requires_grad_()

    args = (r(9, 2, 3), r(2, 4), r(2, 4), r(16, 3), r(16, 4), r(16), r(16))
    lengths = torch.tensor([9, 5])

    def f(*a):
        return engine.lstm_layer(*a, lengths=lengths, segment=4)[:3]

    assert gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_recompute_keeps_no_gates():
    m = longshort.LSTM(2, 4, recompute_segment=5)
    *_, gates, starts = engine.lstm_layer(
        torch.randn(12, 1, 2),
        torch.zeros(1, 4),
        torch.zeros(1, 4),
        *m.layer_weights(0, 0),
        segment=5,
    )
    assert gates.shape == (0, 1, 16) and starts.shape == (3, 1, 8)
    with pytest.raises(ValueError, match="recompute_segment must be None or a positive int"):
        longshort.LSTM(2, 4, recompute_segment=0)
