"""GRU and GRUCell against torch.nn.GRU / nn.GRUCell with the same weights, on both engines:
the grid of options, lengths and packing, unbatched input, float64 gradcheck and
gradgradcheck, initialisation, state_dict, repr and errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

import longshort
from longshort import engine
from tests.nn.parity import run_both
from tests.nn.test_parity import LENGTHS, B, H, I, make_input, make_pair, make_states

F64 = torch.float64


@pytest.mark.parametrize(
    ("layers", "bidir", "batch_first", "bias"),
    list(itertools.product([1, 2, 3], [False, True], [False, True], [True, False])),
)
def test_gru_matches_torch(cpu_engine, layers, bidir, batch_first, bias):
    kw = dict(
        input_size=I,
        hidden_size=H,
        num_layers=layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidir,
    )
    ours, theirs = make_pair(longshort.GRU, nn.GRU, **kw)
    x = make_input(batch_first)
    run_both(ours, theirs, x)
    run_both(ours, theirs, x, make_states(layers, bidir, 0, False))
    packed = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    run_both(ours, theirs, packed, make_states(layers, bidir, 0, False))
    run_both(ours, theirs, x, None, ours_kwargs={"lengths": LENGTHS}, theirs_x=packed)
    run_both(ours, theirs, x[:, 0] if not batch_first else x[0], None)  # unbatched


def test_gru_float64_and_long_sequence(cpu_engine):
    ours, theirs = make_pair(
        longshort.GRU, nn.GRU, dtype=F64, input_size=I, hidden_size=H, num_layers=2
    )
    run_both(ours, theirs, make_input(False, dtype=F64))
    torch.manual_seed(0)
    ours, theirs = make_pair(longshort.GRU, nn.GRU, input_size=8, hidden_size=32)
    run_both(ours, theirs, torch.randn(1000, 4, 8))  # the fast σ and tanh do not accumulate


@pytest.mark.parametrize("with_lengths", [False, True])
def test_gru_gradcheck_and_gradgradcheck(cpu_engine, with_lengths):
    torch.manual_seed(1)
    m = longshort.GRU(2, 3, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(4, 3, 2, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 3, 3, dtype=F64, requires_grad=True)
    lengths = torch.tensor([4, 1, 3]) if with_lengths else None
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, h0, *ps):
        return functional_call(m, dict(zip(names, ps, strict=True)), (x, h0), {"lengths": lengths})

    assert gradcheck(f, (x, h0, *params), eps=1e-6, atol=1e-6)
    # the reference engine's second derivatives in fast mode (random projections): a compiled
    # engine's double backward recomputes with the same torch ops, and is checked in full
    fast = cpu_engine == "reference"
    assert gradgradcheck(f, (x, h0, *params), eps=1e-6, atol=1e-5, fast_mode=fast)


def test_gru_engine_gradcheck_handwritten_bptt(cpu_engine):
    """The engine layer alone, where every gradient comes from the handwritten BPTT."""
    g = torch.Generator().manual_seed(0)

    def r(*s):
        return (torch.randn(*s, generator=g, dtype=F64) * 0.5).requires_grad_()

    args = (r(6, 3, 2), r(3, 4), r(12, 2), r(12, 4), r(12), r(12))
    lengths = torch.tensor([6, 2, 5])
    assert gradcheck(lambda *a: engine.gru_layer(*a, lengths=lengths)[:2], args, eps=1e-6)


def test_gru_cell(cpu_engine):
    for bias in (True, False):
        theirs = nn.GRUCell(I, H, bias=bias)
        ours = longshort.GRUCell(I, H, bias=bias)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(B, I, requires_grad=True)
        h = torch.randn(B, H, requires_grad=True)
        a, b = ours(x, h), theirs(x, h)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        ga = torch.autograd.grad(a.sum(), [x, h, *ours.parameters()])
        gb = torch.autograd.grad(b.sum(), [x, h, *theirs.parameters()])
        for p, q in zip(ga, gb, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        assert ours(x[0]).shape == (H,)
    cell = longshort.GRUCell(2, 3, dtype=F64)
    x, h = (torch.randn(4, n, dtype=F64, requires_grad=True) for n in (2, 3))
    assert gradgradcheck(lambda x, h: cell(x, h), (x, h), eps=1e-6, atol=1e-5)


def test_gru_construction_like_torch():
    torch.manual_seed(3)
    theirs = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    torch.manual_seed(3)
    ours = longshort.GRU(3, 4, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)  # same seed, same weights
    assert repr(ours) == repr(theirs)
    assert ours.mode == "GRU" and not isinstance(ours, nn.GRU)
    assert isinstance(longshort.GRUCell(3, 4), nn.GRUCell)
    back = ours.to_torch()
    assert type(back) is nn.GRU
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(back(x)[0], ours(x)[0], rtol=0, atol=1e-5)
    assert type(longshort.GRU.from_torch(theirs)) is longshort.GRU


def test_gru_errors_like_torch():
    ours, theirs = make_pair(longshort.GRU, nn.GRU, input_size=3, hidden_size=4)
    for call in (
        lambda m: m(torch.zeros(5, 2, 7)),
        lambda m: m(torch.zeros(5, 2, 3), torch.zeros(1, 3, 4)),
        lambda m: m(torch.zeros(5, 2, 3, dtype=F64)),
    ):
        with pytest.raises(Exception) as theirs_err:
            call(theirs)
        with pytest.raises(type(theirs_err.value)) as ours_err:
            call(ours)
        assert "GRU" in str(ours_err.value)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        longshort.GRU(3, 4, proj_size=2)


def test_gru_compiled_equals_reference_and_traces(cpu_engine):
    torch.manual_seed(4)
    m = longshort.GRU(3, 6, bidirectional=True)
    x = torch.randn(9, 5, 3)
    lengths = torch.tensor([9, 2, 5, 1, 9])
    _, h, traces = m(x, lengths=lengths, return_trace=True)
    assert len(traces) == 2 and traces[0].gates.shape == (9, 5, 24)
    _, z, n, _ = traces[0].gates.chunk(4, dim=-1)
    h_steps = traces[0].states
    # the last valid state of each sequence is its h_n
    last = h_steps[lengths - 1, torch.arange(5)]
    torch.testing.assert_close(last, h[0], rtol=0, atol=1e-6)
    assert ((z >= 0) & (z <= 1)).all() and (n.abs() <= 1).all()
