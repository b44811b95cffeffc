"""Huge pre-activations stay finite; check_finite names where a value broke; fuzzed inputs
either match torch.nn or raise a clear error."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import longshort
from tests.helpers import abs_err


@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_huge_preactivations_finite_and_match_torch(cpu_engine, scale):
    theirs = nn.LSTM(3, 5)
    ours = longshort.LSTM.from_torch(theirs)
    x = torch.randn(20, 2, 3) * scale
    a, b = ours(x)[0], theirs(x)[0]
    assert torch.isfinite(a).all()
    assert abs_err(a, b) < 1e-5
    ga = torch.autograd.grad(a.sum(), list(ours.parameters()))
    assert all(torch.isfinite(g).all() for g in ga)


def test_check_finite_names_layer_and_step():
    m = longshort.LSTM(2, 3, num_layers=2, check_finite=True)
    with torch.no_grad():
        m.weight_ih_l1[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"layer 1 \(forward direction\).* step 0"):
        m(torch.randn(4, 1, 2))
    plain = longshort.LSTM(2, 3, num_layers=2)
    plain.load_state_dict(m.state_dict())
    out = plain(torch.randn(4, 1, 2))[0]
    assert torch.isnan(out[0, 0, 0]) and torch.isnan(out[-1]).all()  # NaN spreads, never hidden
    ok = longshort.RNN(2, 3, check_finite=True)
    assert torch.isfinite(ok(torch.randn(4, 1, 2))[0]).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.float16]),
    fill=st.sampled_from([0.0, 1.0, float("nan"), float("inf"), 1e4]),
)
def test_fuzzed_inputs_match_or_raise_clearly(shape, dtype, fill):
    theirs = nn.LSTM(3, 2)
    ours = longshort.LSTM.from_torch(theirs)
    x = (
        torch.full(shape, fill).to(dtype)
        if dtype != torch.int64
        else torch.zeros(shape, dtype=dtype)
    )
    try:
        out, _ = ours(x)
    except (ValueError, TypeError) as e:
        assert "LSTM:" in str(e) and len(str(e)) > 20  # names the module and the problem
        return
    torch.testing.assert_close(out, theirs(x)[0], rtol=0, atol=1e-5, equal_nan=True)
