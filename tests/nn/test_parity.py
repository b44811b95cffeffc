"""Parity with torch.nn.LSTM / nn.RNN loaded with the same weights, over a grid of options."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import longshort
from tests.nn.parity import run_both

T, B, I, H = 6, 4, 3, 5
LENGTHS = torch.tensor([3, 6, 1, 4])  # unsorted, includes length 1

GRID = list(itertools.product([1, 2, 3], [False, True], [False, True], [0, 3], [True, False]))


def make_pair(cls, torch_cls, dtype=torch.float32, **kw):
    theirs = torch_cls(**kw, dtype=dtype)
    ours = cls(**kw, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def make_input(batch_first, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    return x.transpose(0, 1).contiguous() if batch_first else x


def make_states(num_layers, bidirectional, proj, lstm, dtype=torch.float32, batch=(B,)):
    g = torch.Generator().manual_seed(2)
    d = num_layers * (2 if bidirectional else 1)
    h = torch.randn(d, *batch, proj or H, generator=g, dtype=dtype)
    if not lstm:
        return h
    return h, torch.randn(d, *batch, H, generator=g, dtype=dtype)


@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize(("layers", "bidir", "batch_first", "proj", "bias"), GRID)
def test_lstm_padded(cpu_engine, layers, bidir, batch_first, proj, bias, given_state):
    kw = dict(
        input_size=I,
        hidden_size=H,
        num_layers=layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidir,
        proj_size=proj,
    )
    ours, theirs = make_pair(longshort.LSTM, nn.LSTM, **kw)
    hx = make_states(layers, bidir, proj, True) if given_state else None
    run_both(ours, theirs, make_input(batch_first), hx)


@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize(("layers", "bidir", "batch_first", "proj", "bias"), GRID)
def test_lstm_packed_and_lengths(cpu_engine, layers, bidir, batch_first, proj, bias, given_state):
    kw = dict(
        input_size=I,
        hidden_size=H,
        num_layers=layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidir,
        proj_size=proj,
    )
    ours, theirs = make_pair(longshort.LSTM, nn.LSTM, **kw)
    hx = make_states(layers, bidir, proj, True) if given_state else None
    x = make_input(batch_first)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    out = run_both(ours, theirs, packed, hx)[0]
    assert out.shape[0] == int(LENGTHS.sum())
    # lengths= on the padded tensor gives the same as torch.nn on the packed sequence
    run_both(ours, theirs, x, hx, ours_kwargs={"lengths": LENGTHS}, theirs_x=packed)


@pytest.mark.parametrize(("layers", "bidir", "proj"), [(1, False, 0), (2, True, 3)])
def test_lstm_unbatched(cpu_engine, layers, bidir, proj):
    kw = dict(input_size=I, hidden_size=H, num_layers=layers, bidirectional=bidir, proj_size=proj)
    ours, theirs = make_pair(longshort.LSTM, nn.LSTM, **kw)
    x = make_input(False)[:, 0]
    run_both(ours, theirs, x, None)
    run_both(ours, theirs, x, make_states(layers, bidir, proj, True, batch=()))


def test_lstm_enforce_sorted_packing(cpu_engine):
    ours, theirs = make_pair(
        longshort.LSTM, nn.LSTM, input_size=I, hidden_size=H, bidirectional=True
    )
    x = make_input(False)
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 3, 1]), enforce_sorted=True)
    run_both(ours, theirs, packed)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize(
    ("layers", "bidir", "batch_first", "bias"),
    list(itertools.product([1, 2, 3], [False, True], [False, True], [True, False])),
)
def test_rnn(cpu_engine, nonlinearity, layers, bidir, batch_first, bias):
    kw = dict(
        input_size=I,
        hidden_size=H,
        num_layers=layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidir,
        nonlinearity=nonlinearity,
    )
    ours, theirs = make_pair(longshort.RNN, nn.RNN, **kw)
    x = make_input(batch_first)
    run_both(ours, theirs, x)
    run_both(ours, theirs, x, make_states(layers, bidir, 0, False))
    packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    run_both(ours, theirs, packed, make_states(layers, bidir, 0, False))
    run_both(ours, theirs, x, None, ours_kwargs={"lengths": LENGTHS}, theirs_x=packed)
    run_both(ours, theirs, x[:, 0] if not batch_first else x[0], None)


def test_lengths_zero_padding_and_final_state(cpu_engine):
    """lengths= zeroes padded outputs and takes each sequence's own last state."""
    m = longshort.LSTM(I, H, bidirectional=True)
    x = make_input(False)
    out, (h, c) = m(x, lengths=LENGTHS.to(torch.int32))
    for b, n in enumerate(LENGTHS.tolist()):
        assert torch.all(out[n:, b] == 0)
        alone, (h1, c1) = m(x[:n, b : b + 1])
        torch.testing.assert_close(out[:n, b : b + 1], alone, rtol=0, atol=1e-6)
        torch.testing.assert_close(h[:, b : b + 1], h1, rtol=0, atol=1e-6)
        torch.testing.assert_close(c[:, b : b + 1], c1, rtol=0, atol=1e-6)


def test_packed_output_matches_pad(cpu_engine):
    ours, theirs = make_pair(longshort.LSTM, nn.LSTM, input_size=I, hidden_size=H)
    packed = pack_padded_sequence(make_input(False), LENGTHS, enforce_sorted=False)
    a, _ = ours(packed)
    b, _ = theirs(packed)
    assert torch.equal(a.batch_sizes, b.batch_sizes)
    assert torch.equal(a.sorted_indices, b.sorted_indices)
    pa, la = pad_packed_sequence(a)
    pb, lb = pad_packed_sequence(b)
    assert torch.equal(la, lb)
    torch.testing.assert_close(pa, pb, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_cells(cpu_engine, bias):
    for ours_cls, torch_cls, lstm in (
        (longshort.LSTMCell, nn.LSTMCell, True),
        (longshort.RNNCell, nn.RNNCell, False),
    ):
        theirs = torch_cls(I, H, bias=bias)
        ours = ours_cls(I, H, bias=bias)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(B, I, requires_grad=True)
        h = (torch.randn(B, H), torch.randn(B, H)) if lstm else (torch.randn(B, H),)
        h = tuple(t.requires_grad_() for t in h)
        hx = h if lstm else h[0]
        a, b = ours(x, hx), theirs(x, hx)
        a, b = (a, b) if lstm else ((a,), (b,))
        for p, q in zip(a, b, strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
        ga = torch.autograd.grad(sum(t.sum() for t in a), [x, *h, *ours.parameters()])
        gb = torch.autograd.grad(sum(t.sum() for t in b), [x, *h, *theirs.parameters()])
        for p, q in zip(ga, gb, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        one = ours(x[0])
        assert (one[0] if lstm else one).shape == (H,)


def test_float64_parity(cpu_engine):
    kw = dict(input_size=I, hidden_size=H, num_layers=2, bidirectional=True, proj_size=2)
    ours, theirs = make_pair(longshort.LSTM, nn.LSTM, dtype=torch.float64, **kw)
    x = make_input(False, dtype=torch.float64)
    run_both(ours, theirs, x, make_states(2, True, 2, True, dtype=torch.float64))
